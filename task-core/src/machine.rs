//! The task state machine: one pure function from (task, event, time) to the next task.
//!
//! Stores persist what [`transition`] returns and nothing else, so every backend applies the same
//! rules. Events sent by a worker must present the epoch of the lease they hold ([`Authority::Lease`]);
//! a worker whose lease was taken over, finished or expired is refused ([`TransitionError::LeaseLost`],
//! [`TransitionError::LeaseExpired`]) and can write nothing more for that task.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::ids::{Priority, TaskId, WorkerId};
use crate::task::{Checkpoint, HistoryEntry, Lease, Status, Step, Task, TaskKey, TaskState};
use crate::time::Timestamp;

/// Something that happens to an existing task. (Creation is [`created`], not an event: a task
/// cannot be created twice.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TaskEvent {
    /// A worker takes a ready pending task with a lease of `lease_ms`.
    Claimed {
        /// The claiming worker.
        worker: WorkerId,
        /// Lease length in milliseconds.
        lease_ms: u64,
    },
    /// The holder extends its lease to `now + lease_ms` (a heartbeat).
    LeaseExtended {
        /// New lease length from now, in milliseconds.
        lease_ms: u64,
    },
    /// The holder starts `step`, which must be the first step without a checkpoint.
    StepStarted {
        /// The step.
        step: Step,
    },
    /// The running step succeeded; its output becomes a checkpoint.
    StepSucceeded {
        /// The step's serialized output.
        output: serde_json::Value,
        /// The output was reused from an earlier run rather than computed.
        reused: bool,
    },
    /// The running step failed: retried after `retry_after_ms` if given (retryable errors only),
    /// otherwise the task fails with `error`.
    StepFailed {
        /// What failed.
        error: TaskError,
        /// Back-off before the retry, for a retryable error that has attempts left.
        retry_after_ms: Option<u64>,
    },
    /// A user asks to cancel.
    CancelRequested,
    /// The holder stopped the running step after a cancel request.
    Cancelled,
    /// The lease ran out without a heartbeat: the task goes back to the queue.
    LeaseExpired,
    /// The holder gives the task back unfinished (graceful shutdown).
    LeaseReleased,
    /// The running step cannot go on before `tasks` have ended (it started them, or found
    /// them running): the task goes back to pending without a checkpoint for the step and
    /// holds no worker; it becomes claimable once every one of them has ended
    /// ([`TaskEvent::WaitEnded`]) and its step then runs again. The claim that ended this way
    /// does not count against the attempt limit. A task with a cancel request ends
    /// `cancelled` instead.
    WaitingFor {
        /// The awaited tasks: 1 to [`MAX_AWAITED`], distinct, not the task itself.
        tasks: Vec<TaskId>,
    },
    /// The store saw every task a pending task waits for ended (`ended` must list exactly
    /// those): it becomes claimable at once.
    WaitEnded {
        /// The awaited tasks, all ended.
        ended: Vec<TaskId>,
    },
    /// The holder finished every step.
    Done,
    /// The holder ends the task with `error` (attempts exhausted, internal errors).
    Failed {
        /// Why.
        error: TaskError,
    },
    /// The engine ends a pending task that has no attempt left (its last attempt ended by a
    /// lease expiry, so no worker could record the failure): it fails with `error` without
    /// being claimed again, so `attempt` never exceeds the product's limit.
    GaveUp {
        /// Why (attempts exhausted, with the last attempt's error).
        error: TaskError,
    },
}

/// The name of an event, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// [`TaskEvent::Claimed`]
    Claimed,
    /// [`TaskEvent::LeaseExtended`]
    LeaseExtended,
    /// [`TaskEvent::StepStarted`]
    StepStarted,
    /// [`TaskEvent::StepSucceeded`]
    StepSucceeded,
    /// [`TaskEvent::StepFailed`]
    StepFailed,
    /// [`TaskEvent::CancelRequested`]
    CancelRequested,
    /// [`TaskEvent::Cancelled`]
    Cancelled,
    /// [`TaskEvent::LeaseExpired`]
    LeaseExpired,
    /// [`TaskEvent::LeaseReleased`]
    LeaseReleased,
    /// [`TaskEvent::WaitingFor`]
    WaitingFor,
    /// [`TaskEvent::WaitEnded`]
    WaitEnded,
    /// [`TaskEvent::Done`]
    Done,
    /// [`TaskEvent::Failed`]
    Failed,
    /// [`TaskEvent::GaveUp`]
    GaveUp,
}

impl EventKind {
    /// The snake_case name used in history.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Claimed => "claimed",
            EventKind::LeaseExtended => "lease_extended",
            EventKind::StepStarted => "step_started",
            EventKind::StepSucceeded => "step_succeeded",
            EventKind::StepFailed => "step_failed",
            EventKind::CancelRequested => "cancel_requested",
            EventKind::Cancelled => "cancelled",
            EventKind::LeaseExpired => "lease_expired",
            EventKind::LeaseReleased => "lease_released",
            EventKind::WaitingFor => "waiting",
            EventKind::WaitEnded => "wait_ended",
            EventKind::Done => "done",
            EventKind::Failed => "failed",
            EventKind::GaveUp => "gave_up",
        }
    }

    /// Whether only the lease holder may send it.
    pub fn needs_lease(self) -> bool {
        !matches!(
            self,
            EventKind::Claimed
                | EventKind::CancelRequested
                | EventKind::LeaseExpired
                | EventKind::GaveUp
                | EventKind::WaitEnded
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl TaskEvent {
    /// The event's name.
    pub fn kind(&self) -> EventKind {
        match self {
            TaskEvent::Claimed { .. } => EventKind::Claimed,
            TaskEvent::LeaseExtended { .. } => EventKind::LeaseExtended,
            TaskEvent::StepStarted { .. } => EventKind::StepStarted,
            TaskEvent::StepSucceeded { .. } => EventKind::StepSucceeded,
            TaskEvent::StepFailed { .. } => EventKind::StepFailed,
            TaskEvent::CancelRequested => EventKind::CancelRequested,
            TaskEvent::Cancelled => EventKind::Cancelled,
            TaskEvent::LeaseExpired => EventKind::LeaseExpired,
            TaskEvent::LeaseReleased => EventKind::LeaseReleased,
            TaskEvent::WaitingFor { .. } => EventKind::WaitingFor,
            TaskEvent::WaitEnded { .. } => EventKind::WaitEnded,
            TaskEvent::Done => EventKind::Done,
            TaskEvent::Failed { .. } => EventKind::Failed,
            TaskEvent::GaveUp { .. } => EventKind::GaveUp,
        }
    }
}

/// Who sends an event: the engine itself, or a worker presenting its lease epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The store or a user (claims, cancel requests, lease expiry).
    System,
    /// A worker holding the lease with this epoch.
    Lease(u64),
}

/// Why an event was refused. Nothing is written when a transition is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransitionError {
    /// The event makes no sense in the task's current state.
    #[error("task {task}: cannot apply {event} to a {from} task: {reason}")]
    Invalid {
        /// The task.
        task: TaskId,
        /// Its status.
        from: Status,
        /// The refused event.
        event: EventKind,
        /// Why.
        reason: &'static str,
    },
    /// The sender does not hold the current lease (it was claimed again, released or finished).
    #[error(
        "task {task}: {event} refused, lease epoch {presented:?} is not the current lease (task is {status}, epoch {current})"
    )]
    LeaseLost {
        /// The task.
        task: TaskId,
        /// The refused event.
        event: EventKind,
        /// The epoch the sender presented (None: it presented none).
        presented: Option<u64>,
        /// The task's current epoch.
        current: u64,
        /// The task's status.
        status: Status,
    },
    /// The sender's lease ran out before this write.
    #[error("task {task}: {event} refused, lease epoch {epoch} expired at {expired_at}")]
    LeaseExpired {
        /// The task.
        task: TaskId,
        /// The refused event.
        event: EventKind,
        /// The expired lease's epoch.
        epoch: u64,
        /// When it expired.
        expired_at: Timestamp,
    },
}

/// The result of an accepted transition: the new task and the history entry that records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The task after the event.
    pub task: Task,
    /// The audit-trail entry.
    pub entry: HistoryEntry,
}

/// A new pending task and its `created` history entry.
pub fn created(id: TaskId, key: TaskKey, priority: Priority, now: Timestamp) -> Transition {
    let task = Task::new(id, key, priority, now);
    let entry = HistoryEntry {
        at: now,
        event: "created".into(),
        from: None,
        to: Status::Pending,
        step: None,
        attempt: 0,
        error: None,
        detail: Some(format!("priority {priority}")),
    };
    Transition { task, entry }
}

/// Applies `events` in order, all or none: the final task and one history entry per event
/// except heartbeats ([`TaskEvent::LeaseExtended`]: they only move the lease's expiry, and a
/// long step would otherwise add an entry every few seconds), or the first refusal.
pub fn transition_all(
    task: &Task,
    events: &[TaskEvent],
    authority: Authority,
    now: Timestamp,
) -> Result<(Task, Vec<HistoryEntry>), TransitionError> {
    let mut current = task.clone();
    let mut entries = Vec::with_capacity(events.len());
    for event in events {
        let step = transition(&current, event, authority, now)?;
        current = step.task;
        if !matches!(event, TaskEvent::LeaseExtended { .. }) {
            entries.push(step.entry);
        }
    }
    Ok((current, entries))
}

/// Applies `event`, sent with `authority`, to `task` at time `now`.
///
/// Returns the next task and its history entry, or why the event is refused. Terminal tasks
/// (`done`, `failed`, `cancelled`) refuse every event.
pub fn transition(
    task: &Task,
    event: &TaskEvent,
    authority: Authority,
    now: Timestamp,
) -> Result<Transition, TransitionError> {
    let kind = event.kind();
    let invalid = |reason: &'static str| TransitionError::Invalid {
        task: task.id,
        from: task.status(),
        event: kind,
        reason,
    };
    if !task.status().is_active() {
        return Err(invalid("the task has already ended"));
    }
    if kind.needs_lease() {
        check_lease(task, kind, authority, now)?;
    }

    let mut next = task.clone();
    next.updated_at = now;
    let mut step = task.current_step();
    let mut error = None;
    let mut detail = None;

    match (&task.state, event) {
        (
            TaskState::Pending {
                ready_at,
                waiting_for,
            },
            TaskEvent::Claimed { worker, lease_ms },
        ) => {
            if !waiting_for.is_empty() {
                return Err(invalid("the task waits for other tasks to end"));
            }
            if *ready_at > now {
                return Err(invalid("the task is waiting for its retry time"));
            }
            next.epoch = task.epoch + 1;
            next.attempt = task.attempt + 1;
            next.started_at = task.started_at.or(Some(now));
            next.state = TaskState::Processing {
                lease: Lease {
                    worker: worker.clone(),
                    epoch: next.epoch,
                    expires_at: now.plus(Duration::from_millis(*lease_ms)),
                    queued_at: Some(*ready_at),
                    step_started_at: None,
                },
                step: None,
                cancel_requested: false,
            };
            detail = Some(format!("worker {worker}, epoch {}", next.epoch));
        }
        (TaskState::Pending { .. }, TaskEvent::CancelRequested) => {
            finish(&mut next, TaskState::Cancelled, now);
        }
        (TaskState::Pending { .. }, TaskEvent::GaveUp { error: failure }) => {
            error = Some(fail(&mut next, failure, now));
        }
        (TaskState::Pending { waiting_for, .. }, TaskEvent::WaitEnded { ended }) => {
            if waiting_for.is_empty() {
                return Err(invalid("the task waits for no task"));
            }
            if waiting_for.iter().any(|id| !ended.contains(id)) {
                return Err(invalid("not every awaited task has ended"));
            }
            next.state = TaskState::Pending {
                ready_at: now,
                waiting_for: Vec::new(),
            };
            detail = Some(format!("ended: {}", id_list(waiting_for)));
        }
        (TaskState::Pending { .. }, _) => {
            return Err(invalid("the task is not leased to a worker"));
        }
        (
            TaskState::Processing {
                lease,
                step: running,
                cancel_requested,
            },
            event,
        ) => {
            let cancel_requested = *cancel_requested;
            match event {
                TaskEvent::Claimed { .. } => return Err(invalid("the task is already leased")),
                TaskEvent::GaveUp { .. } => {
                    return Err(invalid("only a pending task can be given up"));
                }
                TaskEvent::WaitEnded { .. } => {
                    return Err(invalid("only a pending task waits for tasks"));
                }
                TaskEvent::WaitingFor { tasks } => {
                    if running.is_none_or(|s| task.checkpoint(s).is_some()) {
                        return Err(invalid("no step is running"));
                    }
                    check_awaited(task.id, tasks).map_err(invalid)?;
                    if cancel_requested {
                        finish(&mut next, TaskState::Cancelled, now);
                    } else {
                        next.waits = task.waits + 1;
                        next.state = TaskState::Pending {
                            ready_at: now,
                            waiting_for: tasks.clone(),
                        };
                        detail = Some(format!("waiting for {}", id_list(tasks)));
                    }
                }
                TaskEvent::LeaseExtended { lease_ms } => {
                    next.state = TaskState::Processing {
                        lease: Lease {
                            expires_at: now.plus(Duration::from_millis(*lease_ms)),
                            ..lease.clone()
                        },
                        step: *running,
                        cancel_requested,
                    };
                }
                TaskEvent::StepStarted { step: wanted } => {
                    if running.is_some_and(|s| task.checkpoint(s).is_none()) {
                        return Err(invalid("another step is still running"));
                    }
                    if task.next_step() != Some(*wanted) {
                        return Err(invalid(
                            "only the first step without a checkpoint may start",
                        ));
                    }
                    step = Some(*wanted);
                    next.state = TaskState::Processing {
                        lease: Lease {
                            step_started_at: Some(now),
                            ..lease.clone()
                        },
                        step,
                        cancel_requested,
                    };
                }
                TaskEvent::StepSucceeded { output, reused } => {
                    let Some(current) = running.filter(|s| task.checkpoint(*s).is_none()) else {
                        return Err(invalid("no step is running"));
                    };
                    next.checkpoints.push(Checkpoint {
                        step: current,
                        output: output.clone(),
                        finished_at: now,
                        started_at: lease.step_started_at,
                        attempt: task.attempt,
                        reused: *reused,
                    });
                    if *reused {
                        detail =
                            Some("output reused from an earlier run on the unchanged asset".into());
                    }
                }
                TaskEvent::StepFailed {
                    error: failure,
                    retry_after_ms,
                } => {
                    if running.is_none_or(|s| task.checkpoint(s).is_some()) {
                        return Err(invalid("no step is running"));
                    }
                    next.last_error = Some(failure.clone());
                    error = Some(failure.clone());
                    match retry_after_ms {
                        Some(_) if !failure.is_retryable() => {
                            return Err(invalid("a permanent error cannot be retried"));
                        }
                        Some(_) if cancel_requested => finish(&mut next, TaskState::Cancelled, now),
                        Some(after) => {
                            let ready_at = now.plus(Duration::from_millis(*after));
                            next.state = TaskState::Pending {
                                ready_at,
                                waiting_for: Vec::new(),
                            };
                            detail = Some(format!("retry at {ready_at}"));
                        }
                        None => finish(
                            &mut next,
                            TaskState::Failed {
                                error: failure.clone(),
                            },
                            now,
                        ),
                    }
                }
                TaskEvent::CancelRequested => {
                    next.state = TaskState::Processing {
                        lease: lease.clone(),
                        step: *running,
                        cancel_requested: true,
                    };
                }
                TaskEvent::Cancelled => {
                    if !cancel_requested {
                        return Err(invalid("no cancel was requested"));
                    }
                    finish(&mut next, TaskState::Cancelled, now);
                }
                TaskEvent::LeaseExpired | TaskEvent::LeaseReleased => {
                    if kind == EventKind::LeaseExpired && lease.expires_at > now {
                        return Err(invalid("the lease has not expired"));
                    }
                    if kind == EventKind::LeaseExpired {
                        // Recorded so that a task given up after its last lease expired says why.
                        next.last_error = Some(TaskError::WorkerLost {
                            detail: format!(
                                "the lease of worker {} (epoch {}) expired during attempt {} at step {}",
                                lease.worker,
                                lease.epoch,
                                task.attempt,
                                running.map_or_else(|| "none".to_owned(), |s| s.to_string())
                            ),
                        });
                    }
                    if cancel_requested {
                        finish(&mut next, TaskState::Cancelled, now);
                    } else {
                        // Back at its old place in the queue (never later than now), so a
                        // task of a lost worker does not wait behind the backlog queued since.
                        let ready_at = lease.queued_at.map_or(now, |at| at.min(now));
                        next.state = TaskState::Pending {
                            ready_at,
                            waiting_for: Vec::new(),
                        };
                        detail = Some(format!(
                            "lease of {} (epoch {}) ended",
                            lease.worker, lease.epoch
                        ));
                    }
                }
                TaskEvent::Done => {
                    if task.next_step().is_some() {
                        return Err(invalid("not every step has a checkpoint"));
                    }
                    finish(&mut next, TaskState::Done, now);
                }
                TaskEvent::Failed { error: failure } => {
                    error = Some(fail(&mut next, failure, now));
                }
            }
        }
        (TaskState::Done | TaskState::Failed { .. } | TaskState::Cancelled, _) => {
            return Err(invalid("the task has already ended"));
        }
    }

    let entry = HistoryEntry {
        at: now,
        event: kind.as_str().into(),
        from: Some(task.status()),
        to: next.status(),
        step,
        attempt: next.attempt,
        error,
        detail,
    };
    Ok(Transition { task: next, entry })
}

/// The most tasks one task may wait for at once.
pub const MAX_AWAITED: usize = 1_000;

/// Why a list of awaited tasks is refused, if it is.
fn check_awaited(waiter: TaskId, tasks: &[TaskId]) -> Result<(), &'static str> {
    if tasks.is_empty() {
        return Err("a task cannot wait for no task");
    }
    if tasks.len() > MAX_AWAITED {
        return Err("a task waits for at most 1,000 tasks");
    }
    if tasks.contains(&waiter) {
        return Err("a task cannot wait for itself");
    }
    let distinct: std::collections::BTreeSet<&TaskId> = tasks.iter().collect();
    if distinct.len() != tasks.len() {
        return Err("the awaited tasks must be distinct");
    }
    Ok(())
}

/// Task ids for history details: the first five, then how many more.
fn id_list(ids: &[TaskId]) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(ToString::to_string).collect();
    match ids.len().saturating_sub(5) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Ends `task` failed with `failure`, which becomes its last error; returns it for history.
fn fail(task: &mut Task, failure: &TaskError, now: Timestamp) -> TaskError {
    task.last_error = Some(failure.clone());
    finish(
        task,
        TaskState::Failed {
            error: failure.clone(),
        },
        now,
    );
    failure.clone()
}

fn finish(task: &mut Task, state: TaskState, now: Timestamp) {
    task.state = state;
    task.finished_at = Some(now);
}

fn check_lease(
    task: &Task,
    kind: EventKind,
    authority: Authority,
    now: Timestamp,
) -> Result<(), TransitionError> {
    let presented = match authority {
        Authority::Lease(epoch) => Some(epoch),
        Authority::System => None,
    };
    let lost = || TransitionError::LeaseLost {
        task: task.id,
        event: kind,
        presented,
        current: task.epoch,
        status: task.status(),
    };
    let lease = task.lease().ok_or_else(lost)?;
    if presented != Some(lease.epoch) {
        return Err(lost());
    }
    if lease.expires_at <= now {
        return Err(TransitionError::LeaseExpired {
            task: task.id,
            event: kind,
            epoch: lease.epoch,
            expired_at: lease.expires_at,
        });
    }
    Ok(())
}
