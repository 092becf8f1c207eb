-- Claims over dead index entries: tasks that ran to done since the last VACUUM leave their
-- old entries in the partial index `tasks_ready_tenant` until a vacuum removes them, and the
-- next claims walk over them. Run from the repository root (builds and drops a scratch
-- schema pgbench_dead in the database it is given):
--   psql -h 127.0.0.1 -U postgres DATABASE -f task-store-postgres/sql/explain_dead_entries.sql
-- 300,000 pending tasks of tenant `busy` and one of `quiet`; the fair claim of 16; then the
-- busy tenant's 200,000 oldest tasks go through processing to done, no vacuum: the claim
-- twice (the first scan marks the dead entries, the second skips them); then VACUUM, the
-- claim again.
DROP SCHEMA IF EXISTS pgbench_dead CASCADE;
CREATE SCHEMA pgbench_dead;
SET search_path TO pgbench_dead;
\ir ../migrations/0001_tasks.sql
\ir ../migrations/0002_fair_claims.sql
INSERT INTO tasks (id, tenant, inventory_id, product, version, status, priority_rank, ready_at,
                   seq, lease_epoch, lease_expires_at, cancel_requested, created_at, updated_at,
                   finished_at, writer, doc)
SELECT gen_random_uuid(), CASE WHEN i <= 300000 THEN 'busy' ELSE 'quiet' END,
       'item-' || i, 'adbreaks', '1', 'pending', 1::smallint, 1700000000000 + i,
       i, 1, NULL, false, 1700000000000 + i, 1700000000000 + i, NULL, gen_random_uuid(), '{}'::jsonb
FROM generate_series(1, 300001) AS i;
VACUUM ANALYZE tasks;
\set fair_ready `cat task-store-postgres/sql/fair_ready.sql`
PREPARE fair(bigint, text[], bigint, smallint, text[], bigint[]) AS :fair_ready;
\timing on
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE fair(1800000000000, ARRAY[]::text[], 16, 1::smallint, ARRAY['adbreaks'], ARRAY[1000000]::bigint[]);
ROLLBACK;
-- The busy tenant's 200,000 oldest tasks run to done (through processing); no vacuum.
UPDATE tasks SET status = 'processing', ready_at = NULL, lease_expires_at = 1, lease_epoch = 2 WHERE tenant = 'busy' AND seq <= 200000;
UPDATE tasks SET status = 'done', lease_expires_at = NULL, finished_at = 5 WHERE status = 'processing';
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE fair(1800000000000, ARRAY[]::text[], 16, 1::smallint, ARRAY['adbreaks'], ARRAY[1000000]::bigint[]);
ROLLBACK;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE fair(1800000000000, ARRAY[]::text[], 16, 1::smallint, ARRAY['adbreaks'], ARRAY[1000000]::bigint[]);
ROLLBACK;
VACUUM tasks;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE fair(1800000000000, ARRAY[]::text[], 16, 1::smallint, ARRAY['adbreaks'], ARRAY[1000000]::bigint[]);
ROLLBACK;
DROP SCHEMA pgbench_dead CASCADE;
