-- Schema version 3 of task-store-postgres: webhook subscriptions and their outbox.

-- A tenant's subscriptions. `events` holds the wire names (task.done, task.status_changed...).
CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    secret text NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant, id);

-- One event for one subscription, written by the statement that writes the task change
-- (see write.rs), kept until delivered or given up, and listed newest first per subscription.
CREATE TABLE webhook_deliveries (
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    tenant text COLLATE "C" NOT NULL,
    task_id uuid NOT NULL,
    event text NOT NULL,
    status text NOT NULL,
    occurred_at bigint NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at bigint,
    last_attempt_at bigint,
    last_error text,
    delivered_at bigint,
    retry_since bigint NOT NULL,
    PRIMARY KEY (webhook_id, id)
);

-- The outbox: pending deliveries by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
