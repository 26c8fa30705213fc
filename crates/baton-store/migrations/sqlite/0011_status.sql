-- Commit statuses to tell forges (an outbox): a row is recorded in the same transaction as the
-- run change it reports (or by itself for a commit with no run), and the sender marks it sent,
-- retrying with `attempts`/`next_at`, or failed once it gives up. Sent in id order per
-- (repo, commit_sha, context). Portable to PostgreSQL: plain types, BIGINT times in ms.
CREATE TABLE status_reports (
    id          INTEGER PRIMARY KEY,
    -- The run it reports; NULL for a status about a commit with no run.
    run_id      BIGINT,
    repo        TEXT   NOT NULL,
    commit_sha  TEXT   NOT NULL,
    context     TEXT   NOT NULL,
    -- pending, running, success, failure, error, canceled (Baton's words).
    state       TEXT   NOT NULL,
    -- The description of a status with no run; NULL: derived from the run when it is sent.
    description TEXT,
    created_at  BIGINT NOT NULL,
    -- pending (to send), sent, failed (gave up), skipped (nothing to send it with).
    outcome     TEXT   NOT NULL,
    attempts    BIGINT NOT NULL,
    next_at     BIGINT NOT NULL,
    last_error  TEXT,
    sent_at     BIGINT
);
CREATE INDEX status_reports_outcome ON status_reports (outcome, id);
CREATE INDEX status_reports_run ON status_reports (run_id, state);
