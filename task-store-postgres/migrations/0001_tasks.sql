-- Schema version 1 of task-store-postgres. Runs inside the store's schema (search_path), in
-- the migration transaction. Times are milliseconds since the Unix epoch (task-core's
-- Timestamp, clamped to bigint); the full task is the JSONB `doc`, the other task columns are
-- indexed copies of its fields, rewritten with it on every write.

-- One row: the position of the last change. Every write bumps it by the number of rows it
-- writes and holds the row lock until commit, so change positions commit in order.
CREATE TABLE change_counter (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq bigint NOT NULL
);
INSERT INTO change_counter (only_row, seq) VALUES (true, 0);

CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    inventory_id text COLLATE "C" NOT NULL,
    product text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    status text NOT NULL
        CHECK (status IN ('pending', 'processing', 'done', 'failed', 'cancelled')),
    priority_rank smallint NOT NULL,
    -- Pending tasks: when they become claimable.
    ready_at bigint,
    -- The change position of the last write: the change feed's cursor, and FIFO order among
    -- pending tasks with the same priority and ready time.
    seq bigint NOT NULL,
    lease_epoch bigint NOT NULL,
    -- Processing tasks: when the lease lapses.
    lease_expires_at bigint,
    cancel_requested boolean NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    finished_at bigint,
    -- The store instance that wrote last (its listener skips its own changes).
    writer uuid NOT NULL,
    doc jsonb NOT NULL
);

-- At most one active task per natural key: creates insert with ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX tasks_active_key ON tasks (tenant, inventory_id, product, version)
    WHERE status IN ('pending', 'processing');
-- The claim: ready tasks by priority, ready time, FIFO.
CREATE INDEX tasks_ready ON tasks (priority_rank, ready_at, seq) WHERE status = 'pending';
-- Expired leases, by expiry time.
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'processing';
CREATE INDEX tasks_by_tenant ON tasks (tenant, id);
CREATE INDEX tasks_by_key ON tasks (tenant, inventory_id, product, version);
CREATE INDEX tasks_changes ON tasks (seq);
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE task_history (
    id bigserial PRIMARY KEY,
    task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    entry jsonb NOT NULL
);
CREATE INDEX task_history_by_task ON task_history (task_id, id);

CREATE TABLE catalog_items (
    tenant text COLLATE "C" NOT NULL,
    inventory_id text COLLATE "C" NOT NULL,
    -- The item as last upserted (task-core's ItemUpsert).
    item jsonb NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    deleted_at bigint,
    PRIMARY KEY (tenant, inventory_id)
);

CREATE TABLE results (
    tenant text COLLATE "C" NOT NULL,
    product text COLLATE "C" NOT NULL,
    inventory_id text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    updated_at bigint NOT NULL,
    doc jsonb NOT NULL,
    PRIMARY KEY (tenant, product, inventory_id, version)
);

CREATE TABLE step_cache (
    key text COLLATE "C" PRIMARY KEY,
    value jsonb NOT NULL
);
