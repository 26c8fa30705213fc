-- PostgreSQL's twin of ../sqlite/0014_results.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- The code a test ran on (`commit:SHA`, or `run:ID` for a run without a repository and its
-- reruns), so a test that passed and failed on the same code shows as flaky. NULL for rows
-- recorded before.
ALTER TABLE test_results ADD COLUMN code TEXT;

-- The CI cache: each job with `cache:` gets its digest and the facts it was made of (hashes
-- only: no environment value is ever stored), and, when it was skipped by a hit, the job and
-- run whose results and artifacts are its own.
CREATE TABLE job_cache (
    job_id     BIGINT NOT NULL PRIMARY KEY,
    run_id     BIGINT NOT NULL,
    attempt    BIGINT NOT NULL,
    -- The repository's name in `repos:`, or '' for a task outside a repository.
    scope      TEXT   NOT NULL,
    -- The task (or `PIPELINE/TASK`), for `baton cache why`.
    task       TEXT   NOT NULL,
    digest     TEXT   NOT NULL,
    facts      TEXT   NOT NULL,
    hit_job    BIGINT,
    hit_run    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX job_cache_digest ON job_cache (scope, digest);
CREATE INDEX job_cache_task ON job_cache (scope, task, job_id);
CREATE INDEX job_cache_run ON job_cache (run_id);
