-- PostgreSQL's twin of ../sqlite/0015_local_runs.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- Runs imported from developers' pushed result refs (`baton run`, git-jci): the machine a run
-- ran on (NULL for runs the server ran), and each result ref a repository's import has seen,
-- with the run it became or why it was refused, so a redelivery or the next poll imports
-- nothing twice. Portable to PostgreSQL: plain types, BIGINT times in ms.
ALTER TABLE runs ADD COLUMN ran_on TEXT;
CREATE TABLE imported_runs (
    repo        TEXT   NOT NULL,
    -- `refs/baton-runs/<commit>/<run-id>` or `refs/jci-runs/<commit>/<run-id>`.
    run_ref     TEXT   NOT NULL,
    -- The target within the stored run ('' for a refused ref): one server run per target.
    target      TEXT   NOT NULL,
    -- The result commit that was read.
    ref_commit  TEXT   NOT NULL,
    run_id      BIGINT,
    -- Why the ref was not imported (NULL when it was).
    refused     TEXT,
    imported_at BIGINT NOT NULL,
    PRIMARY KEY (repo, run_ref, target)
);
CREATE INDEX imported_runs_run ON imported_runs (run_id);
