//! The two writes every task change goes through, each one statement inside the caller's
//! transaction: new versions of locked tasks ([`update_tasks`]) and new tasks
//! ([`insert_tasks`]), with their history entries and the webhook deliveries their status
//! changes cause (the outbox is written by the same statement as the change).
//!
//! Both statements also bump the one-row `change_counter` by the number of rows written
//! (taking its row lock until commit, so change positions commit in order: the change feed
//! can resume from a position without missing a commit) and queue one `pg_notify` carrying
//! this store instance's id. PostgreSQL folds identical notifications of one transaction into
//! one, so a commit sends at most one, whatever it wrote.

use std::sync::LazyLock;

use sqlx::PgConnection;
use task_core::store::StoreError;
use uuid::Uuid;

use crate::Shared;
use crate::rows::{HistoryRows, TaskRows};
use crate::stats::insert_changes;

/// The CTE that inserts the deliveries of the status changes bound from parameter `first` on
/// (change ids, tenants, task ids, statuses, times): one per change and webhook of the tenant
/// that wants it (the rule of `Webhook::event_for`). A delivery's id is the change's UUIDv7
/// with its last 4 bytes from the webhook's id, so ids keep the order of the changes.
fn deliveries(first: usize, filter: &str) -> String {
    let (a, b, c, d, e) = (first, first + 1, first + 2, first + 3, first + 4);
    format!(
        "d AS (
    INSERT INTO webhook_deliveries (webhook_id, id, tenant, task_id, event, status, occurred_at,
                                    next_attempt_at, retry_since)
    SELECT w.id,
           encode(overlay(uuid_send(c.id) PLACING substring(uuid_send(w.id) FROM 13 FOR 4)
                          FROM 13 FOR 4), 'hex')::uuid,
           w.tenant, c.task_id, e.event, c.status, c.at, c.at, c.at
    FROM unnest(${a}::uuid[], ${b}::text[], ${c}::uuid[], ${d}::text[], ${e}::bigint[])
            AS c(id, tenant, task_id, status, at)
    JOIN webhooks w ON w.tenant = c.tenant
    CROSS JOIN LATERAL (SELECT CASE
        WHEN c.status IN ('done', 'failed', 'cancelled') AND 'task.' || c.status = ANY (w.events)
            THEN 'task.' || c.status
        WHEN 'task.status_changed' = ANY (w.events) THEN 'task.status_changed'
    END AS event) e
    WHERE e.event IS NOT NULL{filter}
)"
    )
}

/// Writes new versions of tasks the transaction holds locked, compare-and-swapped on the
/// change position each was read at.
static UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
WITH c AS (UPDATE change_counter SET seq = seq + $1 RETURNING seq),
n AS (SELECT pg_notify($2, $3)),
v AS (
    SELECT * FROM unnest($4::uuid[], $5::bigint[], $6::text[], $7::bigint[], $8::bigint[],
                         $9::bigint[], $10::boolean[], $11::bigint[], $12::bigint[], $13::text[])
        WITH ORDINALITY AS v(id, prev_seq, status, ready_at, lease_epoch, lease_expires_at,
                             cancel_requested, updated_at, finished_at, doc, ord)
),
u AS (
    UPDATE tasks t
    SET status = v.status, ready_at = v.ready_at, lease_epoch = v.lease_epoch,
        lease_expires_at = v.lease_expires_at, cancel_requested = v.cancel_requested,
        updated_at = v.updated_at, finished_at = v.finished_at, doc = v.doc::jsonb,
        writer = $14, seq = c.seq - $1 + v.ord
    FROM v, c
    WHERE t.id = v.id AND t.seq = v.prev_seq
    RETURNING t.id
),
h AS (
    INSERT INTO task_history (task_id, entry)
    SELECT h.task_id, h.entry::jsonb
    FROM unnest($15::uuid[], $16::text[]) WITH ORDINALITY AS h(task_id, entry, ord)
    ORDER BY h.ord
),
{deliveries},
{stats}
SELECT (SELECT count(*) FROM u) FROM n",
        deliveries = deliveries(17, ""),
        stats = insert_changes(22, 23, "true")
    )
});

/// Inserts new tasks unless their natural key already has an active task, with the history
/// of those inserted; returns the ids inserted.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
WITH c AS (UPDATE change_counter SET seq = seq + $1 RETURNING seq),
n AS (SELECT pg_notify($2, $3)),
ins AS (
    INSERT INTO tasks (id, tenant, inventory_id, product, version, status, priority_rank,
                       ready_at, seq, lease_epoch, lease_expires_at, cancel_requested,
                       created_at, updated_at, finished_at, writer, doc)
    SELECT v.id, v.tenant, v.inventory_id, v.product, v.version, v.status, v.priority_rank,
           v.ready_at, c.seq - $1 + v.ord, v.lease_epoch, v.lease_expires_at,
           v.cancel_requested, v.created_at, v.updated_at, v.finished_at, $4, v.doc::jsonb
    FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                $11::smallint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::boolean[],
                $16::bigint[], $17::bigint[], $18::bigint[], $19::text[])
        WITH ORDINALITY AS v(id, tenant, inventory_id, product, version, status,
                             priority_rank, ready_at, lease_epoch, lease_expires_at,
                             cancel_requested, created_at, updated_at, finished_at, doc, ord),
         c
    ORDER BY v.ord
    ON CONFLICT (tenant, inventory_id, product, version)
        WHERE status IN ('pending', 'processing') DO NOTHING
    RETURNING id
),
h AS (
    INSERT INTO task_history (task_id, entry)
    SELECT h.task_id, h.entry::jsonb
    FROM unnest($20::uuid[], $21::text[]) WITH ORDINALITY AS h(task_id, entry, ord)
    WHERE h.task_id IN (SELECT id FROM ins)
    ORDER BY h.ord
),
{deliveries},
{stats}
SELECT ins.id FROM ins, n",
        deliveries = deliveries(22, "\n      AND c.task_id IN (SELECT id FROM ins)"),
        stats = insert_changes(27, 28, "x.task IN (SELECT id FROM ins)")
    )
});

/// Writes `rows` (tasks locked by this transaction, each read at `prev_seq`) and `history`.
/// Fails, so that the caller rolls back, if any row changed since it was read.
pub(crate) async fn update_tasks(
    shared: &Shared,
    conn: &mut PgConnection,
    rows: TaskRows,
    history: HistoryRows,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let first = rows.id[0];
    let written: i64 = sqlx::query_scalar(UPDATE.as_str())
        .bind(count)
        .bind(&shared.channel)
        .bind(shared.instance.to_string())
        .bind(&rows.id)
        .bind(&rows.prev_seq)
        .bind(&rows.status)
        .bind(&rows.ready_at)
        .bind(&rows.lease_epoch)
        .bind(&rows.lease_expires_at)
        .bind(&rows.cancel_requested)
        .bind(&rows.updated_at)
        .bind(&rows.finished_at)
        .bind(&rows.doc)
        .bind(shared.instance)
        .bind(&history.task)
        .bind(&history.entry)
        .bind(&history.change_id)
        .bind(&history.change_tenant)
        .bind(&history.change_task)
        .bind(&history.change_status)
        .bind(&history.change_at)
        .bind(rows.stats.counts_json()?)
        .bind(rows.stats.activity_json()?)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| {
            shared.ctx.db(
                "writing tasks",
                format_args!("{count} tasks from {first}"),
                e,
            )
        })?;
    if written != count {
        return Err(StoreError::Conflict(format!(
            "{} of {count} tasks (from {first}) changed while locked in schema {}; nothing was written",
            count - written,
            shared.ctx.schema
        )));
    }
    Ok(())
}

/// Inserts the new tasks of `rows` whose key has no active task, and the history entries of
/// those inserted; returns their ids.
pub(crate) async fn insert_tasks(
    shared: &Shared,
    conn: &mut PgConnection,
    rows: TaskRows,
    history: HistoryRows,
) -> Result<Vec<Uuid>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let first = rows.id[0];
    sqlx::query_scalar(INSERT.as_str())
        .bind(count)
        .bind(&shared.channel)
        .bind(shared.instance.to_string())
        .bind(shared.instance)
        .bind(&rows.id)
        .bind(&rows.tenant)
        .bind(&rows.inventory_id)
        .bind(&rows.product)
        .bind(&rows.version)
        .bind(&rows.status)
        .bind(&rows.priority_rank)
        .bind(&rows.ready_at)
        .bind(&rows.lease_epoch)
        .bind(&rows.lease_expires_at)
        .bind(&rows.cancel_requested)
        .bind(&rows.created_at)
        .bind(&rows.updated_at)
        .bind(&rows.finished_at)
        .bind(&rows.doc)
        .bind(&history.task)
        .bind(&history.entry)
        .bind(&history.change_id)
        .bind(&history.change_tenant)
        .bind(&history.change_task)
        .bind(&history.change_status)
        .bind(&history.change_at)
        .bind(rows.stats.counts_json()?)
        .bind(rows.stats.activity_json()?)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| {
            shared.ctx.db(
                "creating tasks",
                format_args!("{count} tasks from {first}"),
                e,
            )
        })
}
