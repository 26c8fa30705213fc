-- Runtime task overrides, users (argon2 password hashes), login sessions (ids and CSRF secrets stored hashed / as
-- given), and the owner of each API token. Portable to PostgreSQL (BIGINT times in ms).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash    TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    csrf       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

ALTER TABLE tokens ADD COLUMN user_id BIGINT REFERENCES users (id);
CREATE INDEX tokens_user ON tokens (user_id);

-- Administrators' runtime `enabled` overrides of tasks (over the config's value).
CREATE TABLE task_overrides (
    task       TEXT   PRIMARY KEY,
    enabled    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The runs list's worker filter.
CREATE INDEX jobs_worker ON jobs (worker, run_id);
