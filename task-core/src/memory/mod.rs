//! An in-memory store: the reference model of the storage traits, for tests and examples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::catalog::CatalogItem;
use crate::fair::{ProductRoom, ReadyEntry, TenantQueue, Turns, take_turns};
use crate::ids::{InventoryId, ProductName, TaskId, TenantId, Version};
use crate::machine::{Authority, TaskEvent, created, transition_all};
use crate::results::AnalysisResult;
use crate::stats::{ActivityBucket, StatsDelta, StatusCount};
use crate::store::{
    ApplyRequest, ClaimRequest, CreateOutcome, NewTask, Page, PageRequest, StoreError, TaskChange,
    TaskFilter, TaskStore, awaited_by, check_awaited,
};
use crate::task::{HistoryEntry, Status, Task, TaskKey};
use crate::time::{SharedClock, SystemClock, Timestamp};

mod catalog;
mod stats;
mod webhooks;

/// Where a pending task waits: its priority rank, tenant and ready time.
type ReadyPos = (u8, TenantId, Timestamp);

/// One priority's ready queue: each tenant's tasks by (ready time, id).
type TenantQueues = BTreeMap<TenantId, BTreeSet<(Timestamp, TaskId)>>;

#[derive(Default)]
struct Inner {
    tasks: HashMap<TaskId, Task>,
    by_tenant: BTreeSet<(TenantId, TaskId)>,
    /// Pending tasks by priority rank, tenant, ready time and id (ids sort in creation order).
    ready: [TenantQueues; 3],
    ready_pos: HashMap<TaskId, ReadyPos>,
    turns: Turns<TenantId>,
    leases: BTreeSet<(Timestamp, TaskId)>,
    /// Each awaited task, and the tasks that wait for it.
    awaiters: HashMap<TaskId, BTreeSet<TaskId>>,
    /// Tasks woken since the last notification (their awaited tasks all ended).
    woken: Vec<Task>,
    /// Waiting tasks to check once the current change is written.
    to_wake: Vec<TaskId>,
    active: HashMap<TaskKey, TaskId>,
    latest: HashMap<TaskKey, TaskId>,
    history: HashMap<TaskId, Vec<HistoryEntry>>,
    items: BTreeMap<(TenantId, InventoryId), CatalogItem>,
    results: BTreeMap<(TenantId, ProductName, InventoryId, Version), AnalysisResult>,
    cache: HashMap<String, serde_json::Value>,
    outbox: webhooks::Outbox,
    stats: stats::Stats,
}

impl Inner {
    /// Stores `task` (replacing its previous version) and keeps every index in step.
    fn put(&mut self, task: Task, entry: Option<HistoryEntry>) {
        let delta = StatsDelta::of_write(self.tasks.get(&task.id), &task);
        self.stats.apply(&task.key, delta);
        if let Some(old) = self.tasks.get(&task.id) {
            if let Some((rank, tenant, at)) = self.ready_pos.remove(&old.id)
                && let Some(queue) = self.ready[usize::from(rank)].get_mut(&tenant)
            {
                queue.remove(&(at, old.id));
                if queue.is_empty() {
                    self.ready[usize::from(rank)].remove(&tenant);
                }
            }
            if let Some(lease) = old.lease() {
                self.leases.remove(&(lease.expires_at, old.id));
            }
        }
        if let Some(ready_at) = task.ready_at() {
            let rank = task.priority.rank();
            let tenant = task.key.tenant.clone();
            self.ready[usize::from(rank)]
                .entry(tenant.clone())
                .or_default()
                .insert((ready_at, task.id));
            self.ready_pos.insert(task.id, (rank, tenant, ready_at));
        }
        if let Some(lease) = task.lease() {
            self.leases.insert((lease.expires_at, task.id));
        }
        let old_waits = self
            .tasks
            .get(&task.id)
            .map(|old| old.waiting_for().to_vec())
            .unwrap_or_default();
        let parked = old_waits.as_slice() != task.waiting_for();
        if parked {
            for awaited in &old_waits {
                if let Some(waiters) = self.awaiters.get_mut(awaited) {
                    waiters.remove(&task.id);
                    if waiters.is_empty() {
                        self.awaiters.remove(awaited);
                    }
                }
            }
            for awaited in task.waiting_for() {
                self.awaiters.entry(*awaited).or_default().insert(task.id);
            }
        }
        let ended = !task.status().is_active()
            && self
                .tasks
                .get(&task.id)
                .is_some_and(|old| old.status().is_active());
        if task.status().is_active() {
            self.active.insert(task.key.clone(), task.id);
        } else if self.active.get(&task.key) == Some(&task.id) {
            self.active.remove(&task.key);
        }
        self.latest.insert(task.key.clone(), task.id);
        self.by_tenant.insert((task.key.tenant.clone(), task.id));
        if let Some(entry) = entry {
            self.outbox.record_change(&task, &entry);
            self.history.entry(task.id).or_default().push(entry);
        }
        let id = task.id;
        let waits = !task.waiting_for().is_empty();
        self.tasks.insert(id, task);
        if ended {
            let waiters = self.awaiters.remove(&id).unwrap_or_default();
            self.to_wake.extend(waiters);
        }
        if parked && waits {
            self.to_wake.push(id);
        }
    }

    /// The write that ends a task wakes, under the same lock, the tasks that waited only for
    /// it; a wait for tasks that have all ended already is over as soon as it is written.
    /// Called once a change's writes are all made.
    fn wake_waiters(&mut self, now: Timestamp) {
        while let Some(waiter) = self.to_wake.pop() {
            self.wake_if_ready(waiter, now);
        }
    }

    /// Makes `waiter` claimable if every task it waits for has ended (or was pruned).
    fn wake_if_ready(&mut self, waiter: TaskId, now: Timestamp) {
        let Some(task) = self.tasks.get(&waiter) else {
            return;
        };
        let awaited = task.waiting_for().to_vec();
        let all_ended = awaited
            .iter()
            .all(|id| self.tasks.get(id).is_none_or(|t| !t.status().is_active()));
        if awaited.is_empty() || !all_ended {
            return;
        }
        let event = TaskEvent::WaitEnded { ended: awaited };
        if let Ok(woken) = self.apply(waiter, Authority::System, &[event], now) {
            self.woken.push(woken);
        }
    }

    fn apply(
        &mut self,
        id: TaskId,
        authority: Authority,
        events: &[TaskEvent],
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let current = self.tasks.get(&id).ok_or_else(|| not_found_task(id))?;
        for awaited in awaited_by(events) {
            let found = self.tasks.get(awaited).map(|t| &t.key.tenant);
            check_awaited(&current.key.tenant, *awaited, found)?;
        }
        let (task, entries) = transition_all(current, events, authority, now)?;
        self.put_all(&task, entries);
        Ok(task)
    }

    /// Stores `task` with several history entries, all decided before anything is written.
    fn put_all(&mut self, task: &Task, entries: Vec<HistoryEntry>) {
        if entries.is_empty() {
            self.put(task.clone(), None);
        }
        for entry in entries {
            self.put(task.clone(), Some(entry));
        }
        self.wake_waiters(task.updated_at);
    }

    fn claim_one(
        &mut self,
        id: TaskId,
        request: &ClaimRequest,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let task = self.tasks.get(&id).ok_or_else(|| not_found_task(id))?;
        let (task, entries) = request.transition(task, now)?;
        self.put_all(&task, entries);
        Ok(task)
    }

    fn requeue_expired(&mut self, now: Timestamp) -> Vec<Task> {
        let expired: Vec<TaskId> = self
            .leases
            .range(..=(now, TaskId::from_bytes([0xff; 16])))
            .map(|(_, id)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| {
                self.apply(id, Authority::System, &[TaskEvent::LeaseExpired], now)
                    .ok()
            })
            .collect()
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        // Each tenant's queue is ordered by ready time: the earliest is a first entry.
        let ready = self
            .ready
            .iter()
            .flat_map(|tenants| tenants.values())
            .filter_map(|queue| queue.first().map(|(at, _)| *at))
            .min();
        let lease = self.leases.first().map(|(at, _)| *at);
        ready.into_iter().chain(lease).min()
    }

    /// How many tasks of `product` hold an unexpired lease at `now`.
    fn running(&self, product: &ProductName, now: Timestamp) -> usize {
        self.leases
            .range((
                Bound::Excluded((now, TaskId::from_bytes([0xff; 16]))),
                Bound::Unbounded,
            ))
            .filter(|(_, id)| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| t.key.product == *product)
            })
            .count()
    }

    /// Up to `request.max` ready tasks at `now`: priority by priority in the request's order,
    /// tenants taking turns within each ([`take_turns`]), products within their room.
    fn pick(&self, request: &ClaimRequest, now: Timestamp) -> Vec<(TenantId, TaskId)> {
        let mut room = ProductRoom::new(request, |product| self.running(product, now));
        let mut picked = Vec::new();
        for priority in request.priority_order {
            let left = request.max.saturating_sub(picked.len());
            if left == 0 {
                break;
            }
            let queues = self.ready[usize::from(priority.rank())]
                .iter()
                .map(|(tenant, queue)| TenantQueue {
                    tenant: tenant.clone(),
                    served: self.turns.served(tenant),
                    entries: queue.range(..=(now, TaskId::from_bytes([0xff; 16]))).map(
                        |(at, id)| {
                            Ok::<_, std::convert::Infallible>(ReadyEntry {
                                ready_at: *at,
                                id: *id,
                                product: self.tasks.get(id).map_or("", |t| t.key.product.as_str()),
                            })
                        },
                    ),
                })
                .collect();
            match take_turns(queues, left, &mut room) {
                Ok(more) => picked.extend(more),
                Err(never) => match never {},
            }
        }
        picked
    }
}

fn not_found_task(id: TaskId) -> StoreError {
    StoreError::NotFound {
        what: "task",
        id: id.to_string(),
    }
}

/// The in-memory store. Cloning gives another handle to the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    clock: SharedClock,
    changes: broadcast::Sender<TaskChange>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl MemoryStore {
    /// An empty store that reads time from `clock`.
    pub fn new(clock: SharedClock) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            clock,
            changes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied update: `put` only runs
        // after every transition of a call succeeded.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Announces `tasks`, and the tasks their writes woke.
    fn notify<'a>(&self, tasks: impl IntoIterator<Item = &'a Task>) {
        for task in tasks {
            // No subscriber is fine: nobody is waiting.
            let _ = self.changes.send(TaskChange::of(task));
        }
        let woken = std::mem::take(&mut self.lock().woken);
        for task in &woken {
            let _ = self.changes.send(TaskChange::of(task));
        }
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<CreateOutcome>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let mut outcomes = Vec::with_capacity(batch.len());
        for new in batch {
            if let Some(existing) = inner
                .active
                .get(&new.key)
                .and_then(|id| inner.tasks.get(id))
            {
                outcomes.push(CreateOutcome {
                    task: existing.clone(),
                    created: false,
                });
                continue;
            }
            let made = created(TaskId::generate(), new.key, new.priority, now);
            inner.put(made.task.clone(), Some(made.entry));
            outcomes.push(CreateOutcome {
                task: made.task,
                created: true,
            });
        }
        drop(inner);
        self.notify(outcomes.iter().filter(|o| o.created).map(|o| &o.task));
        Ok(outcomes)
    }

    async fn get_task(&self, tenant: &TenantId, id: TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self
            .lock()
            .tasks
            .get(&id)
            .filter(|t| t.key.tenant == *tenant)
            .cloned())
    }

    async fn latest_task(&self, key: &TaskKey) -> Result<Option<Task>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .latest
            .get(key)
            .and_then(|id| inner.tasks.get(id))
            .cloned())
    }

    async fn list_tasks(
        &self,
        tenant: &TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        let after = page.task_cursor()?;
        let limit = page.limit.max(1);
        let inner = self.lock();
        let start = match after {
            Some(id) => Bound::Excluded((tenant.clone(), id)),
            None => Bound::Included((tenant.clone(), TaskId::from_bytes([0; 16]))),
        };
        let mut items = Vec::new();
        let mut next = None;
        for (owner, id) in inner.by_tenant.range((start, Bound::Unbounded)) {
            if owner != tenant {
                break;
            }
            let Some(task) = inner.tasks.get(id) else {
                continue;
            };
            if !filter.matches(task) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|t: &Task| t.id.to_string());
                break;
            }
            items.push(task.clone());
        }
        Ok(Page { items, next })
    }

    async fn request_cancel(&self, tenant: &TenantId, id: TaskId) -> Result<Task, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let task = inner
            .tasks
            .get(&id)
            .filter(|t| t.key.tenant == *tenant)
            .ok_or_else(|| not_found_task(id))?;
        if !task.status().is_active() {
            return Err(StoreError::Conflict(format!(
                "task {id} is already {} and cannot be cancelled",
                task.status()
            )));
        }
        if task.cancel_requested() {
            return Ok(task.clone());
        }
        let task = inner.apply(id, Authority::System, &[TaskEvent::CancelRequested], now)?;
        drop(inner);
        self.notify([&task]);
        Ok(task)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Task>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let mut changed = inner.requeue_expired(now);
        let picked = inner.pick(request, now);
        inner.turns.record(picked.iter().map(|(tenant, _)| tenant));
        let mut claimed = Vec::with_capacity(picked.len());
        for (_, id) in picked {
            let task = inner.claim_one(id, request, now)?;
            if task.status() == Status::Processing {
                claimed.push(task);
            } else {
                // Given up (no attempt left): written, announced, not handed to the worker.
                changed.push(task);
            }
        }
        drop(inner);
        crate::telemetry::tasks_ended_by_the_store(&changed);
        changed.extend(claimed.iter().cloned());
        self.notify(&changed);
        Ok(claimed)
    }

    async fn apply(
        &self,
        id: TaskId,
        epoch: u64,
        events: &[TaskEvent],
    ) -> Result<Task, StoreError> {
        let now = self.clock.now();
        let task = self
            .lock()
            .apply(id, Authority::Lease(epoch), events, now)?;
        self.notify([&task]);
        Ok(task)
    }

    async fn apply_many(
        &self,
        batch: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        let now = self.clock.now();
        let outcomes: Vec<Result<Task, StoreError>> = {
            let mut inner = self.lock();
            batch
                .iter()
                .map(|r| inner.apply(r.id, Authority::Lease(r.epoch), &r.events, now))
                .collect()
        };
        self.notify(outcomes.iter().filter_map(|o| o.as_ref().ok()));
        Ok(outcomes)
    }

    async fn requeue_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        let now = self.clock.now();
        let moved = self.lock().requeue_expired(now);
        crate::telemetry::tasks_ended_by_the_store(&moved);
        self.notify(&moved);
        Ok(moved.into_iter().map(|t| t.id).collect())
    }

    async fn history(
        &self,
        tenant: &TenantId,
        id: TaskId,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let inner = self.lock();
        match inner.tasks.get(&id) {
            Some(task) if task.key.tenant == *tenant => {
                Ok(inner.history.get(&id).cloned().unwrap_or_default())
            }
            _ => Err(not_found_task(id)),
        }
    }

    async fn next_wakeup(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.lock().next_wakeup())
    }

    fn subscribe(&self) -> broadcast::Receiver<TaskChange> {
        self.changes.subscribe()
    }

    async fn status_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        Ok(self.lock().stats.counts(tenant))
    }

    async fn activity(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        Ok(self.lock().stats.activity(tenant, since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Priority;
    use crate::task::{Status, TaskState};

    #[tokio::test]
    async fn indexes_follow_the_task() {
        let store = MemoryStore::default();
        let key = TaskKey {
            tenant: TenantId::new("t").unwrap(),
            inventory_id: InventoryId::new("i").unwrap(),
            product: ProductName::new("adbreaks").unwrap(),
            version: Version::new("1").unwrap(),
        };
        let made = store
            .create_task(NewTask {
                key,
                priority: Priority::High,
            })
            .await
            .unwrap();
        {
            let inner = store.lock();
            assert_eq!(inner.ready_pos.len(), 1);
            assert!(inner.leases.is_empty());
        }
        let worker = crate::ids::WorkerId::new("w").unwrap();
        let claimed = store
            .claim(&ClaimRequest::one(
                worker,
                std::time::Duration::from_secs(5),
            ))
            .await
            .unwrap();
        assert_eq!(claimed[0].id, made.task.id);
        assert_eq!(claimed[0].status(), Status::Processing);
        let inner = store.lock();
        assert!(inner.ready_pos.is_empty());
        assert!(inner.ready.iter().all(BTreeMap::is_empty));
        assert_eq!(inner.leases.len(), 1);
        assert!(matches!(
            inner.tasks[&made.task.id].state,
            TaskState::Processing { .. }
        ));
    }
}
