-- Email is delivered per recipient, and every attempt of an email carries
-- the same Message-ID. SQLite cannot change a CHECK constraint in place, so
-- the outbox is rebuilt with the new statuses and the new column.
CREATE TABLE outbox_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key         TEXT NOT NULL UNIQUE,
    runbook          TEXT NOT NULL,
    run_id           INTEGER,
    sender           TEXT NOT NULL,
    recipients       TEXT NOT NULL,           -- JSON: {"to": [...], "cc": [...]}
    subject          TEXT NOT NULL,
    text_body        TEXT,
    html_body        TEXT,
    -- partial: some recipients accepted it and the others refused it for
    -- good; ambiguous: a connection was lost after the message was handed
    -- over, so the server may or may not have it (docs/email-and-issues.md).
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'partial', 'failed', 'ambiguous')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,           -- when the mailer may try it (backoff)
    last_error       TEXT,
    results          TEXT,                    -- JSON: per recipient, its status and what the server said
    created_at       TEXT NOT NULL,
    sent_at          TEXT,                    -- when a first recipient accepted it
    -- The Message-ID of every attempt, chosen when the email is queued, so
    -- that a copy delivered twice is recognisably the same message.
    message_id       TEXT NOT NULL
);

-- Emails queued before this had no Message-ID of their own: they get one now.
INSERT INTO outbox_new (id, idem_key, runbook, run_id, sender, recipients, subject, text_body, html_body,
                        status, attempts, next_attempt_at, last_error, results, created_at, sent_at, message_id)
SELECT id, idem_key, runbook, run_id, sender, recipients, subject, text_body, html_body,
       status, attempts, next_attempt_at, last_error, results, created_at, sent_at,
       '<' || lower(hex(randomblob(16))) || '@runbookd.invalid>'
FROM outbox;

-- Their results become per-recipient results: a sent email's recipients
-- were all accepted ("accepted: 250 OK"); a failed email's one error is
-- already its last_error.
UPDATE outbox_new SET results = (
    SELECT json_group_object(key, json_object('status', 'sent', 'reply', substr(value, 11), 'attempts', 1))
    FROM json_each(outbox_new.results))
WHERE status = 'sent' AND json_valid(results);
UPDATE outbox_new SET results = NULL WHERE status = 'failed';

DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
