//! [`TaskStore`] for [`PostgresStore`]: creates with dedup, reads, cancels, fenced worker
//! writes and history. Claims and lease expiry are in `claim`.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::PgConnection;
use tokio::sync::broadcast;
use uuid::Uuid;

use task_core::ids::{TaskId, TenantId};
use task_core::machine::{Authority, TaskEvent, transition, transition_all};
use task_core::store::{
    ApplyRequest, ClaimRequest, CreateOutcome, NewTask, Page, PageRequest, StoreError, TaskChange,
    TaskFilter, TaskStore, awaited_by, check_awaited,
};
use task_core::task::{HistoryEntry, Status, Task, TaskKey};
use task_core::time::Timestamp;

use crate::rows::{
    HistoryRows, TaskRows, decode_entry, decode_task, millis, task_id, timestamp, uuid,
};
use crate::write::update_tasks;
use crate::{PostgresStore, Shared};

/// A task read under its row lock, with the change position it was read at.
#[derive(Clone)]
pub(crate) struct Locked {
    pub task: Task,
    pub seq: i64,
}

fn not_found(id: TaskId) -> StoreError {
    StoreError::NotFound {
        what: "task",
        id: id.to_string(),
    }
}

/// Locks the tasks `ids` (in id order, so that concurrent lockers never deadlock) and reads
/// them; missing ids are absent from the map.
pub(crate) async fn lock_tasks(
    shared: &Shared,
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Locked>, StoreError> {
    let rows: Vec<(Uuid, i64, String)> = sqlx::query_as(
        "SELECT id, seq, doc::text FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| {
        shared
            .ctx
            .db("locking tasks", format_args!("tasks {ids:?}"), e)
    })?;
    decode_locked(shared, rows)
}

/// Decodes `(id, seq, doc)` rows.
pub(crate) fn decode_locked(
    shared: &Shared,
    rows: Vec<(Uuid, i64, String)>,
) -> Result<HashMap<Uuid, Locked>, StoreError> {
    rows.into_iter()
        .map(|(id, seq, doc)| {
            let task = decode_task(&shared.ctx, id, &doc)?;
            Ok((id, Locked { task, seq }))
        })
        .collect()
}

/// The tenants of the tasks the entries of `batch` ask to wait for (absent: no such task).
async fn awaited_tenants(
    shared: &Shared,
    conn: &mut PgConnection,
    batch: &[ApplyRequest],
) -> Result<HashMap<Uuid, TenantId>, StoreError> {
    let ids: Vec<Uuid> = batch
        .iter()
        .flat_map(|r| awaited_by(&r.events))
        .map(|id| uuid(*id))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, tenant FROM tasks WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| {
                shared
                    .ctx
                    .db("reading awaited tasks", format_args!("tasks {ids:?}"), e)
            })?;
    rows.into_iter()
        .map(|(id, tenant)| {
            let tenant = TenantId::new(tenant)
                .map_err(|e| shared.ctx.corrupt("tasks", id, format!("tenant: {e}")))?;
            Ok((id, tenant))
        })
        .collect()
}

/// Applies the entries of `batch` in order to the tasks locked in `conn`; one outcome each.
async fn apply_in(
    shared: &Shared,
    conn: &mut PgConnection,
    batch: &[ApplyRequest],
    now: Timestamp,
) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
    let mut ids: Vec<Uuid> = batch.iter().map(|r| uuid(r.id)).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut locked = lock_tasks(shared, conn, &ids).await?;
    // As read: what the statistics changes are counted from.
    let read: HashMap<Uuid, Locked> = locked.clone();
    let awaited_tenants = awaited_tenants(shared, conn, batch).await?;
    let mut history = HistoryRows::default();
    let mut written = HashSet::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let Some(current) = locked.get_mut(&uuid(request.id)) else {
            outcomes.push(Err(not_found(request.id)));
            continue;
        };
        let checked: Result<(), StoreError> =
            awaited_by(&request.events).iter().try_for_each(|awaited| {
                let found = awaited_tenants.get(&uuid(*awaited));
                check_awaited(&current.task.key.tenant, *awaited, found)
            });
        if let Err(refused) = checked {
            outcomes.push(Err(refused));
            continue;
        }
        // task-core fences: a stale epoch or an expired lease is refused, nothing written.
        let authority = Authority::Lease(request.epoch);
        match transition_all(&current.task, &request.events, authority, now) {
            Ok((task, entries)) => {
                history.push(&task, &entries)?;
                // A heartbeat changes the lease and leaves no history entry.
                if !request.events.is_empty() {
                    written.insert(uuid(task.id));
                }
                current.task = task.clone();
                outcomes.push(Ok(task));
            }
            Err(refused) => outcomes.push(Err(refused.into())),
        }
    }
    let mut rows = TaskRows::default();
    for id in ids.iter().filter(|id| written.contains(*id)) {
        if let (Some(current), Some(before)) = (locked.get(id), read.get(id)) {
            rows.push(Some(&before.task), &current.task, before.seq)?;
        }
    }
    update_tasks(shared, conn, rows, history).await?;
    Ok(outcomes)
}

/// Asks to cancel task `id` of `tenant` in `conn`: the task, and whether it was written.
async fn cancel_in(
    shared: &Shared,
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: TaskId,
    now: Timestamp,
) -> Result<(Task, bool), StoreError> {
    let mut locked = lock_tasks(shared, conn, &[uuid(id)]).await?;
    let Some(Locked { task, seq }) = locked
        .remove(&uuid(id))
        .filter(|l| l.task.key.tenant == *tenant)
    else {
        return Err(not_found(id));
    };
    if !task.status().is_active() {
        return Err(StoreError::Conflict(format!(
            "task {id} is already {} and cannot be cancelled",
            task.status()
        )));
    }
    if task.cancel_requested() {
        return Ok((task, false));
    }
    let step = transition(&task, &TaskEvent::CancelRequested, Authority::System, now)?;
    let mut rows = TaskRows::default();
    rows.push(Some(&task), &step.task, seq)?;
    let mut history = HistoryRows::default();
    history.push(&step.task, [&step.entry])?;
    update_tasks(shared, conn, rows, history).await?;
    Ok((step.task, true))
}

impl PostgresStore {
    /// Applies `batch` in one transaction (see [`TaskStore::apply_many`]).
    #[tracing::instrument(skip_all, fields(schema = %self.shared.ctx.schema, count = batch.len()))]
    async fn apply_batch(
        &self,
        batch: &[ApplyRequest],
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let shared = &self.shared;
        let now = shared.clock.now();
        let mut tx = shared.begin("applying events").await?;
        let result = apply_in(shared, &mut tx, batch, now).await;
        let input = format!("{} entries from task {}", batch.len(), batch[0].id);
        let outcomes = shared.finish(tx, result, "applying events", input).await?;
        shared.notify(outcomes.iter().filter_map(|o| o.as_ref().ok()));
        Ok(outcomes)
    }

    #[tracing::instrument(skip_all, fields(schema = %self.shared.ctx.schema, task = %id))]
    async fn cancel(&self, tenant: &TenantId, id: TaskId) -> Result<Task, StoreError> {
        let shared = &self.shared;
        let now = shared.clock.now();
        let mut tx = shared.begin("cancelling a task").await?;
        let result = cancel_in(shared, &mut tx, tenant, id, now).await;
        let (task, written) = shared
            .finish(tx, result, "cancelling a task", format!("task {id}"))
            .await?;
        if written {
            shared.notify([&task]);
        }
        Ok(task)
    }

    async fn fetch_tasks(
        &self,
        operation: &'static str,
        input: impl std::fmt::Display,
        query: sqlx::query::QueryAs<
            '_,
            sqlx::Postgres,
            (Uuid, String),
            sqlx::postgres::PgArguments,
        >,
    ) -> Result<Vec<Task>, StoreError> {
        let rows = query
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.shared.ctx.db(operation, input, e))?;
        rows.into_iter()
            .map(|(id, doc)| decode_task(&self.shared.ctx, id, &doc))
            .collect()
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn create_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<CreateOutcome>, StoreError> {
        self.create(batch).await
    }

    async fn get_task(&self, tenant: &TenantId, id: TaskId) -> Result<Option<Task>, StoreError> {
        let query = sqlx::query_as("SELECT id, doc::text FROM tasks WHERE id = $1 AND tenant = $2")
            .bind(uuid(id))
            .bind(tenant.as_str());
        let mut found = self
            .fetch_tasks("reading a task", format!("task {id}"), query)
            .await?;
        Ok(found.pop())
    }

    async fn latest_task(&self, key: &TaskKey) -> Result<Option<Task>, StoreError> {
        // The last written task of the key: once a task ends it is never written again, so
        // this is the newest one.
        let query = sqlx::query_as(
            "SELECT id, doc::text FROM tasks
             WHERE tenant = $1 AND inventory_id = $2 AND product = $3 AND version = $4
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(key.tenant.as_str())
        .bind(key.inventory_id.as_str())
        .bind(key.product.as_str())
        .bind(key.version.as_str());
        let mut found = self
            .fetch_tasks("reading the latest task", format!("key {key}"), query)
            .await?;
        Ok(found.pop())
    }

    async fn list_tasks(
        &self,
        tenant: &TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        let after = page.task_cursor()?.map(uuid);
        let limit = page.limit.max(1);
        let query = sqlx::query_as(
            "SELECT id, doc::text FROM tasks
             WHERE tenant = $1 AND ($2::uuid IS NULL OR id > $2)
               AND ($3::text IS NULL OR inventory_id = $3)
               AND ($4::text IS NULL OR product = $4)
               AND ($5::text IS NULL OR version = $5)
               AND ($6::text IS NULL OR status = $6)
               AND ($8::smallint IS NULL OR priority_rank = $8)
               AND ($9::bigint IS NULL OR created_at >= $9)
               AND ($10::bigint IS NULL OR created_at < $10)
             ORDER BY id LIMIT $7",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(filter.inventory_id.as_ref().map(|v| v.as_str()))
        .bind(filter.product.as_ref().map(|v| v.as_str()))
        .bind(filter.version.as_ref().map(|v| v.as_str()))
        .bind(filter.status.map(Status::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1)
        .bind(filter.priority.map(|p| i16::from(p.rank())))
        .bind(filter.created_from.map(millis))
        .bind(filter.created_before.map(millis));
        let mut items = self
            .fetch_tasks("listing tasks", format!("tenant {tenant}"), query)
            .await?;
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|t| t.id.to_string())
        });
        Ok(Page {
            items,
            next: next.flatten(),
        })
    }

    async fn request_cancel(&self, tenant: &TenantId, id: TaskId) -> Result<Task, StoreError> {
        self.cancel(tenant, id).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Task>, StoreError> {
        crate::claim::claim(self, request).await
    }

    async fn apply(
        &self,
        id: TaskId,
        epoch: u64,
        events: &[TaskEvent],
    ) -> Result<Task, StoreError> {
        let request = ApplyRequest {
            id,
            epoch,
            events: events.to_vec(),
        };
        let mut outcomes = self.apply_batch(std::slice::from_ref(&request)).await?;
        outcomes.pop().unwrap_or_else(|| Err(not_found(id)))
    }

    async fn apply_many(
        &self,
        batch: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        self.apply_batch(&batch).await
    }

    async fn requeue_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        crate::claim::requeue_expired(self).await
    }

    async fn history(
        &self,
        tenant: &TenantId,
        id: TaskId,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows: Vec<(Option<String>,)> = sqlx::query_as(
            "SELECT h.entry::text FROM tasks t
             LEFT JOIN task_history h ON h.task_id = t.id
             WHERE t.id = $1 AND t.tenant = $2
             ORDER BY h.id",
        )
        .bind(uuid(id))
        .bind(tenant.as_str())
        .fetch_all(&self.shared.pool)
        .await
        .map_err(|e| {
            self.shared
                .ctx
                .db("reading history", format_args!("task {id}"), e)
        })?;
        if rows.is_empty() {
            return Err(not_found(id));
        }
        rows.into_iter()
            .filter_map(|(entry,)| entry)
            .map(|entry| decode_entry(&self.shared.ctx, uuid(id), &entry))
            .collect()
    }

    async fn next_wakeup(&self) -> Result<Option<Timestamp>, StoreError> {
        // The earliest ready time of each priority (the ready index serves each), and the
        // earliest lease expiry.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT least(
                 (SELECT min((SELECT ready_at FROM tasks
                              WHERE status = 'pending' AND priority_rank = r
                              ORDER BY ready_at LIMIT 1))
                  FROM generate_series(0, 2) AS r),
                 (SELECT min(lease_expires_at) FROM tasks WHERE status = 'processing'))",
        )
        .fetch_one(&self.shared.pool)
        .await
        .map_err(|e| self.shared.ctx.db("reading the next wakeup", "-", e))?;
        Ok(next.map(timestamp))
    }

    fn subscribe(&self) -> broadcast::Receiver<TaskChange> {
        self.shared.changes.subscribe()
    }

    async fn status_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<task_core::stats::StatusCount>, StoreError> {
        self.read_counts(tenant).await
    }

    async fn activity(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
    ) -> Result<Vec<task_core::stats::ActivityBucket>, StoreError> {
        self.read_activity(tenant, since).await
    }
}

/// Task ids back from `uuid` columns.
pub(crate) fn ids(rows: &[Uuid]) -> Vec<TaskId> {
    rows.iter().copied().map(task_id).collect()
}
