-- The history of runbooks and their runs.
--
-- Times are UTC text in one fixed format (2026-03-08T09:00:00.000000Z) so that
-- they sort as text. JSON columns hold text.

-- The text of every runbook version that ever ran, so "what code ran at
-- 03:12" always has an answer. Kept forever; retention never prunes it.
CREATE TABLE runbook_versions (
    hash        TEXT PRIMARY KEY,          -- sha256 over the YAML and every script it uses
    runbook     TEXT NOT NULL,
    path        TEXT NOT NULL,             -- the file it was loaded from, for people
    yaml        TEXT NOT NULL,
    scripts     TEXT NOT NULL,             -- JSON object: script file -> source
    created_at  TEXT NOT NULL
);

-- One row per trigger firing, including the ones that did not run (skipped,
-- missed, throttled), so "why didn't it run?" is answerable.
CREATE TABLE runs (
    -- AUTOINCREMENT: ids are never reused after pruning, so an id quoted in an
    -- old ticket never names another run.
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    runbook       TEXT NOT NULL,
    version_hash  TEXT NOT NULL REFERENCES runbook_versions (hash),
    trigger_kind  TEXT NOT NULL CHECK (trigger_kind IN ('manual', 'cron', 'every', 'webhook')),
    -- Which trigger of the runbook fired (its expression), part of a slot's identity.
    trigger_key   TEXT,
    -- The slot time for schedule triggers; NULL for manual and webhook runs.
    scheduled_at  TEXT,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                    'timed_out', 'cancelled', 'skipped', 'missed', 'throttled', 'interrupted')),
    params        TEXT NOT NULL DEFAULT '{}',  -- JSON: the params the run was given
    trigger_data  TEXT NOT NULL DEFAULT '{}',  -- JSON: what scripts see as `trigger`
    attempts      INTEGER NOT NULL DEFAULT 0,  -- how many attempts have started
    dry_run       INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1)),
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    output        TEXT,                        -- JSON value of the last step, capped
    error         TEXT,
    -- A slot becomes a run at most once. NULLs are distinct, so manual and
    -- webhook runs (no slot) are not constrained by it.
    UNIQUE (runbook, trigger_key, scheduled_at)
);
CREATE INDEX runs_by_runbook ON runs (runbook, id DESC);
CREATE INDEX runs_by_status ON runs (status, id DESC);

-- Each try of a run; retries add attempts to the same run.
CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL CHECK (attempt >= 1),
    status       TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'timed_out',
                   'cancelled', 'interrupted')),
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    error        TEXT,
    UNIQUE (run_id, attempt)
);

-- What each step of an attempt did.
CREATE TABLE steps (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id   INTEGER NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,             -- 0-based order in the runbook
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped', 'timed_out',
                   'cancelled')),
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    output       TEXT,                         -- JSON, capped
    error        TEXT,
    UNIQUE (attempt_id, position)
);

-- The run log: script output, host calls, and the executor's own notes.
CREATE TABLE logs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt   INTEGER NOT NULL,
    step      TEXT,                            -- NULL for lines outside any step
    at        TEXT NOT NULL,
    level     TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message   TEXT NOT NULL                    -- capped, secrets masked
);
CREATE INDEX logs_by_run ON logs (run_id, id);

-- What runbooks remember between runs (state::get/set), per runbook.
CREATE TABLE state (
    runbook     TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,                 -- JSON
    expires_at  TEXT,                          -- NULL: kept until deleted
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (runbook, key)
);
