-- Leases: the process running an attempt holds it until `lease_until`,
-- renewed by heartbeat; every write of a running attempt checks that its
-- owner still holds it, and recovery takes back only runs whose lease
-- expired. With SQLite one process writes, but the same rules hold, so a
-- second backend shared by several processes keeps the same behaviour.

-- Who runs the attempt: a process identity, new at every start.
ALTER TABLE attempts ADD COLUMN owner TEXT;
-- Until when the owner holds the run (kept on the latest attempt, also while
-- the run waits to retry). NULL on attempts recorded before leases: expired.
ALTER TABLE attempts ADD COLUMN lease_until TEXT;

-- At most one running attempt per run: two processes starting the same
-- queued run make one attempt; the other's insert is refused.
CREATE UNIQUE INDEX attempts_one_running ON attempts (run_id) WHERE status = 'running';
