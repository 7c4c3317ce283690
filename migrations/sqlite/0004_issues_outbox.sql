-- Issues raised for people, and the email outbox.

-- Something a runbook raised for a human. The key deduplicates: opening an
-- open key bumps it, opening a resolved key reopens it.
CREATE TABLE issues (
    key          TEXT PRIMARY KEY,
    runbook      TEXT NOT NULL,               -- the runbook that last opened it
    title        TEXT NOT NULL,
    severity     TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    status       TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    details      TEXT,
    link         TEXT,
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    occurrences  INTEGER NOT NULL DEFAULT 1,  -- how many times it was opened, reopenings included
    resolved_at  TEXT,
    resolution   TEXT,                        -- the note given when it was resolved
    updated_at   TEXT NOT NULL                -- the latest change of any kind, for "newest changes first"
);
CREATE INDEX issues_by_status ON issues (status, severity);

-- Email to send. A script's email.send inserts a row; the mailer delivers it.
-- The unique key (runbook + the run's slot, delivery or id + the script's key)
-- is what makes a retried or re-executed run never send twice.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key         TEXT NOT NULL UNIQUE,
    runbook          TEXT NOT NULL,
    run_id           INTEGER,
    sender           TEXT NOT NULL,
    recipients       TEXT NOT NULL,           -- JSON: {"to": [...], "cc": [...]}
    subject          TEXT NOT NULL,
    text_body        TEXT,
    html_body        TEXT,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,           -- when the mailer may try it (backoff)
    last_error       TEXT,
    results          TEXT,                    -- JSON: per recipient, what the server said
    created_at       TEXT NOT NULL,
    sent_at          TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
