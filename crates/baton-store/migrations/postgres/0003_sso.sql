-- PostgreSQL's twin of ../sqlite/0003_sso.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- Users who sign in through a single sign-on provider: `provider` names it (`server.auth.NAME`)
-- and `subject` is the provider's own stable id of the account (`<issuer>|<sub>` for OpenID
-- Connect, `<url>|<numeric id>` for GitHub), bound at the first sign-in so that a renamed or
-- re-registered account elsewhere never inherits the name. Both NULL for password users, which
-- SSO users are not: their password hash is an empty string that no password matches.
ALTER TABLE users ADD COLUMN provider TEXT;
ALTER TABLE users ADD COLUMN subject TEXT;
