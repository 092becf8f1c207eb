//! The state machine: every (state, event) pair against the table, and random event sequences
//! against the invariants.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use task_core::prelude::*;
use task_core::testing::key;

const T0: Timestamp = Timestamp::from_millis(1_000_000);
const LEASE_MS: u64 = 30_000;

fn pending() -> Task {
    Task::new(
        TaskId::generate(),
        key("t", "i", "adbreaks", "1"),
        Priority::Low,
        T0,
    )
}

fn worker() -> WorkerId {
    WorkerId::new("w").unwrap()
}

fn claimed() -> Task {
    let claim = TaskEvent::Claimed {
        worker: worker(),
        lease_ms: LEASE_MS,
    };
    transition(&pending(), &claim, Authority::System, T0)
        .unwrap()
        .task
}

fn with_lease(task: &Task, events: &[TaskEvent]) -> Task {
    events.iter().fold(task.clone(), |t, e| {
        transition(&t, e, Authority::Lease(t.epoch), T0)
            .unwrap()
            .task
    })
}

fn succeed() -> TaskEvent {
    TaskEvent::StepSucceeded {
        output: serde_json::json!({}),
        reused: false,
    }
}

fn transient() -> TaskError {
    TaskError::Transient {
        step: Step::Probe,
        message: "reset".into(),
    }
}

use task_core::machine::transition;

/// The states of the table, named as in its rows.
fn states() -> Vec<(&'static str, Task, Timestamp)> {
    let mut waiting = pending();
    waiting.state = TaskState::Pending {
        ready_at: T0.plus(Duration::from_secs(5)),
        waiting_for: Vec::new(),
    };
    let mut awaiting = pending();
    awaiting.state = TaskState::Pending {
        ready_at: T0,
        waiting_for: vec![other_task()],
    };
    let running = with_lease(
        &claimed(),
        &[TaskEvent::StepStarted {
            step: Step::S3Check,
        }],
    );
    let between = with_lease(&running, &[succeed()]);
    let cancelling = transition(&running, &TaskEvent::CancelRequested, Authority::System, T0)
        .unwrap()
        .task;
    let mut all_steps = Vec::new();
    for step in Step::ALL {
        all_steps.push(TaskEvent::StepStarted { step });
        all_steps.push(succeed());
    }
    let complete = with_lease(&claimed(), &all_steps);
    let done = with_lease(&complete, &[TaskEvent::Done]);
    let failed = with_lease(
        &running,
        &[TaskEvent::StepFailed {
            error: TaskError::ProbeFailed {
                message: "x".into(),
            },
            retry_after_ms: None,
        }],
    );
    let cancelled = transition(
        &pending(),
        &TaskEvent::CancelRequested,
        Authority::System,
        T0,
    )
    .unwrap()
    .task;
    let expired_at = T0.plus(Duration::from_millis(LEASE_MS));
    vec![
        ("pending/ready", pending(), T0),
        ("pending/backing-off", waiting, T0),
        ("pending/awaiting-tasks", awaiting, T0),
        ("processing/idle", claimed(), T0),
        ("processing/running", running.clone(), T0),
        ("processing/between-steps", between, T0),
        ("processing/cancel-requested", cancelling, T0),
        ("processing/all-checkpoints", complete, T0),
        ("processing/lease-expired", running, expired_at),
        ("done", done, T0),
        ("failed", failed, T0),
        ("cancelled", cancelled, T0),
    ]
}

fn events(task: &Task) -> Vec<TaskEvent> {
    vec![
        TaskEvent::Claimed {
            worker: worker(),
            lease_ms: LEASE_MS,
        },
        TaskEvent::LeaseExtended { lease_ms: LEASE_MS },
        TaskEvent::StepStarted {
            step: task.next_step().unwrap_or(Step::Analyze),
        },
        succeed(),
        TaskEvent::StepFailed {
            error: transient(),
            retry_after_ms: Some(1_000),
        },
        TaskEvent::StepFailed {
            error: TaskError::AssetNotFound {
                url: "s3://b/k".into(),
            },
            retry_after_ms: None,
        },
        TaskEvent::CancelRequested,
        TaskEvent::Cancelled,
        TaskEvent::LeaseExpired,
        TaskEvent::LeaseReleased,
        TaskEvent::Done,
        TaskEvent::Failed {
            error: TaskError::Internal {
                message: "bug".into(),
            },
        },
        TaskEvent::GaveUp {
            error: TaskError::AttemptsExhausted {
                attempts: 3,
                last: Box::new(transient()),
            },
        },
        TaskEvent::WaitingFor {
            tasks: vec![other_task()],
        },
        TaskEvent::WaitEnded {
            ended: vec![other_task()],
        },
    ]
}

/// A task that others wait for in the table.
fn other_task() -> TaskId {
    TaskId::from_bytes([7; 16])
}

/// Columns: claimed, lease_extended, step_started, step_succeeded, step_failed (retryable),
/// step_failed (permanent), cancel_requested, cancelled, lease_expired, lease_released, done,
/// failed, gave_up, waiting_for, wait_ended. Cells: the resulting status (P pending, X processing, D done, F failed, C cancelled)
/// or `-` for a refused event.
const TABLE: [(&str, &str); 12] = [
    ("pending/ready", "X-----C-----F--"),
    ("pending/backing-off", "------C-----F--"),
    ("pending/awaiting-tasks", "------C-----F-P"),
    ("processing/idle", "-XX---X--P-F---"),
    ("processing/running", "-X-XPFX--P-F-P-"),
    ("processing/between-steps", "-XX---X--P-F---"),
    ("processing/cancel-requested", "-X-XCFXC-C-F-C-"),
    ("processing/all-checkpoints", "-X----X--PDF---"),
    ("processing/lease-expired", "------X-P------"),
    ("done", "---------------"),
    ("failed", "---------------"),
    ("cancelled", "---------------"),
];

fn cell(result: &Result<Transition, TransitionError>) -> char {
    match result {
        Err(_) => '-',
        Ok(t) => match t.task.status() {
            Status::Pending => 'P',
            Status::Processing => 'X',
            Status::Done => 'D',
            Status::Failed => 'F',
            Status::Cancelled => 'C',
        },
    }
}

use task_core::machine::Transition;

#[test]
fn every_state_event_pair_matches_the_table() {
    let states = states();
    assert_eq!(states.len(), TABLE.len());
    for ((name, task, now), (row_name, row)) in states.iter().zip(TABLE) {
        assert_eq!(*name, row_name);
        let authority = Authority::Lease(task.epoch);
        let got: String = events(task)
            .iter()
            .map(|event| cell(&transition(task, event, authority, *now)))
            .collect();
        assert_eq!(got, row, "row {name}");
    }
}

#[test]
fn worker_events_without_the_current_lease_are_fenced() {
    for (name, task, now) in states() {
        for event in events(&task).iter().filter(|e| e.kind().needs_lease()) {
            for authority in [
                Authority::System,
                Authority::Lease(task.epoch + 1),
                Authority::Lease(0),
            ] {
                let result = transition(&task, event, authority, now);
                assert!(
                    result.is_err(),
                    "{name}: {:?} with {authority:?} must be refused",
                    event.kind()
                );
            }
        }
    }
    let stale = transition(&claimed(), &TaskEvent::Done, Authority::Lease(7), T0).unwrap_err();
    assert!(matches!(
        stale,
        TransitionError::LeaseLost {
            presented: Some(7),
            current: 1,
            ..
        }
    ));
}

#[test]
fn refusals_name_the_task_the_state_and_the_event() {
    let task = pending();
    let err = transition(&task, &TaskEvent::LeaseExpired, Authority::System, T0).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&task.id.to_string()), "{text}");
    assert!(
        text.contains("lease_expired") && text.contains("pending"),
        "{text}"
    );
}

#[test]
fn a_retry_keeps_the_error_and_waits() {
    let running = with_lease(
        &claimed(),
        &[TaskEvent::StepStarted {
            step: Step::S3Check,
        }],
    );
    let failed = TaskEvent::StepFailed {
        error: transient(),
        retry_after_ms: Some(2_500),
    };
    let next = transition(&running, &failed, Authority::Lease(1), T0).unwrap();
    assert_eq!(
        next.task.ready_at(),
        Some(T0.plus(Duration::from_millis(2_500)))
    );
    assert_eq!(next.task.last_error, Some(transient()));
    assert_eq!(next.entry.error, Some(transient()));
    assert_eq!(next.entry.step, Some(Step::S3Check));
    assert!(next.task.finished_at.is_none());
}

#[derive(Debug, Clone)]
enum Op {
    Event(u8, bool),
    Progress,
    Advance(u16),
}

/// The event that moves a task forward, so random runs also reach `done`.
fn progress(task: &Task) -> TaskEvent {
    match (task.status(), task.current_step()) {
        (Status::Pending, _) => TaskEvent::Claimed {
            worker: worker(),
            lease_ms: LEASE_MS,
        },
        (_, Some(step)) if task.checkpoint(step).is_none() => succeed(),
        _ => match task.next_step() {
            Some(step) => TaskEvent::StepStarted { step },
            None => TaskEvent::Done,
        },
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..15, any::<bool>()).prop_map(|(e, honest)| Op::Event(e, honest)),
        5 => Just(Op::Progress),
        1 => (0u16..40_000).prop_map(Op::Advance),
    ]
}

fn event_for(index: u8, task: &Task) -> TaskEvent {
    let all = events(task);
    all[usize::from(index) % all.len()].clone()
}

/// Replays `ops`, checking the invariants after every accepted event; returns the statuses reached.
fn run_ops(ops: &[Op]) -> Result<std::collections::HashSet<Status>, TestCaseError> {
    let mut task = pending();
    let mut now = T0;
    let mut reached = std::collections::HashSet::new();
    for op in ops {
        let (event, honest) = match op {
            Op::Advance(ms) => {
                now = now.plus(Duration::from_millis(u64::from(*ms)));
                continue;
            }
            Op::Event(index, honest) => (event_for(*index, &task), *honest),
            Op::Progress => (progress(&task), true),
        };
        let authority = if honest {
            Authority::Lease(task.epoch)
        } else {
            Authority::System
        };
        let before = task.clone();
        let Ok(Transition { task: after, entry }) = transition(&before, &event, authority, now)
        else {
            continue;
        };
        prop_assert!(
            before.status().is_active(),
            "a terminal task changed: {:?}",
            event.kind()
        );
        prop_assert!(after.attempt >= before.attempt);
        prop_assert!(after.epoch >= before.epoch);
        prop_assert!(after.waits >= before.waits && after.waits <= after.attempt);
        if !after.waiting_for().is_empty() {
            prop_assert!(after.ready_at().is_none(), "a waiting task is never ready");
        }
        prop_assert!(after.checkpoints.len() >= before.checkpoints.len());
        prop_assert_eq!(entry.to, after.status());
        prop_assert_eq!(entry.from, Some(before.status()));
        prop_assert_eq!(after.finished_at.is_some(), !after.status().is_active());
        if after.status() == Status::Done {
            prop_assert!(Step::ALL.iter().all(|s| after.checkpoint(*s).is_some()));
        }
        let order: Vec<Step> = after.checkpoints.iter().map(|c| c.step).collect();
        prop_assert_eq!(&order[..], &Step::ALL[..order.len()]);
        if let Some(lease) = after.lease() {
            prop_assert_eq!(lease.epoch, after.epoch);
        }
        if event.kind().needs_lease() {
            prop_assert_eq!(authority, Authority::Lease(before.epoch));
        }
        reached.insert(after.status());
        task = after;
    }
    Ok(reached)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_sequences_keep_the_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        run_ops(&ops)?;
    }
}

#[test]
fn random_sequences_reach_every_status() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(op(), 1..80);
    let mut reached = std::collections::HashSet::new();
    for _ in 0..500 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        reached.extend(run_ops(&ops).unwrap());
    }
    for status in Status::ALL {
        assert!(reached.contains(&status), "no random run reached {status}");
    }
}

#[test]
fn an_ended_lease_puts_the_task_back_at_its_queue_position() {
    let queued = Timestamp::from_millis(1_000);
    let claimed_at = Timestamp::from_millis(5_000);
    let pending = Task::new(
        TaskId::generate(),
        key("t", "i", "adbreaks", "1"),
        Priority::Low,
        queued,
    );
    let claim = TaskEvent::Claimed {
        worker: worker(),
        lease_ms: 1_000,
    };
    let held = transition(&pending, &claim, Authority::System, claimed_at)
        .unwrap()
        .task;
    assert_eq!(held.lease().and_then(|l| l.queued_at), Some(queued));
    let late = Timestamp::from_millis(60_000);
    let expired = transition(&held, &TaskEvent::LeaseExpired, Authority::System, late)
        .unwrap()
        .task;
    assert_eq!(expired.ready_at(), Some(queued), "expired: back in place");
    let released = transition(
        &held,
        &TaskEvent::LeaseReleased,
        Authority::Lease(held.epoch),
        claimed_at,
    )
    .unwrap()
    .task;
    assert_eq!(released.ready_at(), Some(queued), "released: back in place");

    // A lease recorded before it kept its queue position goes back at the time of requeue.
    let mut legacy = held.clone();
    if let TaskState::Processing { lease, .. } = &mut legacy.state {
        lease.queued_at = None;
    }
    let requeued = transition(&legacy, &TaskEvent::LeaseExpired, Authority::System, late)
        .unwrap()
        .task;
    assert_eq!(requeued.ready_at(), Some(late));
}

#[test]
fn a_wait_frees_the_worker_keeps_the_attempt_budget_and_ends_only_when_every_task_has() {
    let running = with_lease(
        &claimed(),
        &[TaskEvent::StepStarted {
            step: Step::S3Check,
        }],
    );
    let (a, b) = (TaskId::generate(), TaskId::generate());
    let wait = TaskEvent::WaitingFor { tasks: vec![a, b] };
    let parked = transition(&running, &wait, Authority::Lease(1), T0).unwrap();
    assert_eq!(parked.task.status(), Status::Pending);
    assert_eq!(parked.task.waiting_for(), &[a, b]);
    assert_eq!(parked.task.ready_at(), None, "not claimable while waiting");
    assert!(parked.task.lease().is_none());
    assert!(parked.task.checkpoints.is_empty(), "the step runs again");
    assert_eq!(parked.task.attempts_used(), 0);
    assert_eq!(parked.entry.event, "waiting");
    let detail = parked.entry.detail.clone().unwrap();
    assert!(detail.contains(&a.to_string()) && detail.contains(&b.to_string()));

    let claim = TaskEvent::Claimed {
        worker: worker(),
        lease_ms: LEASE_MS,
    };
    assert!(transition(&parked.task, &claim, Authority::System, T0).is_err());
    let partly = TaskEvent::WaitEnded { ended: vec![a] };
    assert!(transition(&parked.task, &partly, Authority::System, T0).is_err());
    let later = T0.plus(Duration::from_secs(3));
    let all = TaskEvent::WaitEnded { ended: vec![b, a] };
    let woken = transition(&parked.task, &all, Authority::System, later).unwrap();
    assert_eq!(woken.task.ready_at(), Some(later));
    assert_eq!(woken.entry.event, "wait_ended");
    let resumed = transition(&woken.task, &claim, Authority::System, later).unwrap();
    assert_eq!(resumed.task.attempt, 2);
    assert_eq!(resumed.task.attempts_used(), 1, "the wait used no attempt");
}

#[test]
fn a_wait_list_must_be_sane_and_a_cancel_wins() {
    let running = with_lease(
        &claimed(),
        &[TaskEvent::StepStarted {
            step: Step::S3Check,
        }],
    );
    let other = TaskId::generate();
    let refused = [
        vec![],
        vec![running.id],
        vec![other, other],
        (0..=task_core::machine::MAX_AWAITED)
            .map(|_| TaskId::generate())
            .collect(),
    ];
    for tasks in refused {
        let n = tasks.len();
        let event = TaskEvent::WaitingFor { tasks };
        assert!(
            transition(&running, &event, Authority::Lease(1), T0).is_err(),
            "a wait for {n} tasks is refused"
        );
    }
    let cancelling = transition(&running, &TaskEvent::CancelRequested, Authority::System, T0)
        .unwrap()
        .task;
    let wait = TaskEvent::WaitingFor { tasks: vec![other] };
    let ended = transition(&cancelling, &wait, Authority::Lease(1), T0).unwrap();
    assert_eq!(ended.task.status(), Status::Cancelled);
}
