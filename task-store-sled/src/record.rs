//! Task records as stored (format 3): the task, its ready-queue sequence number and its whole
//! history in one value, so that a transition writes one key for the task.

use serde::{Deserialize, Serialize};
use task_core::ids::TaskId;
use task_core::store::StoreError;
use task_core::task::{HistoryEntry, Task};

use crate::codec::{decode, encode};
use crate::error::Ctx;
use crate::layout::tree;

/// A task as the committer and readers handle it: the record without its history.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StoredTask {
    /// The task as the state machine returned it.
    pub task: Task,
    /// The sequence number of its ready-queue entry, while pending.
    pub ready_seq: Option<u64>,
}

/// A whole record.
#[derive(Debug, Deserialize)]
struct Record {
    task: Task,
    ready_seq: Option<u64>,
    history: Vec<HistoryEntry>,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    task: &'a Task,
    #[serde(skip_serializing_if = "Option::is_none")]
    ready_seq: Option<u64>,
    history: &'a [HistoryEntry],
}

/// Encodes the record of `stored` with its `history`.
pub(crate) fn encode_record(
    stored: &StoredTask,
    history: &[HistoryEntry],
) -> Result<Vec<u8>, StoreError> {
    encode(&RecordRef {
        task: &stored.task,
        ready_seq: stored.ready_seq,
        history,
    })
}

/// Decodes a record without its history (the history is parsed but not kept).
pub(crate) fn decode_head(ctx: &Ctx, key: &[u8], bytes: &[u8]) -> Result<StoredTask, StoreError> {
    decode(ctx, tree::TASKS, key, bytes)
}

/// Decodes a whole record.
pub(crate) fn decode_record(
    ctx: &Ctx,
    key: &[u8],
    bytes: &[u8],
) -> Result<(StoredTask, Vec<HistoryEntry>), StoreError> {
    let record: Record = decode(ctx, tree::TASKS, key, bytes)?;
    Ok((
        StoredTask {
            task: record.task,
            ready_seq: record.ready_seq,
        },
        record.history,
    ))
}

/// The NotFound error of a task.
pub(crate) fn task_not_found(id: TaskId) -> StoreError {
    StoreError::NotFound {
        what: "task",
        id: id.to_string(),
    }
}
