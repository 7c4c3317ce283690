-- A run interrupted more than three times (its process died each time) ends
-- `abandoned` and is never queued again.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN ('queued', 'running',
    'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed', 'throttled',
    'interrupted', 'abandoned'));
