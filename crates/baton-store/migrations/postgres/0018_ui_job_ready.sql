-- PostgreSQL's twin of ../sqlite/0018_ui_job_ready.sql: the same step in PostgreSQL's types. Change both together.
-- When a job became ready to start (a pipeline job: its DAG dependencies were done), so a
-- run's timing tells waiting for dependencies apart from waiting for a worker. NULL: ready
-- when queued (a task's job), or recorded before Baton kept it.
ALTER TABLE jobs ADD COLUMN ready_at BIGINT;
