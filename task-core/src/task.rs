//! The task record: its key, state, steps and checkpoints.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::ids::{
    InventoryId, Priority, ProductName, TaskId, TenantId, ValidationError, Version, WorkerId,
};
use crate::time::Timestamp;

/// The natural key of a task: at most one active task exists per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    /// The owner.
    pub tenant: TenantId,
    /// The catalog item.
    pub inventory_id: InventoryId,
    /// The analysis product.
    pub product: ProductName,
    /// The product version.
    pub version: Version,
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.tenant, self.inventory_id, self.product, self.version
        )
    }
}

/// The coarse status of a task, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Queued, waiting for a worker (or for its retry time).
    Pending,
    /// A worker holds a lease on it.
    Processing,
    /// Every step succeeded.
    Done,
    /// Ended with an error.
    Failed,
    /// Ended on request.
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Processing,
        Status::Done,
        Status::Failed,
        Status::Cancelled,
    ];

    /// Whether the task can still change (pending or processing).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Pending | Status::Processing)
    }

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    s,
                    "must be one of pending, processing, done, failed, cancelled",
                )
            })
    }
}

/// The steps every task runs, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The asset exists in object storage.
    S3Check,
    /// The asset is a readable video; its duration and streams.
    Probe,
    /// The asset is at least the product's minimum length.
    LengthGate,
    /// The product's analysis.
    Analyze,
}

impl Step {
    /// The pipeline, in order.
    pub const ALL: [Step; 4] = [Step::S3Check, Step::Probe, Step::LengthGate, Step::Analyze];

    /// The wire name (`s3_check`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::S3Check => "s3_check",
            Step::Probe => "probe",
            Step::LengthGate => "length_gate",
            Step::Analyze => "analyze",
        }
    }

    /// Position in the pipeline, from 0.
    pub fn index(self) -> usize {
        match self {
            Step::S3Check => 0,
            Step::Probe => 1,
            Step::LengthGate => 2,
            Step::Analyze => 3,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A worker's time-limited right to run a task, fenced by a per-task epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it.
    pub worker: WorkerId,
    /// The fencing token: every write by the holder presents it; a newer claim has a larger one.
    pub epoch: u64,
    /// When it lapses unless extended.
    pub expires_at: Timestamp,
    /// The ready time the task had in the queue when it was claimed. A lease that expires or
    /// is released puts the task back at this position, not behind everything queued since.
    /// (None for leases written before it was recorded: those go back at the time of requeue.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<Timestamp>,
    /// When the running step started under this lease (None before the first step starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Timestamp>,
}

/// The detailed state of a task; each variant carries the data that only exists in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TaskState {
    /// Queued; claimable once `ready_at` has passed (later than creation after a retryable
    /// failure), and once every task of `waiting_for` has ended.
    Pending {
        /// Earliest claim time.
        ready_at: Timestamp,
        /// The tasks it waits for (its step asked to wait): it is not claimable, and holds no
        /// worker, until all of them have ended. Empty for a task that waits for none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        waiting_for: Vec<TaskId>,
    },
    /// Leased to a worker.
    Processing {
        /// The lease.
        lease: Lease,
        /// The step that runs (or last ran) under this lease.
        step: Option<Step>,
        /// A cancel was asked for; the task ends `cancelled` when the step stops.
        cancel_requested: bool,
    },
    /// All steps succeeded.
    Done,
    /// Ended with `error`.
    Failed {
        /// Why.
        error: TaskError,
    },
    /// Ended on request.
    Cancelled,
}

impl TaskState {
    /// The coarse status.
    pub fn status(&self) -> Status {
        match self {
            TaskState::Pending { .. } => Status::Pending,
            TaskState::Processing { .. } => Status::Processing,
            TaskState::Done => Status::Done,
            TaskState::Failed { .. } => Status::Failed,
            TaskState::Cancelled => Status::Cancelled,
        }
    }
}

/// The saved output of a finished step; a resumed task never runs that step again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The step.
    pub step: Step,
    /// Its typed output, serialized.
    pub output: serde_json::Value,
    /// When it finished.
    pub finished_at: Timestamp,
    /// When it started (None in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// The attempt that produced it.
    pub attempt: u32,
    /// The output was reused from an earlier run over the unchanged asset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

/// The stored record of one task. Its serialized form leaves out the fields that are `None`
/// (and `reused` when false), so stored records stay small; they read back as `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique, time-ordered id.
    pub id: TaskId,
    /// The natural key.
    pub key: TaskKey,
    /// Claim priority.
    pub priority: Priority,
    /// Where it is in its life.
    pub state: TaskState,
    /// How many times it was claimed (1 during the first run); never decreases.
    pub attempt: u32,
    /// How many of those claims ended with the task waiting for other tasks
    /// ([`TaskEvent::WaitingFor`](crate::machine::TaskEvent::WaitingFor)): they do not count
    /// against the product's attempt limit (see [`Task::attempts_used`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waits: u32,
    /// The highest lease epoch ever granted; never decreases.
    pub epoch: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Time of the last transition.
    pub updated_at: Timestamp,
    /// First claim time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Time it reached a final status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The last error of any attempt (kept after a retry so users see why it was retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<TaskError>,
    /// Outputs of the finished steps, in pipeline order.
    pub checkpoints: Vec<Checkpoint>,
}

impl Task {
    /// A new pending task, ready at once.
    pub fn new(id: TaskId, key: TaskKey, priority: Priority, now: Timestamp) -> Self {
        Self {
            id,
            key,
            priority,
            state: TaskState::Pending {
                ready_at: now,
                waiting_for: Vec::new(),
            },
            attempt: 0,
            waits: 0,
            epoch: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            last_error: None,
            checkpoints: Vec::new(),
        }
    }

    /// The coarse status.
    pub fn status(&self) -> Status {
        self.state.status()
    }

    /// The step that runs now, while processing.
    pub fn current_step(&self) -> Option<Step> {
        match &self.state {
            TaskState::Processing { step, .. } => *step,
            _ => None,
        }
    }

    /// Whether a cancel was requested while processing.
    pub fn cancel_requested(&self) -> bool {
        matches!(
            self.state,
            TaskState::Processing {
                cancel_requested: true,
                ..
            }
        )
    }

    /// The lease, while processing.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            TaskState::Processing { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// The error of a failed task.
    pub fn error(&self) -> Option<&TaskError> {
        match &self.state {
            TaskState::Failed { error } => Some(error),
            _ => None,
        }
    }

    /// The checkpoint of `step`, if it finished.
    pub fn checkpoint(&self, step: Step) -> Option<&Checkpoint> {
        self.checkpoints.iter().find(|c| c.step == step)
    }

    /// The first step without a checkpoint: where a resumed task starts.
    pub fn next_step(&self) -> Option<Step> {
        Step::ALL
            .into_iter()
            .find(|step| self.checkpoint(*step).is_none())
    }

    /// When a pending task becomes claimable; None while it waits for other tasks (it is
    /// claimable only once they have ended, whatever the time) and when it is not pending.
    pub fn ready_at(&self) -> Option<Timestamp> {
        match &self.state {
            TaskState::Pending {
                ready_at,
                waiting_for,
            } if waiting_for.is_empty() => Some(*ready_at),
            _ => None,
        }
    }

    /// The tasks a pending task waits for (empty when it waits for none).
    pub fn waiting_for(&self) -> &[TaskId] {
        match &self.state {
            TaskState::Pending { waiting_for, .. } => waiting_for,
            _ => &[],
        }
    }

    /// The claims that count against the product's attempt limit: every claim but those that
    /// ended with the task waiting for other tasks.
    pub fn attempts_used(&self) -> u32 {
        self.attempt.saturating_sub(self.waits)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One entry of a task's audit trail. Its serialized form leaves out the fields that are
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it happened.
    pub at: Timestamp,
    /// What happened (`created`, `claimed`, `step_succeeded`...).
    pub event: String,
    /// Status before (None for creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Status>,
    /// Status after.
    pub to: Status,
    /// The step concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// The attempt after the transition.
    pub attempt: u32,
    /// The error, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// Extra detail (the worker, a reused checkpoint, a retry time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::created;

    #[test]
    fn empty_fields_are_left_out_and_read_back_either_way() {
        let key = TaskKey {
            tenant: TenantId::new("acme").unwrap(),
            inventory_id: InventoryId::new("item-1").unwrap(),
            product: ProductName::new("adbreaks").unwrap(),
            version: Version::new("1").unwrap(),
        };
        let fresh = created(
            TaskId::generate(),
            key,
            Priority::High,
            Timestamp::from_millis(1_000),
        );
        let (task, entry) = (fresh.task, fresh.entry);

        let compact = serde_json::to_value(&task).unwrap();
        let empty = ["started_at", "finished_at", "last_error"];
        for field in empty {
            assert!(
                compact.get(field).is_none(),
                "{field} is written: {compact}"
            );
        }
        // Records written before the fields were left out hold explicit nulls.
        let mut explicit = compact.clone();
        for field in empty {
            explicit[field] = serde_json::Value::Null;
        }
        assert_eq!(serde_json::from_value::<Task>(compact).unwrap(), task);
        assert_eq!(serde_json::from_value::<Task>(explicit).unwrap(), task);

        let written = serde_json::to_value(&entry).unwrap();
        for field in ["from", "step", "error"] {
            assert!(
                written.get(field).is_none(),
                "{field} is written: {written}"
            );
        }
        let mut old = written.clone();
        for field in ["from", "step", "error"] {
            old[field] = serde_json::Value::Null;
        }
        assert_eq!(serde_json::from_value::<HistoryEntry>(old).unwrap(), entry);
        assert_eq!(
            serde_json::from_value::<HistoryEntry>(written).unwrap(),
            entry
        );
    }
}
