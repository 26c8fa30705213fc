-- PostgreSQL's twin of ../sqlite/0010_pr.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- Pull request runs: the head commit and target branch of the pull request a run builds, and
-- whether it came from a fork (such a run gets no secrets and waits for approval).
ALTER TABLE runs ADD COLUMN pr_head TEXT;
ALTER TABLE runs ADD COLUMN pr_base TEXT;
ALTER TABLE runs ADD COLUMN pr_fork BIGINT NOT NULL DEFAULT 0;
