-- Schema version 4 of task-store-postgres: autovacuum of `tasks` after a bounded number of
-- dead rows, not after a fifth of the table.
--
-- Every task write is an UPDATE that changes indexed columns (status, seq...), so it is never
-- HOT: each leaves a dead row, and a claimed task leaves its old entry in the partial index
-- `tasks_ready_tenant` until a vacuum removes it. Claims walk over those entries
-- (sql/explain_dead_entries.sql: with 200,000 of them the fair claim took 51.5 ms, then 4.5 ms,
-- against 0.32 ms after VACUUM; with 10,000, 1.3 ms then 0.40 ms). PostgreSQL's defaults
-- (threshold 50, scale factor 0.2) wait for 200,000 dead rows in a table of 1,000,000 finished
-- tasks; these wait for 1,000 + 1% of the rows (11,000 at 1,000,000 rows).
--
-- `task_history` keeps the defaults: it is only inserted into, and deleted from by retention;
-- nothing scans over a deleted task's entries (reads go by task id), so its dead rows cost
-- space until the next vacuum, never claim time.
--
-- Storage parameters take a SHARE UPDATE EXCLUSIVE lock: reads and writes go on meanwhile.
ALTER TABLE tasks SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000
);
