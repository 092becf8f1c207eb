use super::*;
use crate::error::TaskError;
use crate::ids::{InventoryId, Priority, TaskId, Version, WorkerId};
use crate::machine::{Authority, TaskEvent, created, transition};
use crate::task::TaskKey;

const T0: u64 = 1_800_000_000_000;

fn key() -> TaskKey {
    TaskKey {
        tenant: TenantId::new("acme").expect("valid"),
        inventory_id: InventoryId::new("movie").expect("valid"),
        product: ProductName::new("adbreaks").expect("valid"),
        version: Version::new("1.0.0").expect("valid"),
    }
}

/// Applies `event` at `at` ms after T0, with the lease's authority once there is one.
fn step(task: &Task, event: TaskEvent, at: u64) -> Task {
    let authority = match event {
        TaskEvent::Claimed { .. } | TaskEvent::CancelRequested => Authority::System,
        _ => Authority::Lease(task.epoch),
    };
    transition(task, &event, authority, Timestamp::from_millis(T0 + at))
        .expect("legal transition")
        .task
}

fn claimed(task: &Task, at: u64) -> Task {
    let event = TaskEvent::Claimed {
        worker: WorkerId::new("w").expect("valid"),
        lease_ms: 30_000,
    };
    step(task, event, at)
}

#[test]
fn a_task_run_to_done_counts_each_figure_once() {
    let new = created(TaskId::generate(), key(), Priority::Low, Timestamp(T0)).task;
    let creation = StatsDelta::of_write(None, &new);
    assert_eq!(creation.counts, vec![(Status::Pending, 1)]);
    let (minute, activity) = creation.activity.clone().expect("created");
    assert_eq!(minute, minute_of(Timestamp(T0)));
    assert_eq!(activity.created, 1);

    let running = claimed(&new, 2_500);
    let claim = StatsDelta::of_write(Some(&new), &running);
    assert_eq!(
        claim.counts,
        vec![(Status::Pending, -1), (Status::Processing, 1)]
    );
    let (_, activity) = claim.activity.expect("first claim");
    assert_eq!(activity.queue_wait.count, 1);
    assert_eq!(activity.queue_wait.total_ms, 2_500);

    let mut task = running;
    let mut at = 2_500;
    for (i, s) in Step::ALL.into_iter().enumerate() {
        task = step(&task, TaskEvent::StepStarted { step: s }, at);
        let before = task.clone();
        at += 1_000 * (i as u64 + 1);
        let output = serde_json::json!({});
        let reused = false;
        task = step(&task, TaskEvent::StepSucceeded { output, reused }, at);
        let delta = StatsDelta::of_write(Some(&before), &task);
        assert!(delta.counts.is_empty(), "still processing");
        let (_, activity) = delta.activity.expect("a step took time");
        assert_eq!(activity.step(s).total_ms, 1_000 * (i as u64 + 1), "{s:?}");
        assert_eq!(activity.step(s).count, 1);
        assert_eq!(activity.finished(), 0);
    }
    let heartbeat = step(&task, TaskEvent::LeaseExtended { lease_ms: 30_000 }, at);
    assert_eq!(
        StatsDelta::of_write(Some(&task), &heartbeat),
        StatsDelta::default(),
        "a heartbeat changes no figure"
    );
    let done = step(&heartbeat, TaskEvent::Done, at + 10);
    let end = StatsDelta::of_write(Some(&heartbeat), &done);
    assert_eq!(
        end.counts,
        vec![(Status::Processing, -1), (Status::Done, 1)]
    );
    let (_, activity) = end.activity.expect("finished");
    assert_eq!((activity.done, activity.finished()), (1, 1));
    assert_eq!(
        StatsDelta::of_removal(&done).counts,
        vec![(Status::Done, -1)]
    );
}

#[test]
fn a_retry_waits_again_without_counting_a_second_queue_wait() {
    let new = created(TaskId::generate(), key(), Priority::High, Timestamp(T0)).task;
    let first = claimed(&new, 100);
    let started = step(
        &first,
        TaskEvent::StepStarted {
            step: Step::S3Check,
        },
        100,
    );
    let error = TaskError::Transient {
        step: Step::S3Check,
        message: "boom".into(),
    };
    let failed = TaskEvent::StepFailed {
        error,
        retry_after_ms: Some(0),
    };
    let retried = step(&started, failed, 200);
    let delta = StatsDelta::of_write(Some(&started), &retried);
    assert_eq!(
        delta.counts,
        vec![(Status::Processing, -1), (Status::Pending, 1)]
    );
    assert_eq!(delta.activity, None, "a retry is neither an end nor a step");
    let second = claimed(&retried, 300);
    let delta = StatsDelta::of_write(Some(&retried), &second);
    assert_eq!(
        delta.activity, None,
        "the queue wait is counted at the first claim"
    );
}

#[test]
fn a_pending_task_cancelled_is_counted_as_cancelled_in_its_minute() {
    let new = created(TaskId::generate(), key(), Priority::Low, Timestamp(T0)).task;
    let cancelled = step(&new, TaskEvent::CancelRequested, 61_000);
    let delta = StatsDelta::of_write(Some(&new), &cancelled);
    assert_eq!(
        delta.counts,
        vec![(Status::Pending, -1), (Status::Cancelled, 1)]
    );
    let (minute, activity) = delta.activity.expect("cancelled");
    assert_eq!(minute, minute_of(Timestamp(T0 + 61_000)));
    assert_eq!(activity.cancelled, 1);
    assert_eq!(activity.created, 0);
}

#[test]
fn durations_merge_and_average() {
    let mut a = Durations::default();
    assert_eq!(a.mean_ms(), None);
    a.add(10);
    a.add(30);
    let mut b = Durations::default();
    b.add(50);
    a.merge(&b);
    assert_eq!(
        (a.count, a.total_ms, a.max_ms, a.mean_ms()),
        (3, 90, 50, Some(30))
    );
    let mut x = Activity {
        created: 1,
        ..Activity::default()
    };
    x.merge(&Activity {
        done: 2,
        queue_wait: b,
        ..Activity::default()
    });
    assert_eq!((x.created, x.done, x.queue_wait.max_ms), (1, 2, 50));
}

#[test]
fn minutes_start_on_the_minute() {
    assert_eq!(minute_of(Timestamp(119_999)), Timestamp(60_000));
    assert_eq!(minute_of(Timestamp(120_000)), Timestamp(120_000));
}
