//! Claims and lease expiry.
//!
//! A claim requeues expired leases first (rows chosen by lease expiry time, locked with
//! `FOR UPDATE SKIP LOCKED`, moved by task-core's `LeaseExpired` transition, back at their
//! old queue position) and wakes the waiting tasks whose awaited tasks have all ended
//! (task-core's `WaitEnded`), committing them on their own when there are any. Then one
//! transaction:
//!
//! 1. takes `pg_advisory_xact_lock` of each product the request limits ([`LOCK_PRODUCTS`],
//!    in key order), so two claims counting the same product's running tasks run one after
//!    the other and cannot both take its last slot, whichever process they run in;
//! 2. per priority in the requested order, until full, one statement ([`FAIR_READY`]) that
//!    counts each limited product's running tasks, lets the tenants with ready work take
//!    turns, and locks the rows it returns (and up to `max` per tenant in turn) with
//!    `FOR UPDATE SKIP LOCKED`;
//! 3. task-core's [`ClaimRequest::transition`] computes each claimed task, and one
//!    `UPDATE ... FROM unnest(...)` writes them back with their history before the commit.
//!
//! A row locked by another claimer is skipped, never waited for, so claimers never share a
//! task. The tenants served get their turn recorded ([`RECORD_TURNS`]) before the write.

use std::collections::HashMap;
use std::sync::LazyLock;

use task_core::ids::TaskId;
use task_core::machine::{Authority, TaskEvent, transition};
use task_core::store::{ClaimRequest, StoreError};
use task_core::task::{Status, Task};
use task_core::time::Timestamp;
use uuid::Uuid;

use crate::claim_sql::{FAIR_READY, LOCK_PRODUCTS, RECORD_TURNS, RUNNING};
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
    let expired = |_: &Task| TaskEvent::LeaseExpired;
    write_system_events(store, tx, rows, expired, now).await
}

/// Waiting tasks whose awaited tasks have all ended (a pruned task counts as ended), skipping
/// rows another transaction holds: every one (`ALL`), or only those that changed after change
/// position `$2` or wait for a task that ended after it (`RECENT`, through the GIN index).
static WAITING_DONE_ALL: LazyLock<String> = LazyLock::new(|| waiting_done("", ""));

/// See [`WAITING_DONE_ALL`].
static WAITING_DONE_RECENT: LazyLock<String> = LazyLock::new(|| {
    waiting_done(
        "WITH ended AS (
    SELECT c.id::text AS id FROM tasks c
    WHERE c.seq > $2 AND c.status IN ('done', 'failed', 'cancelled')
)",
        "
  AND (t.seq > $2 OR (t.doc->'state'->'waiting_for') ?| ARRAY(SELECT id FROM ended))",
    )
});

/// The waiting rows (after the CTE `with`, filtered by `filter`) whose awaited tasks have
/// all ended, locked.
fn waiting_done(with: &str, filter: &str) -> String {
    format!(
        "{with}
SELECT t.id, t.seq, t.doc::text FROM tasks t
WHERE t.status = 'pending' AND t.ready_at IS NULL{filter}
  AND NOT EXISTS (
      SELECT 1 FROM jsonb_array_elements_text(t.doc->'state'->'waiting_for') AS a(id)
      JOIN tasks c ON c.id = a.id::uuid
      WHERE c.status IN ('pending', 'processing'))
ORDER BY t.id
LIMIT $1
FOR UPDATE OF t SKIP LOCKED"
    )
}

/// Makes claimable, in `tx`, up to [`REQUEUE_BATCH`] waiting tasks whose awaited tasks have
/// all ended; returns them, and the change position up to which every ended wait was seen
/// (None when the batch was full: the next claim looks again from the same position).
///
/// Change positions commit in order, so reading the counter before the query means every
/// change at or before it is in the query's snapshot. A task parked after that position is
/// looked at again by the next claim (its own row changed); one whose awaited task ends later
/// is found through that task's end.
async fn wake_in(
    store: &PostgresStore,
    tx: &mut Tx,
    now: Timestamp,
) -> Result<(Vec<Task>, Option<i64>), StoreError> {
    let shared = &store.shared;
    let fail = |e| {
        shared
            .ctx
            .db("waking waiting tasks", format_args!("at {now}"), e)
    };
    let upto: i64 = sqlx::query_scalar("SELECT seq FROM change_counter")
        .fetch_one(&mut **tx)
        .await
        .map_err(fail)?;
    let since = shared
        .waits_checked_to
        .load(std::sync::atomic::Ordering::Relaxed);
    let rows: Vec<(Uuid, i64, String)> = if since == 0 {
        sqlx::query_as(WAITING_DONE_ALL.as_str())
            .bind(REQUEUE_BATCH)
            .fetch_all(&mut **tx)
            .await
    } else {
        sqlx::query_as(WAITING_DONE_RECENT.as_str())
            .bind(REQUEUE_BATCH)
            .bind(since)
            .fetch_all(&mut **tx)
            .await
    }
    .map_err(fail)?;
    let full = rows.len() >= usize::try_from(REQUEUE_BATCH).unwrap_or(usize::MAX);
    let ended = |task: &Task| TaskEvent::WaitEnded {
        ended: task.waiting_for().to_vec(),
    };
    let woken = write_system_events(store, tx, rows, ended, now).await?;
    Ok((woken, (!full).then_some(upto)))
}

/// Applies the system event `event_for` gives each of the locked `rows`, in their order, and
/// writes them in `tx`; returns the tasks written (a refused one is logged and left as it is).
async fn write_system_events(
    store: &PostgresStore,
    tx: &mut Tx,
    rows: Vec<(Uuid, i64, String)>,
    event_for: impl Fn(&Task) -> TaskEvent,
    now: Timestamp,
) -> Result<Vec<Task>, StoreError> {
    let shared = &store.shared;
    let order: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let mut locked = decode_locked(shared, rows)?;
    let mut writes = TaskRows::default();
    let mut history = HistoryRows::default();
    let mut moved = Vec::new();
    for id in order {
        let Some(Locked { task, seq }) = locked.remove(&id) else {
            continue;
        };
        let event = event_for(&task);
        match transition(&task, &event, Authority::System, now) {
            Ok(step) => {
                writes.push(Some(&task), &step.task, seq)?;
                history.push(&step.task, [&step.entry])?;
                moved.push(step.task);
            }
            Err(err) => {
                tracing::warn!(task = %task.id, event = %event.kind(), error = %err, "a system event cannot be applied")
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
        task_core::telemetry::tasks_ended_by_the_store(&moved);
        shared.notify(&moved);
        let full = moved.len() >= usize::try_from(REQUEUE_BATCH).unwrap_or(usize::MAX);
        all.extend(moved.iter().map(|t| uuid(t.id)));
        if !full {
            return Ok(ids(&all));
        }
    }
}

/// Takes the advisory lock of every product the request limits and may claim, so that
/// claims counting the same product's running tasks run one after the other.
async fn lock_products(
    store: &PostgresStore,
    tx: &mut Tx,
    request: &ClaimRequest,
) -> Result<(), StoreError> {
    let products: Vec<&str> = request
        .product_limits
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !request.exclude_products.contains(p))
        .map(|p| p.as_str())
        .collect();
    if products.is_empty() {
        return Ok(());
    }
    let shared = &store.shared;
    sqlx::query(LOCK_PRODUCTS)
        .bind(&*shared.ctx.schema)
        .bind(&products)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            shared.ctx.db(
                "locking the limited products",
                format_args!("worker {}", request.worker),
                e,
            )
        })?;
    Ok(())
}

/// How many tasks of each limited product are processing now (unexpired leases).
async fn running(
    store: &PostgresStore,
    tx: &mut Tx,
    request: &ClaimRequest,
    now: Timestamp,
) -> Result<HashMap<String, i64>, StoreError> {
    if request.product_limits.is_empty() {
        return Ok(HashMap::new());
    }
    let shared = &store.shared;
    let products: Vec<&str> = request
        .product_limits
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(RUNNING)
        .bind(millis(now))
        .bind(&products)
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| {
            shared.ctx.db(
                "counting running tasks",
                format_args!("worker {}", request.worker),
                e,
            )
        })?;
    Ok(rows.into_iter().collect())
}

/// Locks up to `max` ready tasks: priority by priority in the request's order, one
/// [`FAIR_READY`] statement each, until the claim is full.
async fn pick(
    store: &PostgresStore,
    tx: &mut Tx,
    request: &ClaimRequest,
    now: Timestamp,
) -> Result<Vec<(Uuid, i64, String)>, StoreError> {
    let shared = &store.shared;
    let fail = |e| {
        shared.ctx.db(
            "claiming tasks",
            format_args!("worker {}", request.worker),
            e,
        )
    };
    // What each limited product may still take: its limit less its running tasks, less
    // what this claim took in earlier priorities.
    let mut room: HashMap<String, i64> = HashMap::new();
    let running = running(store, tx, request, now).await?;
    for (product, limit) in &request.product_limits {
        let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
        let used = running.get(product.as_str()).copied().unwrap_or(0);
        let left = room.entry(product.as_str().to_owned()).or_insert(i64::MAX);
        *left = (*left).min(limit.saturating_sub(used));
    }
    let mut picked: Vec<(Uuid, i64, String)> = Vec::new();
    for priority in request.priority_order {
        let left = request.max - picked.len();
        if left == 0 {
            break;
        }
        let mut skipped: Vec<&str> = request
            .exclude_products
            .iter()
            .map(|p| p.as_str())
            .collect();
        skipped.extend(
            room.iter()
                .filter(|(_, n)| **n <= 0)
                .map(|(p, _)| p.as_str()),
        );
        let (limited, rooms): (Vec<&str>, Vec<i64>) = room
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (p.as_str(), *n))
            .unzip();
        // Planned with its parameters every time (an unnamed statement): a generic plan
        // cannot know that `LIMIT $3` is small and `ready_at <= $1` matches nearly every row,
        // and prefers sorting a tenant's whole queue to reading the index in order.
        let rows: Vec<(Uuid, i64, String, String)> = sqlx::query_as(FAIR_READY)
            .persistent(false)
            .bind(millis(now))
            .bind(&skipped)
            .bind(i64::try_from(left).unwrap_or(i64::MAX))
            .bind(i16::from(priority.rank()))
            .bind(&limited)
            .bind(&rooms)
            .fetch_all(&mut **tx)
            .await
            .map_err(fail)?;
        for (id, seq, doc, product) in rows {
            if let Some(n) = room.get_mut(&product) {
                *n -= 1;
            }
            picked.push((id, seq, doc));
        }
    }
    Ok(picked)
}

/// Limits and locks, then claims in `tx`: the tasks claimed and the tasks given up.
async fn claim_in(
    store: &PostgresStore,
    tx: &mut Tx,
    request: &ClaimRequest,
) -> Result<(Vec<Task>, Vec<Task>), StoreError> {
    let shared = &store.shared;
    let mut changed = Vec::new();
    let mut claimed = Vec::new();
    if request.max == 0 {
        return Ok((claimed, changed));
    }
    lock_products(store, tx, request).await?;
    // Read after the locks: a claim that waited for another sees the time it claims at, and
    // its history never dates a claim before the end of a task whose slot it took.
    let now = shared.clock.now();
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
        let (claimed_task, entries) = request.transition(&task, now)?;
        writes.push(Some(&task), &claimed_task, seq)?;
        let task = claimed_task;
        history.push(&task, &entries)?;
        if task.status() == Status::Processing {
            claimed.push(task);
        } else {
            // Given up (no attempt left): written, announced, not handed to the worker.
            changed.push(task);
        }
    }
    let served: Vec<&Task> = claimed.iter().chain(&changed).collect();
    record_turns(store, tx, &served).await?;
    update_tasks(shared, tx, writes, history).await?;
    Ok((claimed, changed))
}

/// Records the tenants served by a claim, in claim order (see [`RECORD_TURNS`]), in the
/// claim's transaction. Claims lock these rows in tenant order, after their product locks and
/// before the change counter, like every claim: they can wait for each other, never in a
/// cycle.
async fn record_turns(
    store: &PostgresStore,
    tx: &mut Tx,
    served: &[&Task],
) -> Result<(), StoreError> {
    if served.is_empty() {
        return Ok(());
    }
    let shared = &store.shared;
    let tenants: Vec<&str> = served.iter().map(|t| t.key.tenant.as_str()).collect();
    sqlx::query(RECORD_TURNS)
        .bind(&tenants)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            shared.ctx.db(
                "recording the tenants served",
                format_args!("{tenants:?}"),
                e,
            )
        })?;
    Ok(())
}

/// Claims up to `request.max` ready tasks (see the module doc).
#[tracing::instrument(skip_all, fields(schema = %store.shared.ctx.schema, worker = %request.worker, max = request.max))]
pub(crate) async fn claim(
    store: &PostgresStore,
    request: &ClaimRequest,
) -> Result<Vec<Task>, StoreError> {
    let shared = &store.shared;
    let now = shared.clock.now();
    let input = format!("worker {}", request.worker);
    // Expired leases first, committed on their own when there are any: the claim then waits
    // for product locks without holding the change counter.
    let mut tx = shared.begin("claiming tasks").await?;
    let mut requeued = requeue_in(store, &mut tx, now).await;
    let mut waits_checked = None;
    if let Ok(moved) = &mut requeued {
        match wake_in(store, &mut tx, now).await {
            Ok((woken, upto)) => {
                moved.extend(woken);
                waits_checked = upto;
            }
            Err(err) => requeued = Err(err),
        }
    }
    if !matches!(&requeued, Ok(moved) if moved.is_empty()) {
        let moved = shared
            .finish(tx, requeued, "claiming tasks", input.clone())
            .await?;
        shared.waits_checked(waits_checked.take());
        task_core::telemetry::tasks_ended_by_the_store(&moved);
        shared.notify(&moved);
        tx = shared.begin("claiming tasks").await?;
    }
    let result = claim_in(store, &mut tx, request).await;
    let (claimed, mut changed) = shared.finish(tx, result, "claiming tasks", input).await?;
    shared.waits_checked(waits_checked);
    task_core::telemetry::tasks_ended_by_the_store(&changed);
    changed.extend(claimed.iter().cloned());
    shared.notify(&changed);
    Ok(claimed)
}
