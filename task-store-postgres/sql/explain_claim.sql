-- Reproduces the EXPLAIN of the claim shown in the crate docs:
--   psql -h 127.0.0.1 -U postgres test -f task-store-postgres/sql/explain_claim.sql
-- Builds a scratch schema explain_demo with 200,000 tasks and drops it at the end.
DROP SCHEMA IF EXISTS explain_demo CASCADE;
CREATE SCHEMA explain_demo;
SET search_path TO explain_demo;
\ir ../migrations/0001_tasks.sql
-- 200,000 tasks: 100,000 pending (a third per priority, 10% waiting for a retry), the rest
-- processing or done.
INSERT INTO tasks (id, tenant, inventory_id, product, version, status, priority_rank, ready_at,
                   seq, lease_epoch, lease_expires_at, cancel_requested, created_at, updated_at,
                   finished_at, writer, doc)
SELECT gen_random_uuid(), 't' || (i % 10), 'item-' || i, (ARRAY['adbreaks','fingerprint','nudity'])[1 + i % 3], '1',
       CASE WHEN i % 2 = 0 THEN 'pending' WHEN i % 4 = 1 THEN 'processing' ELSE 'done' END,
       (i % 3)::smallint,
       CASE WHEN i % 2 = 0 THEN 1700000000000 + i + CASE WHEN i % 20 = 0 THEN 10000000 ELSE 0 END END,
       i, 1, CASE WHEN i % 4 = 1 THEN 1700000000000 + 30000 + i END, false,
       1700000000000 + i, 1700000000000 + i, CASE WHEN i % 4 = 3 THEN 1700000000000 + i END,
       gen_random_uuid(), '{}'::jsonb
FROM generate_series(1, 200000) AS i;
ANALYZE tasks;
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
WITH ready AS (
    SELECT id, seq, doc, priority_rank, ready_at FROM tasks
    WHERE status = 'pending' AND ready_at <= 1700000150000 AND product <> ALL(ARRAY['nudity']::text[])
    ORDER BY priority_rank, ready_at, seq
    LIMIT 16
    FOR UPDATE SKIP LOCKED
)
SELECT id, seq, doc::text FROM ready ORDER BY priority_rank, ready_at, seq;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id, seq, doc::text FROM tasks
WHERE status = 'processing' AND lease_expires_at <= 1700000150000
ORDER BY lease_expires_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED;
ROLLBACK;
DROP SCHEMA explain_demo CASCADE;
