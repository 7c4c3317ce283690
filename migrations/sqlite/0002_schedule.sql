-- Scheduling: slots, high-water marks and one active run per runbook.

-- The latest slot each schedule trigger has accounted for (run, skipped or
-- missed). A slot at or before it is never planned again, so a clock that
-- steps backwards cannot fire a slot twice.
CREATE TABLE schedule_marks (
    runbook      TEXT NOT NULL,
    trigger_key  TEXT NOT NULL,               -- the trigger's expression, as in runs.trigger_key
    last_slot    TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (runbook, trigger_key)
);

-- The runbook's name while a run of a runbook that forbids, queues or replaces
-- overlapping runs is active (queued to run, or running); NULL otherwise.
-- The unique index is what makes "one active run" true: a second insert or
-- claim fails instead of racing a check.
ALTER TABLE runs ADD COLUMN active_key TEXT;
CREATE UNIQUE INDEX runs_one_active ON runs (active_key);

-- Finding the work left queued (after a restart, or behind an active run).
CREATE INDEX runs_queued ON runs (runbook, id) WHERE status = 'queued';
-- Retention prunes by age.
CREATE INDEX runs_by_created ON runs (created_at);
