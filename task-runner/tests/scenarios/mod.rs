//! Runner scenarios, generic over the store; each backend's test file instantiates them.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use task_core::prelude::*;
use task_runner::Runner;
use tokio::sync::Semaphore;

use crate::support::*;

mod panics;
mod waits;
pub use panics::*;
pub use waits::*;

/// A step that fails twice with a retryable error, then succeeds: the task ends done on its
/// third attempt, and the steps before it are not run again.
pub async fn retries_then_succeeds<S: Store>(store: Arc<S>) {
    let mut steps = Steps::all_succeed();
    let transient = TaskError::StorageUnavailable {
        url: "s3://b/k".into(),
        message: "503 Slow Down".into(),
    };
    steps.probe = Scripted::new(Step::Probe, Behaviour::FailTimes(2, transient.clone()));
    let runner = Runner::start(
        store.clone(),
        steps.pipeline(&["adbreaks"]),
        config("w1", &["adbreaks"]),
    )
    .unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    let done = finished(&*store, task.id).await;
    assert_eq!(done.status(), Status::Done);
    assert_eq!(done.attempt, 3);
    assert_eq!(done.last_error, Some(transient));
    assert_eq!(
        steps.s3_check.calls(),
        1,
        "a checkpointed step is not redone"
    );
    assert_eq!(steps.probe.calls(), 3);
    assert_eq!(steps.analyze.calls(), 1);
    let metrics = runner.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!((metrics.retried, metrics.done, metrics.claimed), (2, 1, 3));
    let history = store.history(&tenant(), task.id).await.unwrap();
    let failures = history.iter().filter(|e| e.event == "step_failed").count();
    assert_eq!(failures, 2);
}

/// Retryable failures stop at the product's attempt limit with `attempts_exhausted`.
pub async fn attempts_run_out<S: Store>(store: Arc<S>) {
    let timeout = TaskError::Transient {
        step: Step::Analyze,
        message: "connection reset".into(),
    };
    let steps = Steps::with_analyze(Behaviour::FailTimes(usize::MAX, timeout.clone()));
    let mut config = config("w1", &[]);
    config = config.with_product(task_runner::step::ProductSettings {
        max_attempts: 3,
        ..settings("adbreaks")
    });
    let runner = Runner::start(store.clone(), steps.pipeline(&["adbreaks"]), config).unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    let failed = finished(&*store, task.id).await;
    assert_eq!(failed.status(), Status::Failed);
    let error = failed.error().unwrap();
    assert_eq!(error.code(), "attempts_exhausted");
    assert_eq!(
        error,
        &TaskError::AttemptsExhausted {
            attempts: 3,
            last: Box::new(timeout)
        }
    );
    assert!(error.to_string().contains("connection reset"), "{error}");
    assert_eq!(steps.analyze.calls(), 3);
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A permanent error fails the task at once with its code; later steps never run.
pub async fn permanent_error_fails_at_once<S: Store>(store: Arc<S>) {
    let mut steps = Steps::all_succeed();
    let error = TaskError::ProbeFailed {
        message: "Invalid data found when processing input".into(),
    };
    steps.probe = Scripted::new(Step::Probe, Behaviour::FailTimes(usize::MAX, error.clone()));
    let runner = Runner::start(
        store.clone(),
        steps.pipeline(&["adbreaks"]),
        config("w1", &["adbreaks"]),
    )
    .unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    let failed = finished(&*store, task.id).await;
    assert_eq!(failed.status(), Status::Failed);
    assert_eq!(failed.attempt, 1);
    assert_eq!(failed.error(), Some(&error));
    assert_eq!(
        failed.error().unwrap().to_string(),
        "Probe failed with error = Invalid data found when processing input"
    );
    assert_eq!(steps.probe.calls(), 1);
    assert_eq!(steps.length_gate.calls(), 0);
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A step blocked on a future that never completes is interrupted by a cancel.
pub async fn cancel_interrupts_a_blocked_step<S: Store>(store: Arc<S>) -> Duration {
    let steps = Steps::with_analyze(Behaviour::Hang);
    let runner = Runner::start(
        store.clone(),
        steps.pipeline(&["adbreaks"]),
        config("w1", &["adbreaks"]),
    )
    .unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    wait_for_step(&*store, task.id, Step::Analyze).await;
    let asked = Instant::now();
    let flagged = store.request_cancel(&tenant(), task.id).await.unwrap();
    assert!(
        flagged.cancel_requested(),
        "a processing task shows cancel_requested at once"
    );
    let ended = finished(&*store, task.id).await;
    let latency = asked.elapsed();
    assert_eq!(ended.status(), Status::Cancelled);
    let metrics = runner.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(metrics.cancelled, 1);
    latency
}

/// A step blocked forever fails the attempt as `step_timeout` after the product's timeout.
pub async fn timeout_interrupts_a_blocked_step<S: Store>(store: Arc<S>) {
    let steps = Steps::with_analyze(Behaviour::Hang);
    let product = task_runner::step::ProductSettings {
        step_timeout: Duration::from_millis(100),
        max_attempts: 2,
        ..settings("adbreaks")
    };
    let runner = Runner::start(
        store.clone(),
        steps.pipeline(&["adbreaks"]),
        config("w1", &[]).with_product(product),
    )
    .unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    let failed = finished(&*store, task.id).await;
    let error = failed.error().unwrap();
    assert_eq!(error.code(), "attempts_exhausted");
    let TaskError::AttemptsExhausted { last, attempts: 2 } = error else {
        panic!("{error:?}")
    };
    assert_eq!(
        **last,
        TaskError::StepTimeout {
            step: Step::Analyze,
            timeout_ms: 100
        }
    );
    assert_eq!(steps.analyze.calls(), 2);
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A child process started by a step is gone after a cancel.
pub async fn cancel_kills_child_processes<S: Store>(store: Arc<S>) {
    let pids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let steps = Steps::with_analyze(Behaviour::Child(pids.clone()));
    let runner = Runner::start(
        store.clone(),
        steps.pipeline(&["adbreaks"]),
        config("w1", &["adbreaks"]),
    )
    .unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    wait_for_step(&*store, task.id, Step::Analyze).await;
    // The step records the pid right after spawning; wait for the record through the counter.
    while pids.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let pid = pids.lock().unwrap()[0];
    assert!(!process_is_dead(pid), "the child runs while the step runs");
    store.request_cancel(&tenant(), task.id).await.unwrap();
    assert_eq!(finished(&*store, task.id).await.status(), Status::Cancelled);
    // SIGKILL was sent when the step's future was dropped; the kernel finishes the kill
    // asynchronously, so allow it a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_is_dead(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(process_is_dead(pid), "child {pid} still runs after cancel");
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A runner dropped mid-task (as in a crash) leaves a task that a second runner finishes once
/// the lease expires, without redoing the checkpointed steps.
pub async fn a_second_runner_finishes_a_crashed_runners_task<S: Store>(store: Arc<S>) {
    let first = Steps::with_analyze(Behaviour::Hang);
    let crashed = Runner::start(
        store.clone(),
        first.pipeline(&["adbreaks"]),
        config("crashy", &["adbreaks"]),
    )
    .unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    wait_for_step(&*store, task.id, Step::Analyze).await;
    drop(crashed);

    let second = Steps::all_succeed();
    let runner = Runner::start(
        store.clone(),
        second.pipeline(&["adbreaks"]),
        config("healthy", &["adbreaks"]),
    )
    .unwrap();
    let done = finished(&*store, task.id).await;
    assert_eq!(done.status(), Status::Done);
    assert_eq!(done.attempt, 2);
    assert_eq!(
        (
            first.s3_check.calls(),
            first.probe.calls(),
            first.length_gate.calls()
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (
            second.s3_check.calls(),
            second.probe.calls(),
            second.length_gate.calls()
        ),
        (0, 0, 0)
    );
    assert_eq!(second.analyze.calls(), 1);
    assert_eq!(done.checkpoint(Step::Probe).unwrap().attempt, 1);
    assert_eq!(done.checkpoint(Step::Analyze).unwrap().attempt, 2);
    let history = store.history(&tenant(), task.id).await.unwrap();
    assert!(
        history.iter().any(|e| e.event == "lease_expired"),
        "{history:?}"
    );
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Graceful shutdown releases leases so another runner starts at once, not after expiry.
pub async fn shutdown_releases_leases<S: Store>(store: Arc<S>) {
    let first = Steps::with_analyze(Behaviour::Hang);
    let mut long_lease = config("leaving", &["adbreaks"]);
    long_lease.lease = Duration::from_secs(3600);
    let leaving = Runner::start(store.clone(), first.pipeline(&["adbreaks"]), long_lease).unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    wait_for_step(&*store, task.id, Step::Analyze).await;
    let metrics = leaving.shutdown(Duration::from_millis(50)).await.unwrap();
    assert_eq!(metrics.released, 1);
    let released = store.get_task(&tenant(), task.id).await.unwrap().unwrap();
    assert_eq!(released.status(), Status::Pending);

    let second = Steps::all_succeed();
    let runner = Runner::start(
        store.clone(),
        second.pipeline(&["adbreaks"]),
        config("staying", &["adbreaks"]),
    )
    .unwrap();
    assert_eq!(finished(&*store, task.id).await.status(), Status::Done);
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// With one slot, tasks run high, then medium, then low, FIFO within a priority.
pub async fn claims_follow_priority<S: Store>(store: Arc<S>) {
    let steps = Steps::all_succeed();
    let mut ids = Vec::new();
    for (name, priority) in [
        ("low-1", Priority::Low),
        ("high-1", Priority::High),
        ("medium-1", Priority::Medium),
        ("high-2", Priority::High),
        ("low-2", Priority::Low),
    ] {
        ids.push(submit(&*store, name, "adbreaks", priority).await.id);
    }
    let mut config = config("w1", &["adbreaks"]);
    config.concurrency = 1;
    let runner = Runner::start(store.clone(), steps.pipeline(&["adbreaks"]), config).unwrap();
    for id in ids {
        finished(&*store, id).await;
    }
    assert_eq!(
        steps.analyze.order(),
        ["high-1", "high-2", "medium-1", "low-1", "low-2"]
    );
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Under a backlog of high-priority work, low-priority tasks still run early (anti-starvation).
pub async fn low_priority_is_not_starved<S: Store>(store: Arc<S>) {
    let steps = Steps::all_succeed();
    let mut lows = Vec::new();
    let mut all = Vec::new();
    for i in 0..100 {
        all.push(
            submit(&*store, &format!("high-{i:03}"), "adbreaks", Priority::High)
                .await
                .id,
        );
        if i % 20 == 0 {
            let low = submit(&*store, &format!("low-{i:03}"), "adbreaks", Priority::Low)
                .await
                .id;
            lows.push(low);
            all.push(low);
        }
    }
    let mut config = config("w1", &["adbreaks"]);
    config.concurrency = 1;
    config.claim_batch = 1;
    let runner = Runner::start(store.clone(), steps.pipeline(&["adbreaks"]), config).unwrap();
    for id in all {
        finished(&*store, id).await;
    }
    let order = steps.analyze.order();
    let last_low = order
        .iter()
        .rposition(|name| name.starts_with("low"))
        .unwrap();
    assert!(
        last_low < 60,
        "the 5 low tasks finished by position {last_low} of 105: {order:?}"
    );
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A product at its concurrency limit does not block other products.
pub async fn per_product_limits_hold<S: Store>(store: Arc<S>) {
    let gate = Arc::new(Semaphore::new(0));
    let limited = Steps::with_analyze(Behaviour::Gate(gate.clone()));
    let free = Steps::all_succeed();
    let pipeline = limited
        .pipeline(&["fingerprint"])
        .with_analyzer(ProductName::new("adbreaks").unwrap(), free.analyze.clone())
        .unwrap();
    let mut config = config("w1", &["adbreaks"]);
    config = config.with_product(task_runner::step::ProductSettings {
        concurrency: 2,
        ..settings("fingerprint")
    });
    config.concurrency = 8;
    let mut slow = Vec::new();
    for i in 0..6 {
        slow.push(
            submit(&*store, &format!("f{i}"), "fingerprint", Priority::High)
                .await
                .id,
        );
    }
    let mut fast = Vec::new();
    for i in 0..6 {
        fast.push(
            submit(&*store, &format!("a{i}"), "adbreaks", Priority::Low)
                .await
                .id,
        );
    }
    let runner = Runner::start(store.clone(), pipeline, config).unwrap();
    for id in &fast {
        assert_eq!(finished(&*store, *id).await.status(), Status::Done);
    }
    // A step is called one scheduling hop after the write that starts it is acknowledged, and
    // that hop may come after the fast tasks' last write: wait for the second call. Each call
    // notifies (a stored permit), so a call between the check and the wait is not missed.
    let peak = || {
        limited
            .analyze
            .peak
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    while peak() < 2 {
        tokio::time::timeout(Duration::from_secs(10), limited.analyze.entered.notified())
            .await
            .expect("the second limited task starts its step");
    }
    assert_eq!(peak(), 2);
    gate.add_permits(6);
    for id in &slow {
        assert_eq!(finished(&*store, *id).await.status(), Status::Done);
    }
    let metrics = runner.shutdown(Duration::from_secs(5)).await.unwrap();
    let fingerprint = ProductName::new("fingerprint").unwrap();
    assert_eq!(metrics.peak_in_flight.get(&fingerprint), Some(&2));
    assert_eq!(
        limited
            .analyze
            .peak
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

/// A runner whose lease expired (its heartbeats did not land in time) while its step ran is
/// fenced: another runner takes the task over, and the first one's late success writes nothing.
pub async fn a_runner_that_lost_its_lease_writes_nothing<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    let gate = Arc::new(Semaphore::new(0));
    let first = Steps::with_analyze(Behaviour::Gate(gate.clone()));
    let mut slow = config("partitioned", &["adbreaks"]);
    slow.lease = Duration::from_secs(30);
    let partitioned = Runner::start(store.clone(), first.pipeline(&["adbreaks"]), slow).unwrap();
    let task = submit(&*store, "a", "adbreaks", Priority::Low).await;
    wait_for_step(&*store, task.id, Step::Analyze).await;
    clock.advance(Duration::from_secs(31));

    let second = Steps::all_succeed();
    let healthy = Runner::start(
        store.clone(),
        second.pipeline(&["adbreaks"]),
        config("healthy", &["adbreaks"]),
    )
    .unwrap();
    let done = finished(&*store, task.id).await;
    assert_eq!(done.status(), Status::Done);
    assert_eq!(done.epoch, 2);
    let history_before = store.history(&tenant(), task.id).await.unwrap();

    gate.add_permits(1);
    let metrics = partitioned.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        first.analyze.calls(),
        1,
        "the first runner's step did run to its end"
    );
    assert_eq!(metrics.lease_lost, 1);
    assert_eq!(metrics.done, 0);
    let after = store.get_task(&tenant(), task.id).await.unwrap().unwrap();
    assert_eq!(after, done, "the fenced runner wrote nothing");
    assert_eq!(
        store.history(&tenant(), task.id).await.unwrap(),
        history_before
    );
    assert_eq!(after.checkpoint(Step::Analyze).unwrap().attempt, 2);
    healthy.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Expands into one `#[tokio::test]` per scenario for a store factory.
#[macro_export]
macro_rules! runner_scenarios {
    ($make:expr) => {
        $crate::runner_scenarios!(@tests $make;
            retries_then_succeeds, attempts_run_out, permanent_error_fails_at_once,
            cancel_interrupts_a_blocked_step, timeout_interrupts_a_blocked_step,
            cancel_kills_child_processes, a_second_runner_finishes_a_crashed_runners_task,
            shutdown_releases_leases, claims_follow_priority, low_priority_is_not_starved,
            per_product_limits_hold, a_panicking_step_fails_its_task_and_frees_its_slot,
            a_waiting_task_holds_no_slot_and_resumes_when_its_task_ends,
            a_crash_while_waiting_loses_nothing,
            cancelling_a_waiting_task_leaves_its_task_running);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock: task_core::time::SharedClock = std::sync::Arc::new(task_core::time::SystemClock);
                #[allow(clippy::redundant_closure_call)]
                let (store, _guard) = ($make)(clock);
                let _ = $crate::scenarios::$name(std::sync::Arc::new(store)).await;
            }
        )*

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_runner_that_lost_its_lease_writes_nothing() {
            let clock = task_core::time::ManualClock::default();
            #[allow(clippy::redundant_closure_call)]
            let (store, _guard) = ($make)(std::sync::Arc::new(clock.clone()));
            $crate::scenarios::a_runner_that_lost_its_lease_writes_nothing(std::sync::Arc::new(store), clock).await;
        }
    };
}
