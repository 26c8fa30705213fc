-- PostgreSQL's twin of ../sqlite/0008_results.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- Test results: each ended job's result tree (JUnit reports and its own results.json) with its
-- counts, and one row per test case for a test's history across its task's runs. Portable to
-- PostgreSQL: plain types, BIGINT times in ms.
CREATE TABLE job_results (
    job_id       BIGINT NOT NULL PRIMARY KEY,
    run_id       BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    -- The task (or `PIPELINE/TASK`) the job ran: what a test's history is kept per.
    task         TEXT   NOT NULL,
    collected_at BIGINT NOT NULL,
    passed       BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    errors       BIGINT NOT NULL,
    skipped      BIGINT NOT NULL,
    flaky        BIGINT NOT NULL,
    warnings     BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    -- The job's node with everything under it, as JSON (the shape of docs/results.md).
    tree         TEXT   NOT NULL
);
CREATE INDEX job_results_run ON job_results (run_id);

CREATE TABLE test_results (
    task        TEXT   NOT NULL,
    test_id     TEXT   NOT NULL,
    run_id      BIGINT NOT NULL,
    job_id      BIGINT NOT NULL,
    status      TEXT   NOT NULL,
    duration_ms BIGINT
);
CREATE INDEX test_results_test ON test_results (task, test_id, run_id);
CREATE INDEX test_results_run ON test_results (run_id);
