//! Storage traits: what a backend must do. Conveniences live in [`TaskStoreExt`].

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::catalog::{CatalogItem, DeletedItem, ItemUpsert};
use crate::error::TaskError;
use crate::ids::{InventoryId, Priority, ProductName, TaskId, TenantId, Version, WorkerId};
use crate::machine::{Authority, TaskEvent, TransitionError, transition};
use crate::results::AnalysisResult;
use crate::stats::{ActivityBucket, StatusCount};
use crate::task::{HistoryEntry, Status, Step, Task, TaskKey};
use crate::time::Timestamp;
use crate::webhooks::WebhookStore;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The addressed record does not exist (or belongs to another tenant).
    #[error("{what} {id} not found")]
    NotFound {
        /// The kind of record (`task`, `catalog item`...).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request conflicts with the record's state (e.g. cancelling a finished task).
    #[error("{0}")]
    Conflict(String),
    /// The state machine refused the event (including fencing: a stale or expired lease).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// An input the store cannot accept (e.g. a malformed cursor).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A stored value cannot be read: corrupted, or written by a newer format.
    #[error("corrupt record in {location} at key {key}: {reason}")]
    Corrupt {
        /// The database file or tree.
        location: String,
        /// The key, printed.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend failed (I/O, lock held by another process, connection lost).
    #[error("{backend} store error while {operation}: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What the store was doing.
        operation: &'static str,
        /// The underlying error.
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
    },
    /// The store cannot take writes for now (its disk is full or failed) and is recovering by
    /// itself: try again later. The reason names no path; the service log has the details.
    #[error("the {backend} store cannot write now: {reason}; try again shortly")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// Why, without paths or layout.
        reason: String,
    },
}

impl StoreError {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            } | StoreError::Unavailable { .. }
        )
    }

    /// Whether the error says the caller no longer holds the task's lease.
    pub fn is_lease_lost(&self) -> bool {
        matches!(
            self,
            StoreError::Transition(
                TransitionError::LeaseLost { .. } | TransitionError::LeaseExpired { .. }
            )
        )
    }
}

/// A request to create a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The natural key.
    pub key: TaskKey,
    /// Claim priority.
    pub priority: Priority,
}

/// The outcome of a create: a new task, or the active one that already had the key.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateOutcome {
    /// The task.
    pub task: Task,
    /// True if it was created by this call.
    pub created: bool,
}

/// Filters for [`TaskStore::list_tasks`]; all set fields must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// Only tasks of this catalog item.
    pub inventory_id: Option<InventoryId>,
    /// Only this product.
    pub product: Option<ProductName>,
    /// Only this version.
    pub version: Option<Version>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only this priority.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Only tasks created at or after this time.
    #[serde(default)]
    pub created_from: Option<Timestamp>,
    /// Only tasks created before this time.
    #[serde(default)]
    pub created_before: Option<Timestamp>,
}

impl TaskFilter {
    /// Whether `task` passes the filter.
    pub fn matches(&self, task: &Task) -> bool {
        self.inventory_id
            .as_ref()
            .is_none_or(|id| *id == task.key.inventory_id)
            && self.product.as_ref().is_none_or(|p| *p == task.key.product)
            && self.version.as_ref().is_none_or(|v| *v == task.key.version)
            && self.status.is_none_or(|s| s == task.status())
            && self.priority.is_none_or(|p| p == task.priority)
            && self.created_from.is_none_or(|t| task.created_at >= t)
            && self.created_before.is_none_or(|t| task.created_at < t)
    }
}

/// A page request: up to `limit` items after the opaque `after` cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// The `next` cursor of the previous page; None for the first page.
    pub after: Option<String>,
    /// Page size, at least 1.
    pub limit: usize,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }

    /// The cursor of a task listing (a task id), or why it is malformed.
    pub fn task_cursor(&self) -> Result<Option<TaskId>, StoreError> {
        self.cursor(TaskId::parse)
    }

    /// The cursor of a catalog listing (an inventory id), or why it is malformed.
    pub fn item_cursor(&self) -> Result<Option<InventoryId>, StoreError> {
        self.cursor(|raw| InventoryId::new(raw))
    }

    fn cursor<T>(
        &self,
        parse: impl FnOnce(&str) -> Result<T, crate::ids::ValidationError>,
    ) -> Result<Option<T>, StoreError> {
        self.after
            .as_deref()
            .map(parse)
            .transpose()
            .map_err(|e| StoreError::Invalid {
                field: "cursor",
                reason: e.to_string(),
            })
    }
}

/// One page of results and the cursor of the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in a stable order. A page may hold fewer than the requested `limit` items,
    /// even none, while [`Page::next`] is set: a store may end a page once it has looked at a
    /// bounded number of entries (see [`TaskStore::list_tasks`]).
    pub items: Vec<T>,
    /// Cursor for the next page; None when this is the last. Callers keep paging while it is
    /// set, whatever the number of items of this page.
    pub next: Option<String>,
}

/// A claim: up to `max` ready tasks for `worker`, leased for `lease`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// The claiming worker.
    pub worker: WorkerId,
    /// Lease length.
    pub lease: Duration,
    /// How many tasks at most.
    pub max: usize,
    /// The order in which priorities are served; within each, tenants take turns and each
    /// tenant's tasks go FIFO by ready time (see [`crate::fair`]).
    pub priority_order: [Priority; 3],
    /// Products not to claim now (at their concurrency limit).
    pub exclude_products: Vec<ProductName>,
    /// Also start each claimed task's first step without a checkpoint, in the same atomic
    /// write as the claim (as the new lease holder would with [`TaskEvent::StepStarted`]), so
    /// a runner saves one write per task. A task whose steps all have checkpoints is only
    /// claimed.
    pub start_first_step: bool,
    /// The most attempts each product allows. A ready task of a listed product that has
    /// already used them all (its last attempt ended by a lease expiry, so no worker recorded
    /// the failure) is not claimed: it fails as `attempts_exhausted` in the claim's write.
    /// Products not listed have no limit here.
    pub attempt_limits: Vec<(ProductName, u32)>,
    /// The most tasks of each listed product that may be processing at once, counted over
    /// every worker sharing the store (tasks with an unexpired lease). A claim takes no more
    /// of a product than its limit minus the tasks of it already processing; concurrent
    /// claims cannot both take the last slot. Products not listed have no limit here.
    pub product_limits: Vec<(ProductName, usize)>,
}

impl ClaimRequest {
    /// A claim of one task, strict priority order, any product, no step started.
    pub fn one(worker: WorkerId, lease: Duration) -> Self {
        Self {
            worker,
            lease,
            max: 1,
            priority_order: Priority::ALL,
            exclude_products: Vec::new(),
            start_first_step: false,
            attempt_limits: Vec::new(),
            product_limits: Vec::new(),
        }
    }

    /// The same request with a limit of `max_running` processing tasks of `product` across
    /// every worker (see [`product_limits`](ClaimRequest::product_limits)).
    pub fn with_product_limit(mut self, product: ProductName, max_running: usize) -> Self {
        self.product_limits.push((product, max_running));
        self
    }

    /// The same request with [`start_first_step`](ClaimRequest::start_first_step) set to `start`.
    pub fn with_start_first_step(mut self, start: bool) -> Self {
        self.start_first_step = start;
        self
    }

    /// The same request with an attempt limit for `product`.
    pub fn with_attempt_limit(mut self, product: ProductName, max_attempts: u32) -> Self {
        self.attempt_limits.push((product, max_attempts));
        self
    }

    /// What this claim does to one ready `task` at `now`: the claimed (and, if asked, started)
    /// task and its history entries, or why the claim is refused. Stores write both in one
    /// atomic update. A task past its product's attempt limit comes back `failed`
    /// ([`TaskEvent::GaveUp`]) rather than processing: stores write it and do not return it
    /// as claimed.
    pub fn transition(
        &self,
        task: &Task,
        now: Timestamp,
    ) -> Result<(Task, Vec<HistoryEntry>), TransitionError> {
        let limit = self
            .attempt_limits
            .iter()
            .find(|(product, _)| *product == task.key.product)
            .map(|(_, limit)| *limit);
        if let Some(limit) = limit.filter(|limit| task.attempt >= *limit) {
            let last = task
                .last_error
                .clone()
                .unwrap_or_else(|| TaskError::WorkerLost {
                    detail: format!("attempt {} ended without a recorded outcome", task.attempt),
                });
            let error = TaskError::AttemptsExhausted {
                attempts: task.attempt.max(limit),
                last: Box::new(last),
            };
            let gave_up = transition(task, &TaskEvent::GaveUp { error }, Authority::System, now)?;
            return Ok((gave_up.task, vec![gave_up.entry]));
        }
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let claim = TaskEvent::Claimed {
            worker: self.worker.clone(),
            lease_ms,
        };
        let claimed = transition(task, &claim, Authority::System, now)?;
        let mut entries = vec![claimed.entry];
        let mut task = claimed.task;
        if self.start_first_step
            && let Some(step) = task.next_step()
        {
            let start = TaskEvent::StepStarted { step };
            let started = transition(&task, &start, Authority::Lease(task.epoch), now)?;
            entries.push(started.entry);
            task = started.task;
        }
        Ok((task, entries))
    }
}

/// One entry of [`TaskStore::apply_many`]: worker events for one task under one lease.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyRequest {
    /// The task.
    pub id: TaskId,
    /// The lease epoch the sender holds.
    pub epoch: u64,
    /// The events, applied all or none.
    pub events: Vec<TaskEvent>,
}

/// A change to a task, broadcast to subscribers so workers and watchers wake at once.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    /// The task.
    pub task_id: TaskId,
    /// Its owner.
    pub tenant: TenantId,
    /// Its product.
    pub product: ProductName,
    /// The status after the change.
    pub status: Status,
    /// The step after the change.
    pub step: Option<Step>,
    /// Whether a cancel is pending.
    pub cancel_requested: bool,
    /// When a pending task becomes claimable.
    pub ready_at: Option<Timestamp>,
}

impl TaskChange {
    /// The change notice for `task`.
    pub fn of(task: &Task) -> Self {
        Self {
            task_id: task.id,
            tenant: task.key.tenant.clone(),
            product: task.key.product.clone(),
            status: task.status(),
            step: task.current_step(),
            cancel_requested: task.cancel_requested(),
            ready_at: task.ready_at(),
        }
    }
}

/// Tasks: creation with dedup, queries, claims with leases, fenced transitions, history.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Creates a task, or returns the active (pending or processing) task with the same key.
    /// By default a batch of one.
    async fn create_task(&self, new: NewTask) -> Result<CreateOutcome, StoreError> {
        self.create_tasks(vec![new])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Conflict("a create of one task answered nothing".into()))
    }

    /// Creates many tasks in one commit; one outcome per entry, in order.
    async fn create_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<CreateOutcome>, StoreError>;

    /// A task of `tenant` by id.
    async fn get_task(&self, tenant: &TenantId, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// The most recent task with `key` (active or not).
    async fn latest_task(&self, key: &TaskKey) -> Result<Option<Task>, StoreError>;

    /// A tenant's tasks matching `filter`, oldest first, one page at a time.
    ///
    /// A store may bound the work of one page: with a filter that few tasks match, the page
    /// ends once a scan budget is spent (the sled store looks at 5,000 index entries, or
    /// `limit` if more), holding the matches found so far, possibly none, with `next` set after
    /// the last task looked at. Paging on until `next` is None still reaches every match.
    async fn list_tasks(
        &self,
        tenant: &TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError>;

    /// Asks to cancel: a pending task ends `cancelled` at once; a processing one gets
    /// `cancel_requested` and ends when its worker stops. Finished tasks answer `Conflict`.
    async fn request_cancel(&self, tenant: &TenantId, id: TaskId) -> Result<Task, StoreError>;

    /// Leases up to `request.max` ready tasks, in the requested priority order. Within a
    /// priority, tenants with ready work take turns (see [`crate::fair`]); each tenant's tasks
    /// are taken FIFO by ready time, then creation order. Expired leases are requeued first,
    /// at their old queue position. Each task is given to one claimer only, and no product
    /// goes over its [`product_limits`](ClaimRequest::product_limits).
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Task>, StoreError>;

    /// Applies worker `events` to task `id` atomically, presenting lease `epoch`. Either all are
    /// applied or none; a stale or expired lease is refused.
    async fn apply(&self, id: TaskId, epoch: u64, events: &[TaskEvent])
    -> Result<Task, StoreError>;

    /// Applies many [`ApplyRequest`]s, each exactly as [`apply`](TaskStore::apply) would: each
    /// entry is atomic on its own and fails on its own (a stale epoch in one entry does not stop
    /// the others). One outcome per entry, in order. The outer error means the backend failed
    /// for the whole batch.
    ///
    /// The default applies the entries one by one (each backend error lands in its entry);
    /// stores override it to write the batch in one go.
    async fn apply_many(
        &self,
        batch: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            outcomes.push(self.apply(request.id, request.epoch, &request.events).await);
        }
        Ok(outcomes)
    }

    /// Moves every task whose lease expired back to pending (or to cancelled if a cancel was
    /// requested). Returns the ids moved.
    async fn requeue_expired(&self) -> Result<Vec<TaskId>, StoreError>;

    /// The audit trail of a task, oldest first.
    async fn history(&self, tenant: &TenantId, id: TaskId)
    -> Result<Vec<HistoryEntry>, StoreError>;

    /// The earliest time a pending task becomes ready, or a processing lease expires; None if
    /// nothing is waiting. Lets a runner sleep exactly until there is work.
    async fn next_wakeup(&self) -> Result<Option<Timestamp>, StoreError>;

    /// A stream of every task change from now on.
    fn subscribe(&self) -> broadcast::Receiver<TaskChange>;

    /// Why the store refuses writes right now (a full disk it is waiting to recover from), or
    /// None when it takes them. Cheap and never blocks: `/readyz` asks it on every probe.
    fn outage(&self) -> Option<String> {
        None
    }

    /// Tasks by tenant, product and status, from counters kept in the same write as each
    /// change (never a scan of the tasks): `tenant` alone, or every tenant. Zero counts may be
    /// left out. Deleting finished tasks (retention) takes them out of the counts.
    async fn status_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<StatusCount>, StoreError>;

    /// Per-minute activity of `tenant` (or every tenant) by product, for the minutes from the
    /// one holding `since`, oldest first. Kept at least [`ACTIVITY_KEPT_MS`] with each write.
    ///
    /// [`ACTIVITY_KEPT_MS`]: crate::stats::ACTIVITY_KEPT_MS
    async fn activity(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
    ) -> Result<Vec<ActivityBucket>, StoreError>;
}

/// The catalog of a tenant's items.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Creates or replaces an item (un-deleting it). Returns the item and whether it is new.
    ///
    /// Its `parent_id` is checked by [`crate::hierarchy::check_parent`] in the same atomic
    /// write, against the parent and the item's children as stored: an invalid link is
    /// [`StoreError::Invalid`] (field `parent_id`), a type change the item's children cannot
    /// follow is [`StoreError::Conflict`]. A parent deleted or changed concurrently never ends
    /// up with a new child its state refuses.
    async fn upsert_item(&self, item: ItemUpsert) -> Result<(CatalogItem, bool), StoreError>;

    /// An item; soft-deleted ones only with `include_deleted`.
    async fn get_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
        include_deleted: bool,
    ) -> Result<Option<CatalogItem>, StoreError>;

    /// A tenant's items ordered by inventory id, one page at a time.
    async fn list_items(
        &self,
        tenant: &TenantId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError>;

    /// The items of `tenant` whose `parent_id` is `parent`, ordered by inventory id, one page at
    /// a time (cursors as in [`list_items`](CatalogStore::list_items)); soft-deleted ones only
    /// with `include_deleted`. A parent without children, deleted or not in the catalog gives
    /// an empty page. [`CatalogStoreExt::children`](crate::hierarchy::CatalogStoreExt::children)
    /// gets every page.
    async fn list_children(
        &self,
        tenant: &TenantId,
        parent: &InventoryId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError>;

    /// Soft-deletes an item and requests cancel of its active tasks in the same commit. Its
    /// children are left as they are, `parent_id` included.
    async fn delete_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<DeletedItem, StoreError>;
}

/// Analysis results and a cache of reusable step outputs.
#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// Stores a result, replacing any for the same (tenant, product, inventory id, version).
    async fn put_result(&self, result: AnalysisResult) -> Result<(), StoreError>;

    /// The result for a version, or the most recently updated one when `version` is None.
    async fn get_result(
        &self,
        tenant: &TenantId,
        product: &ProductName,
        inventory_id: &InventoryId,
        version: Option<&Version>,
    ) -> Result<Option<AnalysisResult>, StoreError>;

    /// A cached step output by key (e.g. a probe of an asset URL + ETag + size).
    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Stores a cached step output.
    async fn cache_put(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError>;
}

/// Everything a backend provides; implemented for every type that implements the four traits.
pub trait Store: TaskStore + CatalogStore + ResultStore + WebhookStore {}

impl<T: TaskStore + CatalogStore + ResultStore + WebhookStore> Store for T {}

/// Conveniences over [`TaskStore`] for every store.
#[async_trait]
pub trait TaskStoreExt: TaskStore {
    /// Extends the lease of a held task by `lease` from now (a heartbeat).
    async fn extend_lease(
        &self,
        id: TaskId,
        epoch: u64,
        lease: Duration,
    ) -> Result<Task, StoreError> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        self.apply(id, epoch, &[TaskEvent::LeaseExtended { lease_ms }])
            .await
    }

    /// Records the running step's output as its checkpoint.
    async fn record_checkpoint(
        &self,
        id: TaskId,
        epoch: u64,
        output: serde_json::Value,
    ) -> Result<Task, StoreError> {
        self.apply(
            id,
            epoch,
            &[TaskEvent::StepSucceeded {
                output,
                reused: false,
            }],
        )
        .await
    }

    /// Ends a held task as done.
    async fn finish(&self, id: TaskId, epoch: u64) -> Result<Task, StoreError> {
        self.apply(id, epoch, &[TaskEvent::Done]).await
    }

    /// Claims at most one task.
    async fn claim_one(
        &self,
        worker: WorkerId,
        lease: Duration,
    ) -> Result<Option<Task>, StoreError> {
        Ok(self
            .claim(&ClaimRequest::one(worker, lease))
            .await?
            .into_iter()
            .next())
    }
}

impl<T: TaskStore + ?Sized> TaskStoreExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traits_stay_object_safe() {
        fn _takes(_: &dyn TaskStore, _: &dyn CatalogStore, _: &dyn ResultStore) {}
        fn _takes_webhooks(_: &dyn WebhookStore) {}
        fn _takes_store(_: std::sync::Arc<dyn Store>) {}
    }
}
