-- Adds finished tasks to the bench's schema, in the shape the store writes them: each a copy
-- of the template task (`finished_template`, a task the store ran to done) with its own UUIDv7
-- id, inventory id and change position, and a copy of the template's history
-- (`finished_history`). The tasks still processing (the claims measured before) end done too.
-- benches/claim_latency.rs runs it as one multi-statement query, the count in place of
-- FINISHED_COUNT. The foreign-key triggers are off for the copy (the history's task ids are
-- the tasks inserted just before): the history insert takes a third less time.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE change_counter SET seq = seq + FINISHED_COUNT;
INSERT INTO tasks (id, tenant, inventory_id, product, version, status, priority_rank, ready_at,
                   seq, lease_epoch, lease_expires_at, cancel_requested, created_at, updated_at,
                   finished_at, writer, doc)
SELECT g.id, t.tenant, g.inventory_id, t.product, t.version, t.status, t.priority_rank,
       t.ready_at, c.seq - FINISHED_COUNT + g.i, t.lease_epoch, t.lease_expires_at,
       t.cancel_requested, t.created_at, t.updated_at, t.finished_at, t.writer,
       jsonb_set(jsonb_set(t.doc, '{id}', to_jsonb(g.id::text)),
                 '{key,inventory_id}', to_jsonb(g.inventory_id))
FROM finished_ids(FINISHED_COUNT) g, finished_template t, change_counter c;
INSERT INTO task_history (task_id, entry)
SELECT g.id, h.entry
FROM finished_ids(FINISHED_COUNT) g
CROSS JOIN LATERAL (SELECT entry FROM finished_history ORDER BY id) h;
UPDATE tasks p
SET status = 'done', lease_expires_at = NULL, updated_at = t.updated_at,
    finished_at = t.finished_at,
    doc = jsonb_set(jsonb_set(t.doc, '{id}', p.doc -> 'id'), '{key}', p.doc -> 'key')
FROM finished_template t
WHERE p.status = 'processing';
COMMIT;
