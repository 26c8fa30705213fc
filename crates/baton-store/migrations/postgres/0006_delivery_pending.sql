-- PostgreSQL's twin of ../sqlite/0006_delivery_pending.sql: the same step in PostgreSQL's types (BIGINT ids; an
-- identity where SQLite's INTEGER PRIMARY KEY picks the id). Change both together.
-- A verified delivery is accepted durably before it is answered: while its runs are not yet
-- triggered, `pending` holds what processing it again needs (JSON: the payload's file name under
-- <data>/deliveries/ and the headers the parser reads); NULL once it is finished (or refused).
ALTER TABLE webhook_deliveries ADD COLUMN pending TEXT;
