-- PostgreSQL's twin of ../sqlite/0004_job_args.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- Arguments of one job beyond its run's (a pipeline's on_error job is told which job failed
-- and how): a JSON object of strings, NULL for none. Kept with the job so that a restart
-- gives the job the same environment.
ALTER TABLE jobs ADD COLUMN args TEXT;
