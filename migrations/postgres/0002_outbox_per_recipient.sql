-- Email is delivered per recipient, and every attempt of an email carries
-- the same Message-ID.

-- partial: some recipients accepted it and the others refused it for good;
-- ambiguous: a connection was lost after the message was handed over, so
-- the server may or may not have it (docs/email-and-issues.md).
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'partial', 'failed', 'ambiguous'));

-- The Message-ID of every attempt, chosen when the email is queued, so that
-- a copy delivered twice is recognisably the same message. Emails queued
-- before this get one now.
ALTER TABLE outbox ADD COLUMN message_id TEXT;
UPDATE outbox SET message_id = '<' || gen_random_uuid() || '@runbookd.invalid>';
ALTER TABLE outbox ALTER COLUMN message_id SET NOT NULL;

-- Results become per-recipient results: a sent email's recipients were all
-- accepted ("accepted: 250 OK"); a failed email's one error is already its
-- last_error.
UPDATE outbox SET results = (
    SELECT json_object_agg(key, json_build_object('status', 'sent', 'reply', substr(value, 11), 'attempts', 1))::text
    FROM json_each_text(results::json))
WHERE status = 'sent' AND results IS NOT NULL;
UPDATE outbox SET results = NULL WHERE status = 'failed';
