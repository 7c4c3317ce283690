-- Webhook deliveries and their deduplication.

-- Every authenticated delivery and what became of it (accepted, duplicate,
-- filtered by `when:`, throttled by `limit:`, rejected as unreadable).
-- Deliveries that fail authentication are counted in metrics, not stored.
CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    runbook       TEXT NOT NULL,
    trigger_key   TEXT NOT NULL,                 -- which webhook trigger (its path)
    received_at   TEXT NOT NULL,
    dedup_key     TEXT,                          -- the provider's delivery id, or the `dedup:` value
    outcome       TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'filtered', 'throttled', 'rejected')),
    run_id        INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    duplicate_of  INTEGER,                       -- for a duplicate: the delivery it repeats
    headers       TEXT NOT NULL,                 -- JSON object, credentials masked
    body          TEXT NOT NULL,                 -- as received (within the body cap)
    detail        TEXT                           -- why it was filtered, throttled or rejected
);
CREATE INDEX deliveries_by_runbook ON deliveries (runbook, id DESC);
CREATE INDEX deliveries_by_received ON deliveries (received_at);

-- One delivery per (trigger, dedup key) within the dedup window. The primary
-- key is what makes a provider's retry, or two racing requests, start one run.
CREATE TABLE webhook_dedup (
    runbook      TEXT NOT NULL,
    trigger_key  TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,
    delivery_id  INTEGER NOT NULL,
    run_id       INTEGER,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (runbook, trigger_key, dedup_key)
);
