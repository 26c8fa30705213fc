-- Repositories and forges: every webhook delivery with its verdict, and the code a run was
-- triggered for. Portable to PostgreSQL: plain types, BIGINT times in ms, NULL when unknown.
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY,
    received_at BIGINT NOT NULL,
    forge       TEXT   NOT NULL,
    event       TEXT   NOT NULL,
    -- The forge's delivery id, set only for verified deliveries: a redelivery finds its first one.
    delivery    TEXT,
    repo        TEXT,
    git_ref     TEXT,
    commit_sha  TEXT,
    -- The HTTP status answered and why, in words a user can act on.
    status_code BIGINT NOT NULL,
    verdict     TEXT   NOT NULL,
    -- JSON list of the ids of the runs it started.
    run_ids     TEXT   NOT NULL,
    UNIQUE (forge, delivery)
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);

ALTER TABLE runs ADD COLUMN repo TEXT;
ALTER TABLE runs ADD COLUMN repo_url TEXT;
ALTER TABLE runs ADD COLUMN commit_sha TEXT;
ALTER TABLE runs ADD COLUMN git_ref TEXT;
ALTER TABLE runs ADD COLUMN branch TEXT;
ALTER TABLE runs ADD COLUMN tag TEXT;
ALTER TABLE runs ADD COLUMN pr BIGINT;
ALTER TABLE runs ADD COLUMN event TEXT;
ALTER TABLE runs ADD COLUMN delivery TEXT;
ALTER TABLE runs ADD COLUMN author TEXT;
ALTER TABLE runs ADD COLUMN subject TEXT;
CREATE INDEX runs_repo ON runs (repo, id);
