-- no-transaction
-- A run interrupted more than three times (its process died each time) ends
-- `abandoned` and is never queued again.
--
-- SQLite cannot change a CHECK constraint in place: the runs table is rebuilt
-- (SQLite's documented procedure, https://sqlite.org/lang_altertable.html#otheralter):
-- foreign keys off for the copy so that dropping the old table deletes no
-- attempt, log or delivery, all of it in one transaction. Ids keep their
-- sequence, so an id is never handed out twice, even after pruning.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

-- Triggers that name runs are dropped for the rename and made again after it.
DROP TRIGGER attempt_starts_run;
DROP TRIGGER run_end_closes_attempt;

CREATE TABLE runs_new (
    -- AUTOINCREMENT: ids are never reused after pruning, so an id quoted in an
    -- old ticket never names another run.
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    runbook          TEXT NOT NULL,
    version_hash     TEXT NOT NULL REFERENCES runbook_versions (hash),
    trigger_kind     TEXT NOT NULL CHECK (trigger_kind IN ('manual', 'cron', 'every', 'webhook')),
    -- Which trigger of the runbook fired (its expression), part of a slot's identity.
    trigger_key      TEXT,
    -- The slot time for schedule triggers; NULL for manual and webhook runs.
    scheduled_at     TEXT,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                       'timed_out', 'cancelled', 'skipped', 'missed', 'throttled', 'interrupted',
                       'abandoned')),
    params           TEXT NOT NULL DEFAULT '{}',  -- JSON: the params the run was given
    trigger_data     TEXT NOT NULL DEFAULT '{}',  -- JSON: what scripts see as `trigger`
    attempts         INTEGER NOT NULL DEFAULT 0,  -- how many attempts have started
    dry_run          INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1)),
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    output           TEXT,                        -- JSON value of the last step, capped
    error            TEXT,
    active_key       TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    -- A slot becomes a run at most once. NULLs are distinct, so manual and
    -- webhook runs (no slot) are not constrained by it.
    UNIQUE (runbook, trigger_key, scheduled_at)
);
INSERT INTO runs_new (id, runbook, version_hash, trigger_kind, trigger_key, scheduled_at, status,
                      params, trigger_data, attempts, dry_run, created_at, started_at, finished_at,
                      output, error, active_key, cancel_requested)
    SELECT id, runbook, version_hash, trigger_kind, trigger_key, scheduled_at, status,
           params, trigger_data, attempts, dry_run, created_at, started_at, finished_at,
           output, error, active_key, cancel_requested
    FROM runs;
DELETE FROM sqlite_sequence WHERE name = 'runs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'runs_new', seq FROM sqlite_sequence WHERE name = 'runs';
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;

CREATE INDEX runs_by_runbook ON runs (runbook, id DESC);
CREATE INDEX runs_by_status ON runs (status, id DESC);
CREATE UNIQUE INDEX runs_one_active ON runs (active_key);
CREATE INDEX runs_queued ON runs (runbook, id) WHERE status = 'queued';
CREATE INDEX runs_by_created ON runs (created_at);

CREATE TRIGGER attempt_starts_run AFTER INSERT ON attempts
BEGIN
    UPDATE runs SET status = 'running', attempts = NEW.attempt,
                    started_at = COALESCE(started_at, NEW.started_at)
    WHERE id = NEW.run_id;
END;

CREATE TRIGGER run_end_closes_attempt AFTER UPDATE OF status ON runs
WHEN NEW.status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'interrupted')
BEGIN
    UPDATE attempts SET status = NEW.status, error = NEW.error, finished_at = NEW.finished_at
    WHERE run_id = NEW.id AND status = 'running';
END;

COMMIT;
PRAGMA foreign_keys = ON;
