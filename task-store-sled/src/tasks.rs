//! [`TaskStore`] for [`SledStore`]: creation with dedup, queries, cancel, transitions, history.

use std::ops::Bound;

use async_trait::async_trait;
use task_core::ids::{TaskId, TenantId};
use task_core::machine::TaskEvent;
use task_core::store::{
    ApplyRequest, ClaimRequest, CreateOutcome, NewTask, Page, PageRequest, StoreError, TaskChange,
    TaskFilter, TaskStore,
};
use task_core::task::{HistoryEntry, Task, TaskKey};
use task_core::time::Timestamp;
use tokio::sync::broadcast;

use crate::committer::{Done, Op};
use crate::layout::{Tk, tree};
use crate::record::{StoredTask, decode_head, decode_record, task_not_found};
use crate::{Inner, SledStore, keys, unexpected};

/// At most this many index entries are looked at for one page of `list_tasks` (more when the
/// page asks for more items): a filter that few tasks match ends the page early, with its
/// `next` cursor after the last task looked at, instead of scanning the whole tenant.
pub(crate) const LIST_SCAN_BUDGET: usize = 5_000;

impl Inner {
    /// Reads a task record (without its history) outside the committer.
    pub(crate) fn load(&self, id: TaskId) -> Result<Option<StoredTask>, StoreError> {
        let key = id.to_bytes();
        self.trees
            .view(Tk::Tasks)
            .get(&key)
            .map_err(|e| self.ctx.backend("reading a task", e))?
            .map(|bytes| decode_head(&self.ctx, &key, &bytes))
            .transpose()
    }

    /// A task of `tenant`, or None.
    fn load_owned(&self, tenant: &TenantId, id: TaskId) -> Result<Option<StoredTask>, StoreError> {
        Ok(self.load(id)?.filter(|t| t.task.key.tenant == *tenant))
    }

    /// The task an index entry of `tree` at `key` points to; a dangling entry is corruption.
    fn load_indexed(&self, tree: &str, key: &[u8]) -> Result<Task, StoreError> {
        let id = keys::trailing_id(key)
            .ok_or_else(|| self.ctx.corrupt(tree, key, "malformed index key"))?;
        self.load(id)?.map(|t| t.task).ok_or_else(|| {
            self.ctx
                .corrupt(tree, key, format!("index entry for missing task {id}"))
        })
    }

    fn list_sync(
        &self,
        tenant: &TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        let after = page.task_cursor()?;
        let limit = page.limit.max(1);
        let (index, name, prefix) = match &filter.inventory_id {
            Some(item) => (
                self.trees.view(Tk::ByItem),
                tree::BY_ITEM,
                keys::strings(&[tenant.as_str(), item.as_str()]),
            ),
            None => (
                self.trees.view(Tk::ByTenant),
                tree::BY_TENANT,
                keys::strings(&[tenant.as_str()]),
            ),
        };
        let start = match after {
            Some(id) => Bound::Excluded(keys::with_id(prefix.clone(), id)),
            None => Bound::Included(prefix.clone()),
        };
        let end = keys::after_prefix(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let budget = LIST_SCAN_BUDGET.max(limit);
        let mut items: Vec<Task> = Vec::new();
        let mut next = None;
        let mut last_scanned = None;
        for (scanned, entry) in index.range((start, end)).enumerate() {
            let (key, _) = entry.map_err(|e| self.ctx.backend("listing tasks", e))?;
            if scanned == budget {
                // The budget is spent: the next page goes on after the last task looked at.
                next = last_scanned.map(|id: TaskId| id.to_string());
                break;
            }
            let task = self.load_indexed(name, &key)?;
            if !filter.matches(&task) {
                last_scanned = Some(task.id);
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|t| t.id.to_string());
                break;
            }
            last_scanned = Some(task.id);
            items.push(task);
        }
        Ok(Page { items, next })
    }

    fn history_sync(&self, tenant: &TenantId, id: TaskId) -> Result<Vec<HistoryEntry>, StoreError> {
        let key = id.to_bytes();
        let bytes = self
            .trees
            .view(Tk::Tasks)
            .get(&key)
            .map_err(|e| self.ctx.backend("reading a task", e))?
            .ok_or_else(|| task_not_found(id))?;
        let (stored, history) = decode_record(&self.ctx, &key, &bytes)?;
        if stored.task.key.tenant != *tenant {
            return Err(task_not_found(id));
        }
        Ok(history)
    }
}

#[async_trait]
impl TaskStore for SledStore {
    async fn create_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<CreateOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.live()?;
        match inner.write(Op::Create(batch)).await? {
            Done::Created(outcomes) => {
                inner.notify(outcomes.iter().filter(|o| o.created).map(|o| &o.task));
                Ok(outcomes)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn get_task(&self, tenant: &TenantId, id: TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.live()?.load_owned(tenant, id)?.map(|t| t.task))
    }

    async fn latest_task(&self, key: &TaskKey) -> Result<Option<Task>, StoreError> {
        let inner = &self.live()?;
        let natural = keys::task_key(key);
        let Some(raw) = inner
            .trees
            .view(Tk::Latest)
            .get(&natural)
            .map_err(|e| inner.ctx.backend("reading the latest task", e))?
        else {
            return Ok(None);
        };
        let id = keys::trailing_id(&raw).ok_or_else(|| {
            inner
                .ctx
                .corrupt(tree::LATEST, &natural, "malformed task id")
        })?;
        Ok(inner.load(id)?.map(|t| t.task))
    }

    async fn list_tasks(
        &self,
        tenant: &TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        let inner = self.live()?;
        let (tenant, filter, page) = (tenant.clone(), filter.clone(), page.clone());
        // Up to a scan budget of record reads: a blocking thread's work, not the runtime's.
        tokio::task::spawn_blocking(move || inner.list_sync(&tenant, &filter, &page))
            .await
            .map_err(|e| StoreError::Backend {
                backend: crate::error::BACKEND,
                operation: "listing tasks",
                message: format!("the listing thread failed: {e}"),
                retryable: false,
            })?
    }

    async fn request_cancel(&self, tenant: &TenantId, id: TaskId) -> Result<Task, StoreError> {
        let inner = &self.live()?;
        match inner.write(Op::Cancel(tenant.clone(), id)).await? {
            Done::Cancelled(task, changed) => {
                if changed {
                    inner.notify([&task]);
                }
                Ok(task)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Task>, StoreError> {
        let inner = &self.live()?;
        match inner.write(Op::Claim(request.clone())).await? {
            Done::Claimed(requeued, claimed) => {
                task_core::telemetry::tasks_ended_by_the_store(&requeued);
                inner.notify(requeued.iter().chain(&claimed));
                Ok(claimed)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn apply(
        &self,
        id: TaskId,
        epoch: u64,
        events: &[TaskEvent],
    ) -> Result<Task, StoreError> {
        let inner = &self.live()?;
        let op = Op::Apply {
            id,
            epoch,
            events: events.to_vec(),
        };
        match inner.write(op).await? {
            Done::Applied(task) => {
                inner.notify([&task]);
                Ok(task)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn apply_many(
        &self,
        batch: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.live()?;
        match inner.write(Op::ApplyMany(batch)).await? {
            Done::AppliedMany(outcomes) => {
                inner.notify(outcomes.iter().filter_map(|o| o.as_ref().ok()));
                Ok(outcomes)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn requeue_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        let inner = &self.live()?;
        match inner.write(Op::Requeue).await? {
            Done::Requeued(moved) => {
                task_core::telemetry::tasks_ended_by_the_store(&moved);
                inner.notify(&moved);
                Ok(moved.into_iter().map(|t| t.id).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn history(
        &self,
        tenant: &TenantId,
        id: TaskId,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.live()?.history_sync(tenant, id)
    }

    async fn next_wakeup(&self) -> Result<Option<Timestamp>, StoreError> {
        self.live()?.next_wakeup_sync()
    }

    fn subscribe(&self) -> broadcast::Receiver<TaskChange> {
        self.shell.handles.changes.subscribe()
    }

    fn outage(&self) -> Option<String> {
        self.shell.outage_reason()
    }

    async fn status_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<task_core::stats::StatusCount>, StoreError> {
        self.live()?.status_counts_sync(tenant)
    }

    async fn activity(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
    ) -> Result<Vec<task_core::stats::ActivityBucket>, StoreError> {
        self.live()?.activity_sync(tenant, since)
    }
}
