-- The whole schema for PostgreSQL, shared by every daemon of a deployment.
-- The same tables and guarantees as the SQLite schema (migrations/sqlite), in
-- PostgreSQL's types: times are timestamptz, JSON columns hold text (so what
-- was recorded reads back byte for byte), ids are never reused. Every
-- guarantee is a constraint or holds in one statement; the comments of the
-- SQLite schema explain each table.

CREATE TABLE runbook_versions (
    hash        TEXT PRIMARY KEY,
    runbook     TEXT NOT NULL,
    path        TEXT NOT NULL,
    yaml        TEXT NOT NULL,
    scripts     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runbook       TEXT NOT NULL,
    version_hash  TEXT NOT NULL REFERENCES runbook_versions (hash),
    trigger_kind  TEXT NOT NULL CHECK (trigger_kind IN ('manual', 'cron', 'every', 'webhook')),
    trigger_key   TEXT,
    scheduled_at  TIMESTAMPTZ,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                    'timed_out', 'cancelled', 'skipped', 'missed', 'throttled', 'interrupted')),
    params        TEXT NOT NULL DEFAULT '{}',
    trigger_data  TEXT NOT NULL DEFAULT '{}',
    attempts      INTEGER NOT NULL DEFAULT 0,
    dry_run       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    output        TEXT,
    error         TEXT,
    -- The runbook's name while the run is its one active run (forbid, queue,
    -- replace); the unique index refuses a second, whichever daemon asks.
    active_key    TEXT,
    -- Asked to stop (a person, or a newer run under `replace`), through any
    -- daemon; the daemon running it sees it at its next heartbeat.
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- A slot becomes a run at most once, across every daemon.
    UNIQUE (runbook, trigger_key, scheduled_at)
);
CREATE UNIQUE INDEX runs_one_active ON runs (active_key);
CREATE INDEX runs_by_runbook ON runs (runbook, id DESC);
CREATE INDEX runs_by_status ON runs (status, id DESC);
CREATE INDEX runs_queued ON runs (runbook, id) WHERE status = 'queued';
CREATE INDEX runs_by_created ON runs (created_at);

CREATE TABLE attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL CHECK (attempt >= 1),
    status       TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'timed_out',
                   'cancelled', 'interrupted')),
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    error        TEXT,
    -- The daemon running it, and until when it holds the run (the database's
    -- clock; renewed by heartbeat).
    owner        TEXT NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL,
    UNIQUE (run_id, attempt)
);
-- Two daemons starting the same queued run make one attempt.
CREATE UNIQUE INDEX attempts_one_running ON attempts (run_id) WHERE status = 'running';

CREATE TABLE steps (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    attempt_id   BIGINT NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped', 'timed_out',
                   'cancelled')),
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL,
    output       TEXT,
    error        TEXT,
    UNIQUE (attempt_id, position)
);

CREATE TABLE logs (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id    BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt   INTEGER NOT NULL,
    step      TEXT,
    at        TIMESTAMPTZ NOT NULL,
    level     TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message   TEXT NOT NULL
);
CREATE INDEX logs_by_run ON logs (run_id, id);

CREATE TABLE state (
    runbook     TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    expires_at  TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (runbook, key)
);

CREATE TABLE schedule_marks (
    runbook      TEXT NOT NULL,
    trigger_key  TEXT NOT NULL,
    last_slot    TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (runbook, trigger_key)
);

CREATE TABLE deliveries (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runbook       TEXT NOT NULL,
    trigger_key   TEXT NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL,
    dedup_key     TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'filtered', 'throttled', 'rejected')),
    run_id        BIGINT REFERENCES runs (id) ON DELETE SET NULL,
    duplicate_of  BIGINT,
    headers       TEXT NOT NULL,
    body          TEXT NOT NULL,
    detail        TEXT
);
CREATE INDEX deliveries_by_runbook ON deliveries (runbook, id DESC);
CREATE INDEX deliveries_by_received ON deliveries (received_at);

-- One delivery per (trigger, dedup key) within the window, across daemons.
CREATE TABLE webhook_dedup (
    runbook      TEXT NOT NULL,
    trigger_key  TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,
    delivery_id  BIGINT NOT NULL,
    run_id       BIGINT,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (runbook, trigger_key, dedup_key)
);

CREATE TABLE issues (
    key          TEXT PRIMARY KEY,
    runbook      TEXT NOT NULL,
    title        TEXT NOT NULL,
    severity     TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    status       TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    details      TEXT,
    link         TEXT,
    first_seen   TIMESTAMPTZ NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL,
    occurrences  INTEGER NOT NULL DEFAULT 1,
    resolved_at  TIMESTAMPTZ,
    resolution   TEXT,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX issues_by_status ON issues (status, severity);

-- Each email is taken by one daemon (FOR UPDATE SKIP LOCKED) and sent once.
CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key         TEXT NOT NULL UNIQUE,
    runbook          TEXT NOT NULL,
    run_id           BIGINT,
    sender           TEXT NOT NULL,
    recipients       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT,
    html_body        TEXT,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    last_error       TEXT,
    results          TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    sent_at          TIMESTAMPTZ,
    -- Until when the daemon sending it holds it (the database's clock): a
    -- daemon that died while sending loses it to the queue after this.
    sending_until    TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Which daemon does the work one daemon should do (retention, the dead-man
-- switch), until when: taken over by another once it expires.
CREATE TABLE leaders (
    task   TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    until  TIMESTAMPTZ NOT NULL
);

-- A run's record and its attempts' records move together, as in SQLite.
CREATE FUNCTION attempt_starts_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runs SET status = 'running', attempts = NEW.attempt,
                    started_at = COALESCE(started_at, NEW.started_at)
    WHERE id = NEW.run_id;
    RETURN NULL;
END $$;
CREATE TRIGGER attempt_starts_run AFTER INSERT ON attempts
    FOR EACH ROW EXECUTE FUNCTION attempt_starts_run();

CREATE FUNCTION run_end_closes_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE attempts SET status = NEW.status, error = NEW.error, finished_at = NEW.finished_at
    WHERE run_id = NEW.id AND status = 'running';
    RETURN NULL;
END $$;
CREATE TRIGGER run_end_closes_attempt AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'interrupted'))
    EXECUTE FUNCTION run_end_closes_attempt();
