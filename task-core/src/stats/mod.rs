//! Statistics every store keeps with its writes, so that an operator's view never scans the
//! tasks: how many tasks of each product are in each status, and what happened in each minute.
//!
//! The rules are pure: [`StatsDelta::of_write`] says what one stored change of a task adds or
//! removes, [`StatsDelta::of_removal`] what deleting a finished task does. A store applies the
//! delta in the same atomic write as the task, so the figures never drift from the tasks,
//! whatever crashes in between.

use serde::{Deserialize, Serialize};

use crate::ids::{ProductName, TenantId};
use crate::task::{Status, Step, Task};
use crate::time::Timestamp;

/// How long stores keep [`ActivityBucket`]s: at least this many milliseconds (24 hours).
pub const ACTIVITY_KEPT_MS: u64 = 24 * 3_600_000;

/// How many tasks of one tenant's product are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCount {
    /// The tenant.
    pub tenant: TenantId,
    /// The product.
    pub product: ProductName,
    /// The status.
    pub status: Status,
    /// How many tasks are in it.
    pub count: u64,
}

/// Count, total and maximum of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// How many.
    pub count: u64,
    /// Their sum.
    pub total_ms: u64,
    /// The longest.
    pub max_ms: u64,
}

impl Durations {
    /// Adds one duration.
    pub fn add(&mut self, ms: u64) {
        self.count += 1;
        self.total_ms = self.total_ms.saturating_add(ms);
        self.max_ms = self.max_ms.max(ms);
    }

    /// Adds every duration of `other`.
    pub fn merge(&mut self, other: &Durations) {
        self.count += other.count;
        self.total_ms = self.total_ms.saturating_add(other.total_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// The mean, if there is any duration.
    pub fn mean_ms(&self) -> Option<u64> {
        (self.count > 0).then(|| self.total_ms / self.count)
    }
}

/// What happened to one tenant's tasks of one product within one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Tasks created.
    #[serde(default)]
    pub created: u64,
    /// Tasks that ended `done`.
    #[serde(default)]
    pub done: u64,
    /// Tasks that ended `failed`.
    #[serde(default)]
    pub failed: u64,
    /// Tasks that ended `cancelled`.
    #[serde(default)]
    pub cancelled: u64,
    /// From creation to first claim, for the tasks first claimed in the minute.
    #[serde(default)]
    pub queue_wait: Durations,
    /// Each step's run time, by [`Step::index`], for the steps that succeeded in the minute
    /// (outputs reused from an earlier run are left out: they took no time).
    #[serde(default)]
    pub steps: [Durations; 4],
}

impl Activity {
    /// Adds everything in `other`.
    pub fn merge(&mut self, other: &Activity) {
        self.created += other.created;
        self.done += other.done;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.queue_wait.merge(&other.queue_wait);
        for (mine, theirs) in self.steps.iter_mut().zip(&other.steps) {
            mine.merge(theirs);
        }
    }

    /// The run times of `step`.
    pub fn step(&self, step: Step) -> &Durations {
        &self.steps[step.index()]
    }

    /// Tasks that ended in the minute, whatever their status.
    pub fn finished(&self) -> u64 {
        self.done + self.failed + self.cancelled
    }

    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        *self == Activity::default()
    }
}

/// One minute of one tenant's product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityBucket {
    /// The tenant.
    pub tenant: TenantId,
    /// The product.
    pub product: ProductName,
    /// The start of the minute.
    pub minute: Timestamp,
    /// What happened in it.
    pub activity: Activity,
}

/// The start of the minute holding `at`.
pub fn minute_of(at: Timestamp) -> Timestamp {
    Timestamp::from_millis(at.as_millis() - at.as_millis() % 60_000)
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What one write does to the statistics of its task's tenant and product.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsDelta {
    /// Status counts to add to (+1) or take from (-1); at most two entries.
    pub counts: Vec<(Status, i64)>,
    /// Activity to add to the bucket of `minute`, if anything happened.
    pub activity: Option<(Timestamp, Activity)>,
}

impl StatsDelta {
    /// The delta of storing `after` over `before` (None for a new task). Every figure comes
    /// from the two records, so stores that see the same writes keep the same statistics.
    pub fn of_write(before: Option<&Task>, after: &Task) -> StatsDelta {
        let mut delta = StatsDelta::default();
        let old_status = before.map(Task::status);
        let new_status = after.status();
        if old_status != Some(new_status) {
            if let Some(old) = old_status {
                delta.counts.push((old, -1));
            }
            delta.counts.push((new_status, 1));
        }
        let mut activity = Activity::default();
        if before.is_none() {
            activity.created = 1;
        }
        if let (Some(started), None) = (after.started_at, before.and_then(|b| b.started_at)) {
            activity
                .queue_wait
                .add(millis(started.since(after.created_at)));
        }
        let known = before.map_or(0, |b| b.checkpoints.len());
        for checkpoint in after.checkpoints.iter().skip(known) {
            if let (Some(started), false) = (checkpoint.started_at, checkpoint.reused) {
                activity.steps[checkpoint.step.index()]
                    .add(millis(checkpoint.finished_at.since(started)));
            }
        }
        if old_status.is_none_or(Status::is_active) {
            match new_status {
                Status::Done => activity.done = 1,
                Status::Failed => activity.failed = 1,
                Status::Cancelled => activity.cancelled = 1,
                Status::Pending | Status::Processing => {}
            }
        }
        if !activity.is_empty() {
            delta.activity = Some((minute_of(after.updated_at), activity));
        }
        delta
    }

    /// The delta of deleting `task` (retention): its status count goes down; activity stays.
    pub fn of_removal(task: &Task) -> StatsDelta {
        StatsDelta {
            counts: vec![(task.status(), -1)],
            activity: None,
        }
    }
}

#[cfg(test)]
mod tests;
