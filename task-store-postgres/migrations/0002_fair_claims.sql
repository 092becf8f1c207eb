-- Schema version 2 of task-store-postgres: claims fair across tenants, per-product limits
-- across processes, requeued tasks back at their queue position.

-- Each tenant's ready tasks of a priority in claim order: ready time, then id (task ids are
-- UUIDv7, so creation order; a requeued task gets its old ready time back, so its old place).
-- Also serves the skip scan over the tenants with pending tasks of a priority.
CREATE INDEX tasks_ready_tenant ON tasks (priority_rank, tenant, ready_at, id)
    WHERE status = 'pending';

-- Processing tasks by product: the count of running tasks against a product's limit.
CREATE INDEX tasks_running_product ON tasks (product, lease_expires_at)
    WHERE status = 'processing';

-- When each tenant was last served by a claim (a value of `tenant_turn`): the tenant least
-- recently served takes the first turn. A tenant never served has no row (served 0).
CREATE TABLE tenant_turns (
    tenant text COLLATE "C" PRIMARY KEY,
    served bigint NOT NULL
);
CREATE SEQUENCE tenant_turn;
