-- Runs, their jobs, links between runs, schedule marks and API tokens.
-- Times are milliseconds since the Unix epoch (portable to PostgreSQL's BIGINT).
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    trigger      TEXT    NOT NULL,
    args         TEXT    NOT NULL,
    tags         TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    reason       TEXT,
    priority     BIGINT  NOT NULL,
    partition_key TEXT,
    enqueued_at  BIGINT  NOT NULL,
    not_before   BIGINT,
    started_at   BIGINT,
    ended_at     BIGINT
);
CREATE INDEX runs_target ON runs (target, id);
CREATE INDEX runs_status ON runs (status, id);

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    run_id        BIGINT  NOT NULL REFERENCES runs (id),
    name          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    reason        TEXT,
    attempt       BIGINT  NOT NULL,
    worker        TEXT,
    exit_code     BIGINT,
    queued_at     BIGINT  NOT NULL,
    started_at    BIGINT,
    ended_at      BIGINT,
    ended_seq     BIGINT
);
CREATE INDEX jobs_run ON jobs (run_id);

CREATE TABLE run_links (
    ancestor   BIGINT NOT NULL,
    descendant BIGINT NOT NULL,
    PRIMARY KEY (ancestor, descendant)
);
CREATE INDEX run_links_descendant ON run_links (descendant);

CREATE TABLE schedule_marks (
    target    TEXT PRIMARY KEY,
    last_slot BIGINT NOT NULL
);

CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT   NOT NULL,
    hash       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
