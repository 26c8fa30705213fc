-- PostgreSQL's twin of ../sqlite/0007_repoops.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- Repository operations: what the poller last saw of each repository's branches (so a restart
-- does not trigger again), and each repository's last fetch (for the repositories page).
-- Portable to PostgreSQL: plain types, BIGINT times in ms.
CREATE TABLE repo_heads (
    repo        TEXT   NOT NULL,
    -- The full ref (`refs/heads/main`).
    git_ref     TEXT   NOT NULL,
    commit_sha  TEXT   NOT NULL,
    seen_at     BIGINT NOT NULL,
    PRIMARY KEY (repo, git_ref)
);
CREATE TABLE repo_fetches (
    repo        TEXT   PRIMARY KEY,
    -- When the last fetch (with its retries) ended, and when one last succeeded.
    fetched_at  BIGINT NOT NULL,
    ok_at       BIGINT,
    -- The last fetch's error (credentials redacted); NULL when it succeeded.
    error       TEXT,
    -- When the poller last recorded this repository's heads (NULL: never polled; its first
    -- poll records the heads without triggering).
    polled_at   BIGINT
);
