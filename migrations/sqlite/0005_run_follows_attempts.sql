-- A run's record and its attempts' records move together, in the statement
-- that moves either, so the executor writes one row where it wrote two.

-- Starting an attempt makes its run `running`.
CREATE TRIGGER attempt_starts_run AFTER INSERT ON attempts
BEGIN
    UPDATE runs SET status = 'running', attempts = NEW.attempt,
                    started_at = COALESCE(started_at, NEW.started_at)
    WHERE id = NEW.run_id;
END;

-- A run that ends closes the attempt still open with the run's result (an
-- attempt that failed and was retried was closed when the retry began).
CREATE TRIGGER run_end_closes_attempt AFTER UPDATE OF status ON runs
WHEN NEW.status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'interrupted')
BEGIN
    UPDATE attempts SET status = NEW.status, error = NEW.error, finished_at = NEW.finished_at
    WHERE run_id = NEW.id AND status = 'running';
END;
