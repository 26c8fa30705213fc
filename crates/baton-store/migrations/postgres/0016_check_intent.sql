-- PostgreSQL's twin of ../sqlite/0016_check_intent.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- A check run's row is now written before GitHub is asked to create it (check_run_id NULL:
-- intended), and given the id once created. A server killed between the two finds the row
-- without an id and looks the check run up by its external_id instead of creating a second one.
CREATE TABLE check_runs_new (
    run_id       BIGINT NOT NULL,
    context      TEXT   NOT NULL,
    check_run_id BIGINT,
    PRIMARY KEY (run_id, context)
);
INSERT INTO check_runs_new (run_id, context, check_run_id)
    SELECT run_id, context, check_run_id FROM check_runs;
DROP TABLE check_runs;
ALTER TABLE check_runs_new RENAME TO check_runs;
