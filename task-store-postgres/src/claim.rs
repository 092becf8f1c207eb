//! Claims and lease expiry.
//!
//! A claim is one transaction: expired leases are requeued first (rows chosen by lease expiry
//! time, locked with `FOR UPDATE SKIP LOCKED`, moved by task-core's `LeaseExpired`
//! transition), then a CTE locks up to `max` ready rows in claim order with
//! `FOR UPDATE SKIP LOCKED`, task-core's [`ClaimRequest::transition`] computes each claimed
//! task, and one `UPDATE ... FROM unnest(...)` writes them back with their history before the
//! commit. A row locked by another claimer is skipped, never waited for, so claimers never
//! share a task nor queue behind each other.

use task_core::ids::{Priority, TaskId};
use task_core::machine::{Authority, TaskEvent, transition};
use task_core::store::{ClaimRequest, StoreError};
use task_core::task::{Status, Task};
use task_core::time::Timestamp;
use uuid::Uuid;

use crate::rows::{HistoryRows, TaskRows, millis, uuid};
use crate::tasks::{Locked, decode_locked, ids};
use crate::write::update_tasks;
use crate::{PostgresStore, Tx};

/// At most this many expired leases are requeued per transaction.
const REQUEUE_BATCH: i64 = 1000;

/// Expired leases, by expiry time (never by age), skipping rows another transaction holds.
const EXPIRED: &str = "
SELECT id, seq, doc::text FROM tasks
WHERE status = 'processing' AND lease_expires_at <= $1
ORDER BY lease_expires_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED";

/// The claim in the default priority order (high, medium, low): served in order by the
/// partial index `tasks_ready (priority_rank, ready_at, seq) WHERE status = 'pending'`.
pub(crate) const READY: &str = "
WITH ready AS (
    SELECT id, seq, doc, priority_rank, ready_at FROM tasks
    WHERE status = 'pending' AND ready_at <= $1 AND product <> ALL($2::text[])
    ORDER BY priority_rank, ready_at, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
SELECT id, seq, doc::text FROM ready ORDER BY priority_rank, ready_at, seq";

/// The claim of one priority, for other priority orders: one statement per priority, in the
/// requested order, each served by the same index.
const READY_OF_PRIORITY: &str = "
WITH ready AS (
    SELECT id, seq, doc, ready_at FROM tasks
    WHERE status = 'pending' AND priority_rank = $4 AND ready_at <= $1
      AND product <> ALL($2::text[])
    ORDER BY ready_at, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
SELECT id, seq, doc::text FROM ready ORDER BY ready_at, seq";

/// Requeues up to [`REQUEUE_BATCH`] expired leases in `tx`; returns the requeued tasks.
async fn requeue_in(
    store: &PostgresStore,
    tx: &mut Tx,
    now: Timestamp,
) -> Result<Vec<Task>, StoreError> {
    let shared = &store.shared;
    let rows: Vec<(Uuid, i64, String)> = sqlx::query_as(EXPIRED)
        .bind(millis(now))
        .bind(REQUEUE_BATCH)
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| {
            shared
                .ctx
                .db("requeueing expired leases", format_args!("at {now}"), e)
        })?;
    let order: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let mut locked = decode_locked(shared, rows)?;
    let mut writes = TaskRows::default();
    let mut history = HistoryRows::default();
    let mut moved = Vec::new();
    for id in order {
        let Some(Locked { task, seq }) = locked.remove(&id) else {
            continue;
        };
        match transition(&task, &TaskEvent::LeaseExpired, Authority::System, now) {
            Ok(step) => {
                writes.push(&step.task, seq)?;
                history.push(step.task.id, [&step.entry])?;
                moved.push(step.task);
            }
            Err(err) => {
                tracing::warn!(task = %task.id, error = %err, "an expired lease cannot be requeued")
            }
        }
    }
    update_tasks(shared, tx, writes, history).await?;
    Ok(moved)
}

/// Moves every expired lease back to the queue (or to cancelled), in bounded transactions.
#[tracing::instrument(skip_all, fields(schema = %store.shared.ctx.schema))]
pub(crate) async fn requeue_expired(store: &PostgresStore) -> Result<Vec<TaskId>, StoreError> {
    let shared = &store.shared;
    let mut all = Vec::new();
    loop {
        let now = shared.clock.now();
        let mut tx = shared.begin("requeueing expired leases").await?;
        let result = requeue_in(store, &mut tx, now).await;
        let moved = shared
            .finish(tx, result, "requeueing expired leases", format!("at {now}"))
            .await?;
        shared.notify(&moved);
        let full = moved.len() >= usize::try_from(REQUEUE_BATCH).unwrap_or(usize::MAX);
        all.extend(moved.iter().map(|t| uuid(t.id)));
        if !full {
            return Ok(ids(&all));
        }
    }
}

/// Locks up to `max` ready tasks in the request's order.
async fn pick(
    store: &PostgresStore,
    tx: &mut Tx,
    request: &ClaimRequest,
    now: Timestamp,
) -> Result<Vec<(Uuid, i64, String)>, StoreError> {
    let shared = &store.shared;
    let excluded: Vec<&str> = request
        .exclude_products
        .iter()
        .map(|p| p.as_str())
        .collect();
    let fail = |e| {
        shared.ctx.db(
            "claiming tasks",
            format_args!("worker {}", request.worker),
            e,
        )
    };
    let max = i64::try_from(request.max).unwrap_or(i64::MAX);
    if request.priority_order == Priority::ALL {
        return sqlx::query_as(READY)
            .bind(millis(now))
            .bind(&excluded)
            .bind(max)
            .fetch_all(&mut **tx)
            .await
            .map_err(fail);
    }
    let mut picked = Vec::new();
    for priority in request.priority_order {
        let room = request.max - picked.len();
        if room == 0 {
            break;
        }
        let rows: Vec<(Uuid, i64, String)> = sqlx::query_as(READY_OF_PRIORITY)
            .bind(millis(now))
            .bind(&excluded)
            .bind(i64::try_from(room).unwrap_or(i64::MAX))
            .bind(i16::from(priority.rank()))
            .fetch_all(&mut **tx)
            .await
            .map_err(fail)?;
        picked.extend(rows);
    }
    Ok(picked)
}

/// Requeues expired leases, then claims in `tx`: the tasks claimed and every task changed
/// besides (requeued, given up).
async fn claim_in(
    store: &PostgresStore,
    tx: &mut Tx,
    request: &ClaimRequest,
    now: Timestamp,
) -> Result<(Vec<Task>, Vec<Task>), StoreError> {
    let shared = &store.shared;
    let mut changed = requeue_in(store, tx, now).await?;
    let mut claimed = Vec::new();
    if request.max == 0 {
        return Ok((claimed, changed));
    }
    let rows = pick(store, tx, request, now).await?;
    let order: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let mut locked = decode_locked(shared, rows)?;
    let mut writes = TaskRows::default();
    let mut history = HistoryRows::default();
    for id in order {
        let Some(Locked { task, seq }) = locked.remove(&id) else {
            continue;
        };
        // task-core decides: claimed (and maybe started), or given up at its attempt limit.
        let (task, entries) = request.transition(&task, now)?;
        writes.push(&task, seq)?;
        history.push(task.id, &entries)?;
        if task.status() == Status::Processing {
            claimed.push(task);
        } else {
            // Given up (no attempt left): written, announced, not handed to the worker.
            changed.push(task);
        }
    }
    update_tasks(shared, tx, writes, history).await?;
    Ok((claimed, changed))
}

/// Claims up to `request.max` ready tasks (see the module doc).
#[tracing::instrument(skip_all, fields(schema = %store.shared.ctx.schema, worker = %request.worker, max = request.max))]
pub(crate) async fn claim(
    store: &PostgresStore,
    request: &ClaimRequest,
) -> Result<Vec<Task>, StoreError> {
    let shared = &store.shared;
    let now = shared.clock.now();
    let mut tx = shared.begin("claiming tasks").await?;
    let result = claim_in(store, &mut tx, request, now).await;
    let input = format!("worker {}", request.worker);
    let (claimed, mut changed) = shared.finish(tx, result, "claiming tasks", input).await?;
    changed.extend(claimed.iter().cloned());
    shared.notify(&changed);
    Ok(claimed)
}
