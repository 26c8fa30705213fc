-- PostgreSQL's twin of ../sqlite/0009_lists.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- Runs listed by their code: the runs list filters by branch and by commit prefix (a range on
-- commit_sha), and a task's badge reads its newest run on one branch. (`runs_repo` serves the
-- repository filter.)
CREATE INDEX runs_branch ON runs (branch, id);
CREATE INDEX runs_commit ON runs (commit_sha);
CREATE INDEX runs_target_branch ON runs (target, branch, id);
