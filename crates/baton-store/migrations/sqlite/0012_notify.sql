-- Notifications of run ends (an outbox). A run's end is recorded here (webhook NULL) in the same
-- transaction as the run change; the sender then fans it out, in one transaction, into one row
-- per matching `notify:` entry (marking the first `expanded`), sends each, retrying with
-- `attempts`/`next_at`, and marks it sent, or failed once it gives up. Portable to PostgreSQL.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    run_id      BIGINT NOT NULL,
    -- The run's end: success, failed, broken, jammed, skipped, canceled.
    status      TEXT   NOT NULL,
    -- The receiver (`notify:` entry's webhook URL); NULL: the run's end, not fanned out yet.
    webhook     TEXT,
    created_at  BIGINT NOT NULL,
    -- pending, sent, failed (gave up), skipped (entry gone), expanded (fanned out).
    outcome     TEXT   NOT NULL,
    attempts    BIGINT NOT NULL,
    next_at     BIGINT NOT NULL,
    last_error  TEXT,
    sent_at     BIGINT
);
CREATE INDEX notifications_outcome ON notifications (outcome, id);
CREATE INDEX notifications_run ON notifications (run_id);
