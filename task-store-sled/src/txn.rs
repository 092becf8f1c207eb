//! One task write inside a sled transaction: the record, every index entry and the history.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use task_core::ids::TaskId;
use task_core::machine::{Authority, TaskEvent, transition};
use task_core::store::StoreError;
use task_core::task::{HistoryEntry, Task};
use task_core::time::Timestamp;

use crate::codec::{decode, encode};
use crate::error::Ctx;
use crate::keys;
use crate::open::tree;

/// The result type of code running inside a transaction.
pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Aborts the transaction with `err`.
pub(crate) fn abort(err: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(err)
}

/// The stored form of a task: the record plus what is needed to find its index entries.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StoredTask {
    /// The task as the state machine returned it.
    pub task: Task,
    /// The sequence number of its ready-queue entry, while pending.
    pub ready_seq: Option<u64>,
    /// How many history entries it has.
    pub history_len: u32,
}

#[derive(Serialize)]
struct StoredTaskRef<'a> {
    task: &'a Task,
    ready_seq: Option<u64>,
    history_len: u32,
}

/// The NotFound error of a task.
pub(crate) fn task_not_found(id: TaskId) -> StoreError {
    StoreError::NotFound {
        what: "task",
        id: id.to_string(),
    }
}

/// The transactional views of the task trees (and the catalog, for deletes).
pub(crate) struct TaskTx<'a> {
    pub ctx: &'a Ctx,
    pub tasks: &'a TransactionalTree,
    pub ready: &'a TransactionalTree,
    pub active: &'a TransactionalTree,
    pub latest: &'a TransactionalTree,
    pub leases: &'a TransactionalTree,
    pub by_tenant: &'a TransactionalTree,
    pub by_item: &'a TransactionalTree,
    pub history: &'a TransactionalTree,
    pub items: &'a TransactionalTree,
}

impl TaskTx<'_> {
    /// Reads a task record.
    pub fn load(&self, id: TaskId) -> TxResult<Option<StoredTask>> {
        let key = id.to_bytes();
        match self.tasks.get(key)? {
            None => Ok(None),
            Some(bytes) => decode(self.ctx, tree::TASKS, &key, &bytes)
                .map(Some)
                .map_err(abort),
        }
    }

    /// Writes `task` (new when `old` is None) with its `entries`, keeping every index in step.
    pub fn write(
        &self,
        old: Option<&StoredTask>,
        task: &Task,
        entries: &[HistoryEntry],
    ) -> TxResult<()> {
        let id = task.id;
        let rank = task.priority.rank();
        if let Some(old) = old {
            if let (Some(seq), Some(at)) = (old.ready_seq, old.task.ready_at()) {
                self.ready.remove(keys::ready(rank, at, seq, id))?;
            }
            if let Some(lease) = old.task.lease() {
                self.leases.remove(keys::lease(lease.expires_at, id))?;
            }
        }
        let ready_seq = match task.ready_at() {
            Some(at) => {
                let seq = self
                    .tasks
                    .generate_id()
                    .map_err(ConflictableTransactionError::Storage)?;
                self.ready.insert(
                    keys::ready(rank, at, seq, id),
                    task.key.product.as_str().as_bytes(),
                )?;
                Some(seq)
            }
            None => None,
        };
        if let Some(lease) = task.lease() {
            self.leases
                .insert(keys::lease(lease.expires_at, id), &[] as &[u8])?;
        }
        let natural = keys::task_key(&task.key);
        let was_active = old.is_some_and(|o| o.task.status().is_active());
        if task.status().is_active() {
            if !was_active {
                self.active.insert(natural.as_slice(), &id.to_bytes()[..])?;
            }
        } else if was_active && self.active.get(&natural)?.as_deref() == Some(&id.to_bytes()[..]) {
            self.active.remove(natural.as_slice())?;
        }
        if old.is_none() {
            self.latest.insert(natural.as_slice(), &id.to_bytes()[..])?;
            let tenant = keys::strings(&[task.key.tenant.as_str()]);
            self.by_tenant
                .insert(keys::with_id(tenant, id), &[] as &[u8])?;
            let item = keys::strings(&[task.key.tenant.as_str(), task.key.inventory_id.as_str()]);
            self.by_item.insert(keys::with_id(item, id), &[] as &[u8])?;
        }
        let start = old.map_or(0, |o| o.history_len);
        let mut len = start;
        for entry in entries {
            self.history
                .insert(keys::history(id, len), encode(entry).map_err(abort)?)?;
            len += 1;
        }
        let record = StoredTaskRef {
            task,
            ready_seq,
            history_len: len,
        };
        self.tasks
            .insert(&id.to_bytes()[..], encode(&record).map_err(abort)?)?;
        Ok(())
    }

    /// Applies `events` to task `id` with `authority`: all of them or none.
    pub fn apply(
        &self,
        id: TaskId,
        authority: Authority,
        events: &[TaskEvent],
        now: Timestamp,
    ) -> TxResult<Task> {
        let old = self.load(id)?.ok_or_else(|| abort(task_not_found(id)))?;
        if events.is_empty() {
            return Ok(old.task);
        }
        let mut task = old.task.clone();
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            let step = transition(&task, event, authority, now)
                .map_err(|e| abort(StoreError::Transition(e)))?;
            task = step.task;
            entries.push(step.entry);
        }
        self.write(Some(&old), &task, &entries)?;
        Ok(task)
    }
}

/// Whether a transaction error is a refused transition or a vanished task (skippable in scans).
pub(crate) fn is_skippable(err: &ConflictableTransactionError<StoreError>) -> bool {
    matches!(
        err,
        ConflictableTransactionError::Abort(
            StoreError::Transition(_) | StoreError::NotFound { .. }
        )
    )
}
