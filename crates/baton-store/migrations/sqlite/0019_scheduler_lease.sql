-- Leases: which server runs the scheduler when several share one database. One row per lease
-- (`scheduler`): its holder (a server id), the holder's incarnation (one per process, so a
-- restart of the same server is a new epoch), the URL other servers forward requests to, the
-- epoch (bumped whenever the incarnation changes; the scheduler's commits are fenced by it) and
-- when it lapses (ms since the epoch, the holder's clock) unless renewed.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    url TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
