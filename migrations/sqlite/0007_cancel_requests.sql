-- A request to stop a running run, for the process that runs it: a person
-- cancelling it through another process, or a newer run that replaces it
-- (concurrency: replace) recorded by another process. The owner sees it at
-- its next heartbeat.
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1));
