//! Steps that wait for other tasks: no slot is held while waiting, nothing is lost in a crash.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use task_core::prelude::*;
use task_runner::Runner;
use task_runner::step::{StepContext, StepOutput, TaskStep};
use tokio::sync::Semaphore;

use crate::support::*;

/// The analyze step of a `markers`-like product: it needs the `fingerprint` task of its own
/// item; it creates it (or finds the active one) and waits for it, and succeeds once it ended.
struct NeedsFingerprint;

#[async_trait]
impl TaskStep for NeedsFingerprint {
    fn step(&self) -> Step {
        Step::Analyze
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let internal = |e: StoreError| TaskError::Internal {
            message: e.to_string(),
        };
        let key = TaskKey {
            product: ProductName::new("fingerprint").map_err(|e| TaskError::Internal {
                message: e.to_string(),
            })?,
            ..ctx.task.key.clone()
        };
        if let Some(latest) = ctx.store.latest_task(&key).await.map_err(internal)?
            && !latest.status().is_active()
        {
            return StepOutput::new(&serde_json::json!({ "fingerprint": latest.id.to_string() }));
        }
        let child = ctx
            .store
            .create_task(NewTask {
                key,
                priority: ctx.task.priority,
            })
            .await
            .map_err(internal)?;
        Ok(StepOutput::waiting_for(vec![child.task.id]))
    }
}

/// The pipeline: scripted first steps, [`NeedsFingerprint`] for `markers`, `fingerprint` as
/// `steps.analyze` behaves.
fn pipeline(steps: &Steps) -> task_runner::Pipeline {
    steps
        .pipeline(&["fingerprint"])
        .with_analyzer(
            ProductName::new("markers").unwrap(),
            Arc::new(NeedsFingerprint),
        )
        .unwrap()
}

fn one_slot(worker: &str) -> task_runner::RunnerConfig {
    let mut config = config(worker, &["markers", "fingerprint"]);
    config.concurrency = 1;
    config
}

/// A one-slot runner whose `fingerprint` tasks wait at a closed gate, and a `markers` task
/// parked waiting for the `fingerprint` task it created, which runs: (gate, runner, waiter).
async fn start_and_park<S: Store>(
    store: &Arc<S>,
) -> (Arc<Semaphore>, task_runner::RunnerHandle, Task) {
    let gate = Arc::new(Semaphore::new(0));
    let steps = Steps::with_analyze(Behaviour::Gate(gate.clone()));
    let runner = Runner::start(store.clone(), pipeline(&steps), one_slot("w1")).unwrap();
    let waiter = submit(&**store, "episode", "markers", Priority::Low).await;
    steps.analyze.entered.notified().await;
    let parked = store.get_task(&tenant(), waiter.id).await.unwrap().unwrap();
    (gate, runner, parked)
}

/// With a single slot, a task that waits for a task it created frees that slot: the awaited
/// task runs while the waiter is pending with `waiting_for` set, and the waiter then runs its
/// step again and ends done, the wait not counted as a failed attempt.
pub async fn a_waiting_task_holds_no_slot_and_resumes_when_its_task_ends<S: Store>(store: Arc<S>) {
    let (gate, runner, parked) = start_and_park(&store).await;
    let waiter = parked.clone();
    assert_eq!(parked.status(), Status::Pending);
    let child = parked.waiting_for().to_vec();
    assert_eq!(child.len(), 1, "{parked:?}");
    let running = store.get_task(&tenant(), child[0]).await.unwrap().unwrap();
    assert_eq!(
        (running.status(), running.key.product.as_str()),
        (Status::Processing, "fingerprint"),
        "the awaited task holds the only slot"
    );
    gate.add_permits(1);
    let done = finished(&*store, waiter.id).await;
    assert_eq!(done.status(), Status::Done);
    assert_eq!((done.attempt, done.attempts_used()), (2, 1));
    let output = &done.checkpoint(Step::Analyze).unwrap().output;
    assert_eq!(output["fingerprint"], child[0].to_string());
    let metrics = runner.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!((metrics.waiting, metrics.done), (1, 2));
}

/// A runner that dies while a task waits (its awaited task mid-run) loses nothing: another
/// runner finishes the awaited task after its lease expires, then the waiting task, and no
/// task is created twice.
pub async fn a_crash_while_waiting_loses_nothing<S: Store>(store: Arc<S>) {
    let first = Steps::with_analyze(Behaviour::Hang);
    let crashed = Runner::start(store.clone(), pipeline(&first), one_slot("crashy")).unwrap();
    let waiter = submit(&*store, "episode", "markers", Priority::Low).await;
    first.analyze.entered.notified().await;
    drop(crashed);

    let second = Steps::all_succeed();
    let runner = Runner::start(store.clone(), pipeline(&second), one_slot("healthy")).unwrap();
    let done = finished(&*store, waiter.id).await;
    assert_eq!(done.status(), Status::Done);
    let tasks = store
        .list_tasks(&tenant(), &TaskFilter::default(), &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(tasks.len(), 2, "one waiter, one awaited task: {tasks:?}");
    assert!(tasks.iter().all(|t| t.status() == Status::Done));
    let history = store.history(&tenant(), waiter.id).await.unwrap();
    let events: Vec<&str> = history.iter().map(|e| e.event.as_str()).collect();
    assert!(
        events.contains(&"waiting") && events.contains(&"wait_ended"),
        "{events:?}"
    );
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Cancelling a waiting task ends it at once; the task it waited for runs on to done.
pub async fn cancelling_a_waiting_task_leaves_its_task_running<S: Store>(store: Arc<S>) {
    let (gate, runner, waiter) = start_and_park(&store).await;
    let child = waiter.waiting_for()[0];
    let cancelled = store.request_cancel(&tenant(), waiter.id).await.unwrap();
    assert_eq!(cancelled.status(), Status::Cancelled);
    gate.add_permits(1);
    let child = finished(&*store, child).await;
    assert_eq!(child.status(), Status::Done);
    let metrics = runner.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(metrics.done, 1);
    let after = store.get_task(&tenant(), waiter.id).await.unwrap().unwrap();
    assert_eq!(after.status(), Status::Cancelled);
}
