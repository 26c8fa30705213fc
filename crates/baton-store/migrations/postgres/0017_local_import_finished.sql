-- PostgreSQL's twin of ../sqlite/0017_local_import_finished.sql: the same step in PostgreSQL's types. Change both together.
-- An import of a pushed result ref is finished once its runs' files, results and cache records
-- are written, after the transaction that records the runs. A mark left unfinished (the server
-- stopped in between) has its runs removed and the ref imported again. Marks recorded before
-- this column, and refusals, are finished.
ALTER TABLE imported_runs ADD COLUMN finished BIGINT NOT NULL DEFAULT 1;
