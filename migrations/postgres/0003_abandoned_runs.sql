-- A run interrupted more than three times (its process died each time) ends
-- `abandoned` and is never queued again.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
-- NOT VALID, then VALIDATE: the check of the existing rows does not hold a
-- lock that would stop the other daemons' writes on a large table.
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN ('queued', 'running',
    'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed', 'throttled',
    'interrupted', 'abandoned')) NOT VALID;
ALTER TABLE runs VALIDATE CONSTRAINT runs_status_check;
