-- Forge tokens minted for jobs that do not expire on their own (Gitea/Forgejo) and are not
-- revoked yet: recorded (by name) before the forge is asked, given the forge's id once minted,
-- and deleted once revoked. Never the token itself. A row whose job attempt is no longer
-- running is a leftover the server revokes (after a restart, say).
CREATE TABLE job_creds (
    id         INTEGER PRIMARY KEY,
    job_id     BIGINT NOT NULL,
    attempt    BIGINT NOT NULL,
    repo       TEXT   NOT NULL,
    -- The token's name on the forge (baton-job-JOB-ATTEMPT): it revokes a token whose id was
    -- never learned.
    name       TEXT   NOT NULL,
    token_id   BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX job_creds_job ON job_creds (job_id, attempt);

-- The GitHub check run that reports each run's task (context baton/TARGET): created by the
-- first status sent, updated by the next ones.
CREATE TABLE check_runs (
    run_id       BIGINT NOT NULL,
    context      TEXT   NOT NULL,
    check_run_id BIGINT NOT NULL,
    PRIMARY KEY (run_id, context)
);
