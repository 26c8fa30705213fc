-- The code a test ran on (`commit:SHA`, or `run:ID` for a run without a repository and its
-- reruns), so a test that passed and failed on the same code shows as flaky. NULL for rows
-- recorded before.
ALTER TABLE test_results ADD COLUMN code TEXT;
