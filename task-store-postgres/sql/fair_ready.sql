WITH RECURSIVE tenants(tenant) AS (
    (SELECT tenant FROM tasks
     WHERE status = 'pending' AND priority_rank = $4
     ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT t.tenant FROM tasks t
            WHERE t.status = 'pending' AND t.priority_rank = $4 AND t.tenant > tenants.tenant
            ORDER BY t.tenant LIMIT 1)
    FROM tenants WHERE tenants.tenant IS NOT NULL
),
room AS (
    SELECT l.product, l.room FROM unnest($5::text[], $6::bigint[]) AS l(product, room)
),
heads AS (
    SELECT tn.tenant, coalesce(tt.served, 0) AS served, h.ready_at, h.id
    FROM tenants tn
    CROSS JOIN LATERAL (
        SELECT t.ready_at, t.id FROM tasks t
        WHERE t.status = 'pending' AND t.priority_rank = $4 AND t.tenant = tn.tenant
          AND t.ready_at <= $1 AND t.product <> ALL($2::text[])
        ORDER BY t.ready_at, t.id LIMIT 1
    ) h
    LEFT JOIN tenant_turns tt ON tt.tenant = tn.tenant
    ORDER BY 2, 3, 4
    LIMIT $3
),
turns AS (
    SELECT tenant, row_number() OVER (ORDER BY served, ready_at, id) AS turn FROM heads
),
locked AS (
    SELECT tu.turn, c.id, c.seq, c.doc, c.product, c.ready_at
    FROM turns tu
    CROSS JOIN LATERAL (
        SELECT t.id, t.seq, t.doc, t.product, t.ready_at FROM tasks t
        WHERE t.status = 'pending' AND t.priority_rank = $4 AND t.tenant = tu.tenant
          AND t.ready_at <= $1 AND t.product <> ALL($2::text[])
        ORDER BY t.ready_at, t.id LIMIT $3
        FOR UPDATE OF t SKIP LOCKED
    ) c
),
rounds AS (
    SELECT l.*, row_number() OVER (PARTITION BY l.turn ORDER BY l.ready_at, l.id) AS round
    FROM locked l
),
capped AS (
    SELECT r.*, row_number() OVER (PARTITION BY r.product ORDER BY r.round, r.turn) AS nth
    FROM rounds r
)
SELECT c.id, c.seq, c.doc::text, c.product FROM capped c LEFT JOIN room ON room.product = c.product
WHERE room.room IS NULL OR c.nth <= room.room
ORDER BY c.round, c.turn
LIMIT $3
