//! Tasks as rows: the indexed columns derived from a [`Task`], its JSONB document, and the
//! column arrays bound to the `unnest` writes.

use task_core::ids::TaskId;
use task_core::store::StoreError;
use task_core::task::{HistoryEntry, Task};
use task_core::time::Timestamp;
use uuid::Uuid;

use crate::error::{Ctx, encode_error};
use crate::stats::StatsRows;

/// A timestamp as a bigint column; the far future (past `i64::MAX` ms) is clamped, which
/// keeps the order. The JSONB document keeps the exact value.
pub(crate) fn millis(at: Timestamp) -> i64 {
    i64::try_from(at.as_millis()).unwrap_or(i64::MAX)
}

/// A bigint column back as a timestamp.
pub(crate) fn timestamp(millis: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// A task id as a `uuid` column.
pub(crate) fn uuid(id: TaskId) -> Uuid {
    Uuid::from_bytes(id.to_bytes())
}

/// A `uuid` column as a task id.
pub(crate) fn task_id(id: Uuid) -> TaskId {
    TaskId::from_bytes(id.into_bytes())
}

/// Reads a task document.
pub(crate) fn decode_task(ctx: &Ctx, id: Uuid, doc: &str) -> Result<Task, StoreError> {
    let task: Task =
        serde_json::from_str(doc).map_err(|e| ctx.corrupt("tasks", id, format!("doc: {e}")))?;
    if uuid(task.id) != id {
        return Err(ctx.corrupt("tasks", id, format!("doc holds task {}", task.id)));
    }
    Ok(task)
}

/// Reads a history entry.
pub(crate) fn decode_entry(ctx: &Ctx, id: Uuid, entry: &str) -> Result<HistoryEntry, StoreError> {
    serde_json::from_str(entry).map_err(|e| ctx.corrupt("task_history", id, e))
}

/// Column arrays of tasks, in the order they are written.
#[derive(Debug, Default)]
pub(crate) struct TaskRows {
    pub id: Vec<Uuid>,
    /// The change position each row was read at (the compare-and-swap of an update).
    pub prev_seq: Vec<i64>,
    pub tenant: Vec<String>,
    pub inventory_id: Vec<String>,
    pub product: Vec<String>,
    pub version: Vec<String>,
    pub status: Vec<String>,
    pub priority_rank: Vec<i16>,
    pub ready_at: Vec<Option<i64>>,
    pub lease_epoch: Vec<i64>,
    pub lease_expires_at: Vec<Option<i64>>,
    pub cancel_requested: Vec<bool>,
    pub created_at: Vec<i64>,
    pub updated_at: Vec<i64>,
    pub finished_at: Vec<Option<i64>>,
    pub doc: Vec<String>,
    /// What the writes change in the status counts and activity.
    pub stats: StatsRows,
}

impl TaskRows {
    /// Adds `task`, written over `before` (None for a new task) read at change position
    /// `prev_seq` (0 for a new task).
    pub fn push(
        &mut self,
        before: Option<&Task>,
        task: &Task,
        prev_seq: i64,
    ) -> Result<(), StoreError> {
        self.stats.push(before, task)?;
        let doc = serde_json::to_string(task).map_err(|e| encode_error("a task", e))?;
        self.id.push(uuid(task.id));
        self.prev_seq.push(prev_seq);
        self.tenant.push(task.key.tenant.to_string());
        self.inventory_id.push(task.key.inventory_id.to_string());
        self.product.push(task.key.product.to_string());
        self.version.push(task.key.version.to_string());
        self.status.push(task.status().as_str().to_owned());
        self.priority_rank.push(i16::from(task.priority.rank()));
        self.ready_at.push(task.ready_at().map(millis));
        self.lease_epoch
            .push(i64::try_from(task.epoch).unwrap_or(i64::MAX));
        self.lease_expires_at
            .push(task.lease().map(|lease| millis(lease.expires_at)));
        self.cancel_requested.push(task.cancel_requested());
        self.created_at.push(millis(task.created_at));
        self.updated_at.push(millis(task.updated_at));
        self.finished_at.push(task.finished_at.map(millis));
        self.doc.push(doc);
        Ok(())
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }
}

/// History entries to insert, in order, and the status changes among them (each makes the
/// deliveries its tenant's webhooks want, in the same statement).
#[derive(Debug, Default)]
pub(crate) struct HistoryRows {
    pub task: Vec<Uuid>,
    pub entry: Vec<String>,
    /// Per status change: a fresh UUIDv7, the first 12 bytes of each delivery's id (so ids
    /// keep the order of the changes; the last 4 come from the webhook's id).
    pub change_id: Vec<Uuid>,
    pub change_tenant: Vec<String>,
    pub change_task: Vec<Uuid>,
    pub change_status: Vec<String>,
    pub change_at: Vec<i64>,
}

impl HistoryRows {
    /// Adds the entries of `task`, in order.
    pub fn push<'a>(
        &mut self,
        task: &Task,
        entries: impl IntoIterator<Item = &'a HistoryEntry>,
    ) -> Result<(), StoreError> {
        for entry in entries {
            let text =
                serde_json::to_string(entry).map_err(|e| encode_error("a history entry", e))?;
            self.task.push(uuid(task.id));
            self.entry.push(text);
            if entry.from != Some(entry.to) {
                self.change_id.push(Uuid::now_v7());
                self.change_tenant.push(task.key.tenant.to_string());
                self.change_task.push(uuid(task.id));
                self.change_status.push(entry.to.as_str().to_owned());
                self.change_at.push(millis(entry.at));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_clamp_in_order() {
        assert_eq!(millis(Timestamp::from_millis(5)), 5);
        assert_eq!(millis(Timestamp::from_millis(u64::MAX)), i64::MAX);
        assert_eq!(timestamp(7), Timestamp::from_millis(7));
        let id = TaskId::generate();
        assert_eq!(task_id(uuid(id)), id);
    }
}
