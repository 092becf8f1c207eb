-- Reproduces the EXPLAIN of the claim shown in the crate docs (run from the repository root):
--   psql -h 127.0.0.1 -U postgres test -f task-store-postgres/sql/explain_claim.sql
-- Builds a scratch schema explain_demo and drops it at the end: 100,000 pending tasks of one
-- tenant (`busy`, 10% waiting for a retry), 100 pending tasks of each of 10 other tenants,
-- 20 processing, 100,000 done; the claim of 16 of one priority, `nudity` excluded,
-- `fingerprint` limited to 9 running (7 are: room 2).
DROP SCHEMA IF EXISTS explain_demo CASCADE;
CREATE SCHEMA explain_demo;
SET search_path TO explain_demo;
\ir ../migrations/0001_tasks.sql
\ir ../migrations/0002_fair_claims.sql
INSERT INTO tasks (id, tenant, inventory_id, product, version, status, priority_rank, ready_at,
                   seq, lease_epoch, lease_expires_at, cancel_requested, created_at, updated_at,
                   finished_at, writer, doc)
SELECT gen_random_uuid(),
       CASE WHEN i <= 100000 OR i > 101020 THEN 'busy' ELSE 't' || (i % 10) END,
       'item-' || i, (ARRAY['adbreaks','fingerprint','nudity'])[1 + i % 3], '1',
       CASE WHEN i <= 101000 THEN 'pending' WHEN i <= 101020 THEN 'processing' ELSE 'done' END,
       1::smallint,
       CASE WHEN i <= 101000 THEN 1700000000000 + i + CASE WHEN i % 10 = 0 THEN 10000000 ELSE 0 END END,
       i, 1, CASE WHEN i > 101000 AND i <= 101020 THEN 1700000000000 + 300000 END, false,
       1700000000000 + i, 1700000000000 + i, CASE WHEN i > 101020 THEN 1700000000000 + i END,
       gen_random_uuid(), '{}'::jsonb
FROM generate_series(1, 201020) AS i;
ANALYZE tasks;
\timing on
BEGIN;
-- Before (schema version 1): one index scan in (priority, ready-at, seq) order.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
WITH ready AS (
    SELECT id, seq, doc, priority_rank, ready_at FROM tasks
    WHERE status = 'pending' AND ready_at <= 1700000150000 AND product <> ALL(ARRAY['nudity']::text[])
    ORDER BY priority_rank, ready_at, seq
    LIMIT 16
    FOR UPDATE SKIP LOCKED
)
SELECT id, seq, doc::text FROM ready ORDER BY priority_rank, ready_at, seq;
ROLLBACK;
BEGIN;
SELECT count(pg_advisory_xact_lock(s.space, s.key)) FROM (
    SELECT DISTINCT hashtext('task-store-postgres product limit ' || 'explain_demo') AS space,
                    hashtext(p) AS key
    FROM unnest(ARRAY['fingerprint']::text[]) AS p
    ORDER BY 2
) s;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
SELECT p, (SELECT count(*) FROM tasks t
           WHERE t.status = 'processing' AND t.product = p AND t.lease_expires_at > 1700000150000)
FROM unnest(ARRAY['fingerprint']::text[]) AS p;
\set fair_ready `cat task-store-postgres/sql/fair_ready.sql`
PREPARE fair(bigint, text[], bigint, smallint, text[], bigint[]) AS :fair_ready;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
EXECUTE fair(1700000150000, ARRAY['nudity'], 16, 1::smallint, ARRAY['fingerprint'], ARRAY[2]::bigint[]);
ROLLBACK;
DROP SCHEMA explain_demo CASCADE;
