-- Which version of each runbook each daemon has loaded, refreshed every few
-- seconds, so the listings can warn when daemons run different versions (a
-- rolling deploy, a reload that reached one host only).
CREATE TABLE daemon_versions (
    owner    TEXT NOT NULL,         -- the daemon (its identity, new at every start)
    runbook  TEXT NOT NULL,
    hash     TEXT NOT NULL,         -- the version it runs
    seen_at  TIMESTAMPTZ NOT NULL,  -- its latest refresh (database clock)
    PRIMARY KEY (owner, runbook)
);
CREATE INDEX daemon_versions_by_runbook ON daemon_versions (runbook, seen_at);
