//! Runs one claimed task through its remaining steps, under its lease.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use task_core::catalog::CatalogItem;
use task_core::error::TaskError;
use task_core::ids::{ProductName, TaskId, TenantId};
use task_core::machine::TaskEvent;
use task_core::store::{ApplyRequest, Store, StoreError, TaskStoreExt};
use task_core::task::{Status, Step, Task};
use task_core::telemetry;

use crate::batcher::WriteBatcher;
use crate::config::RunnerConfig;
use crate::metrics::{Metrics, Outcome};
use crate::pipeline::Pipeline;
use crate::step::{ProductSettings, StepContext};

/// Why a running task must stop before its steps are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// A user asked to cancel: end the task `cancelled`.
    CancelRequested,
    /// Another runner holds the task now: write nothing more.
    LeaseLost,
    /// The runner is shutting down: give the lease back.
    Shutdown,
}

/// A task's stop switch: the first reason wins, and the token trips the running step.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    pub(crate) token: CancellationToken,
    reason: OnceLock<StopReason>,
}

impl Stop {
    pub(crate) fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }
}

/// What every executor of a runner shares.
pub(crate) struct Shared<S: Store> {
    pub(crate) store: Arc<S>,
    /// Where step transitions go (heartbeats go to the store directly).
    pub(crate) writes: WriteBatcher,
    pub(crate) pipeline: Pipeline,
    pub(crate) config: RunnerConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) running: Mutex<HashMap<TaskId, (TenantId, Arc<Stop>)>>,
}

impl<S: Store> Shared<S> {
    pub(crate) fn running_stop(&self, id: &TaskId) -> Option<Arc<Stop>> {
        self.lock_running().get(id).map(|(_, stop)| stop.clone())
    }

    pub(crate) fn lock_running(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TaskId, (TenantId, Arc<Stop>)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `task` (just claimed) to an outcome. Registered in `shared.running` while it runs.
pub(crate) async fn execute<S: Store>(
    shared: Arc<Shared<S>>,
    task: Task,
) -> (ProductName, Outcome) {
    let product = task.key.product.clone();
    let stop = Arc::new(Stop::default());
    shared
        .lock_running()
        .insert(task.id, (task.key.tenant.clone(), stop.clone()));
    shared.metrics.started(&product);
    let span = info_span!(
        "task",
        task_id = %task.id,
        product = %task.key.product,
        version = %task.key.version,
        attempt = task.attempt,
    );
    let id = task.id;
    let epoch = task.epoch;
    let outcome = async {
        let guarded = AssertUnwindSafe(run(&shared, task, &stop)).catch_unwind();
        tokio::select! {
            outcome = guarded => match outcome {
                Ok(outcome) => outcome,
                Err(panic) => {
                    // A bug in the engine's own code: the task fails rather than wait for its
                    // lease to expire, and the runner goes on.
                    let message = format!("the task executor panicked: {}", panic_message(&*panic));
                    warn!(%message, "executor panic");
                    let writer = Writer { shared: &shared, id, epoch };
                    let error = TaskError::Internal { message };
                    writer.finish(vec![TaskEvent::Failed { error }]).await
                }
            },
            never = heartbeat(&shared, id, epoch, &stop) => match never {},
        }
    }
    .instrument(span)
    .await;
    shared.lock_running().remove(&id);
    shared.metrics.ended(&product);
    shared.metrics.record(&product, outcome);
    (product, outcome)
}

/// Extends the lease every third of its length while the task runs; a lost lease or a cancel
/// request seen on the task stops it. Never returns: it ends when the task's future is dropped.
async fn heartbeat<S: Store>(
    shared: &Shared<S>,
    id: TaskId,
    epoch: u64,
    stop: &Stop,
) -> std::convert::Infallible {
    let lease = shared.config.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        match shared.store.extend_lease(id, epoch, lease).await {
            Ok(task) if task.cancel_requested() => stop.stop(StopReason::CancelRequested),
            Ok(_) => {}
            Err(err) if err.is_lease_lost() => {
                warn!(error = %err, "lease lost; abandoning the task");
                stop.stop(StopReason::LeaseLost);
                return std::future::pending().await;
            }
            Err(err) => warn!(error = %err, "heartbeat failed; will retry"),
        }
    }
}

/// The step loop. Events that follow a step's success are sent together with the next step's
/// start (or with `done`), so each step costs one durable write; the first step's start was
/// written by the claim.
async fn run<S: Store>(shared: &Shared<S>, task: Task, stop: &Stop) -> Outcome {
    let (id, epoch) = (task.id, task.epoch);
    let writer = Writer { shared, id, epoch };
    let settings = match shared.config.products.get(&task.key.product) {
        Some(settings) if shared.pipeline.has_product(&task.key.product) => settings.clone(),
        _ => {
            let error = TaskError::Internal {
                message: format!("product {} is not enabled in this runner", task.key.product),
            };
            return writer.finish(vec![TaskEvent::Failed { error }]).await;
        }
    };
    let item = match load_item(shared, &task).await {
        Ok(item) => item,
        Err(error) => return writer.finish(vec![TaskEvent::Failed { error }]).await,
    };
    if task.cancel_requested() {
        stop.stop(StopReason::CancelRequested);
    }
    let mut next_step = task.next_step();
    // The claim (start_first_step) already started this step; a store that ignores the flag
    // leaves it None and the loop starts the step itself.
    let mut started_by_claim = task
        .current_step()
        .filter(|step| task.checkpoint(*step).is_none());
    let mut current = task;
    let mut pending: Vec<TaskEvent> = Vec::new();
    loop {
        if let Some(reason) = stop.reason() {
            return writer.stopped(reason, pending).await;
        }
        let Some(step) = next_step else {
            pending.push(TaskEvent::Done);
            return writer.finish(pending).await;
        };
        let Some(implementation) = shared.pipeline.step(&current.key.product, step) else {
            let error = TaskError::Internal {
                message: format!("no {step} step for product {}", current.key.product),
            };
            pending.push(TaskEvent::Failed { error });
            return writer.finish(pending).await;
        };
        if started_by_claim.take() != Some(step) {
            pending.push(TaskEvent::StepStarted { step });
            current = match writer.apply(std::mem::take(&mut pending)).await {
                Ok(task) => task,
                Err(outcome) => return outcome,
            };
        }
        let ctx = StepContext {
            task: current.clone(),
            item: item.clone(),
            product: settings.clone(),
            cancel: stop.token.child_token(),
            store: shared.store.clone(),
        };
        let began = std::time::Instant::now();
        let result = run_step(&ctx, &settings, &*implementation, stop)
            .instrument(info_span!("step", step = %step))
            .await;
        ctx.cancel.cancel();
        if result.is_some() {
            telemetry::step_ran(&current.key.product, step, began.elapsed());
        }
        match result {
            None => {
                return writer
                    .stopped(stop.reason().unwrap_or(StopReason::LeaseLost), pending)
                    .await;
            }
            Some(Ok(output)) if !output.wait_for.is_empty() => {
                debug!(%step, tasks = output.wait_for.len(), "step waits for tasks");
                pending.push(TaskEvent::WaitingFor {
                    tasks: output.wait_for,
                });
                return writer.finish(pending).await;
            }
            Some(Ok(output)) => {
                debug!(%step, reused = output.reused, "step succeeded");
                pending.push(TaskEvent::StepSucceeded {
                    output: output.value,
                    reused: output.reused,
                });
                next_step = Step::ALL.get(step.index() + 1).copied();
            }
            Some(Err(error)) => {
                debug!(%step, %error, "step failed");
                let event = failure_event(shared, &current, &settings, error);
                return writer.finish(vec![event]).await;
            }
        }
    }
}

/// Runs one step under its timeout; None if the task was stopped meanwhile (the step's future
/// is dropped, which kills the child processes it owns).
async fn run_step(
    ctx: &StepContext,
    settings: &ProductSettings,
    step: &dyn crate::step::TaskStep,
    stop: &Stop,
) -> Option<Result<crate::step::StepOutput, TaskError>> {
    let timeout = settings.step_timeout;
    // A panicking step is one failed attempt of its task, never a lost slot or a dead runner.
    let guarded = AssertUnwindSafe(step.run(ctx)).catch_unwind();
    tokio::select! {
        biased;
        _ = stop.token.cancelled() => None,
        result = tokio::time::timeout(timeout, guarded) => Some(match result {
            Err(_) => Err(TaskError::StepTimeout { step: step.step(), timeout_ms: millis(timeout) }),
            Ok(Err(panic)) => Err(TaskError::Internal {
                message: format!("step {} panicked: {}", step.step(), panic_message(&*panic)),
            }),
            Ok(Ok(result)) => result,
        }),
    }
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

fn failure_event<S: Store>(
    shared: &Shared<S>,
    task: &Task,
    settings: &ProductSettings,
    error: TaskError,
) -> TaskEvent {
    if !error.is_retryable() {
        return TaskEvent::StepFailed {
            error,
            retry_after_ms: None,
        };
    }
    if task.attempts_used() >= settings.max_attempts {
        let error = TaskError::AttemptsExhausted {
            attempts: task.attempts_used(),
            last: Box::new(error),
        };
        return TaskEvent::StepFailed {
            error,
            retry_after_ms: None,
        };
    }
    let policy = settings.retry.as_ref().unwrap_or(&shared.config.retry);
    let delay = policy.delay(task.attempts_used());
    TaskEvent::StepFailed {
        error,
        retry_after_ms: Some(millis(delay)),
    }
}

async fn load_item<S: Store>(shared: &Shared<S>, task: &Task) -> Result<CatalogItem, TaskError> {
    let lookup = shared
        .store
        .get_item(&task.key.tenant, &task.key.inventory_id, true)
        .await;
    match lookup {
        Ok(Some(item)) => Ok(item),
        Ok(None) => Err(TaskError::Internal {
            message: format!(
                "catalog item {} of tenant {} does not exist",
                task.key.inventory_id, task.key.tenant
            ),
        }),
        Err(err) if err.is_retryable() => Err(TaskError::Transient {
            step: Step::S3Check,
            message: format!("catalog lookup failed: {err}"),
        }),
        Err(err) => Err(TaskError::Internal {
            message: format!("catalog lookup failed: {err}"),
        }),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Writes a task's events with its lease epoch and turns the result into an outcome.
struct Writer<'a, S: Store> {
    shared: &'a Shared<S>,
    id: TaskId,
    epoch: u64,
}

impl<S: Store> Writer<'_, S> {
    async fn apply(&self, events: Vec<TaskEvent>) -> Result<Task, Outcome> {
        let request = ApplyRequest {
            id: self.id,
            epoch: self.epoch,
            events,
        };
        self.shared
            .writes
            .apply(request)
            .await
            .map_err(|err| abandon(&err))
    }

    /// Applies the final events and reports how the task ended.
    async fn finish(&self, events: Vec<TaskEvent>) -> Outcome {
        let applied = self.apply(events).await;
        if let Ok(task) = &applied {
            telemetry::task_finished(task);
        }
        match applied {
            Ok(task) => match task.status() {
                Status::Done => Outcome::Done,
                Status::Failed => Outcome::Failed,
                Status::Cancelled => Outcome::Cancelled,
                Status::Pending if !task.waiting_for().is_empty() => Outcome::Waiting,
                Status::Pending => Outcome::Retried,
                Status::Processing => Outcome::LeaseLost,
            },
            Err(outcome) => outcome,
        }
    }

    async fn stopped(&self, reason: StopReason, mut pending: Vec<TaskEvent>) -> Outcome {
        match reason {
            StopReason::LeaseLost => Outcome::LeaseLost,
            StopReason::CancelRequested => {
                pending.push(TaskEvent::Cancelled);
                self.finish(pending).await
            }
            StopReason::Shutdown => {
                pending.push(TaskEvent::LeaseReleased);
                match self.finish(pending).await {
                    Outcome::Retried => Outcome::Released,
                    other => other,
                }
            }
        }
    }
}

fn abandon(err: &StoreError) -> Outcome {
    if err.is_lease_lost() {
        warn!(error = %err, "write refused: the lease is no longer ours");
    } else {
        warn!(error = %err, "write failed; the task is left to its lease expiry");
    }
    Outcome::LeaseLost
}
