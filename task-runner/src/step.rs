//! The step interface: what the media steps (and tests) implement.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use task_core::catalog::CatalogItem;
use task_core::error::TaskError;
use task_core::ids::{ProductName, TaskId};
use task_core::store::Store;
use task_core::task::{Step, Task};

/// How one product runs: its limits and its analysis settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductSettings {
    /// The product.
    pub name: ProductName,
    /// Assets shorter than this fail the length gate.
    pub min_duration: Duration,
    /// How long one step may run before it fails as `step_timeout`.
    pub step_timeout: Duration,
    /// Attempts before a retryable failure becomes `attempts_exhausted`.
    pub max_attempts: u32,
    /// How many tasks of this product may run at once, across every runner sharing the store
    /// (the claim passes it as a [`ClaimRequest::product_limits`](task_core::store::ClaimRequest::product_limits) entry).
    pub concurrency: usize,
    /// Back-off between its attempts (None: the runner's [`RunnerConfig::retry`]).
    ///
    /// [`RunnerConfig::retry`]: crate::config::RunnerConfig::retry
    pub retry: Option<crate::config::RetryPolicy>,
}

impl ProductSettings {
    /// Settings with the engine defaults: no minimum length, 10-minute step timeout, 10 attempts
    /// (with the default back-off they span 4-8 minutes, longer than a short storage outage),
    /// 4 concurrent tasks, the runner's back-off.
    pub fn new(name: ProductName) -> Self {
        Self {
            name,
            min_duration: Duration::ZERO,
            step_timeout: Duration::from_secs(600),
            max_attempts: 10,
            concurrency: 4,
            retry: None,
        }
    }
}

/// Everything a running step may look at or use.
#[derive(Clone)]
pub struct StepContext {
    /// The task as it was when the step started, with the checkpoints of earlier steps.
    pub task: Task,
    /// The catalog item the task analyses (its `asset_url` says where the video is).
    pub item: CatalogItem,
    /// The product's settings.
    pub product: Arc<ProductSettings>,
    /// Tripped when the task is cancelled, its lease is lost, its timeout passes or the runner
    /// shuts down. A step selects on it and stops promptly, cleaning up what it started.
    pub cancel: CancellationToken,
    /// The store, for results and the step cache.
    pub store: Arc<dyn Store>,
}

impl fmt::Debug for StepContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("task", &self.task.id)
            .field("item", &self.item.item.inventory_id)
            .field("product", &self.product.name)
            .finish_non_exhaustive()
    }
}

impl StepContext {
    /// The typed output of an earlier step, from its checkpoint.
    pub fn output<T: DeserializeOwned>(&self, step: Step) -> Result<T, TaskError> {
        let checkpoint = self
            .task
            .checkpoint(step)
            .ok_or_else(|| TaskError::Internal {
                message: format!("task {}: step {step} has no checkpoint", self.task.id),
            })?;
        serde_json::from_value(checkpoint.output.clone()).map_err(|e| TaskError::Internal {
            message: format!(
                "task {}: checkpoint of {step} is unreadable: {e}",
                self.task.id
            ),
        })
    }
}

/// What a step produced: its serialized output, and whether it was reused rather than computed;
/// or the tasks it must wait for before it can finish.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// The output, saved as the step's checkpoint.
    pub value: serde_json::Value,
    /// True when the output came from the step cache (shown in the task history).
    pub reused: bool,
    /// When not empty, the step has not finished: the task goes back to pending without a
    /// checkpoint, holds no worker while these tasks run, and the step runs again once all of
    /// them have ended (`value` is then ignored). See [`StepOutput::waiting_for`].
    pub wait_for: Vec<TaskId>,
}

impl StepOutput {
    /// A freshly computed output.
    pub fn new<T: Serialize>(output: &T) -> Result<Self, TaskError> {
        Self::with_reuse(output, false)
    }

    /// An output, saying whether it was reused.
    pub fn with_reuse<T: Serialize>(output: &T, reused: bool) -> Result<Self, TaskError> {
        let value = serde_json::to_value(output).map_err(|e| TaskError::Internal {
            message: format!("step output cannot be serialized: {e}"),
        })?;
        Ok(Self {
            value,
            reused,
            wait_for: Vec::new(),
        })
    }

    /// The step cannot finish before `tasks` (1 to 1,000 distinct tasks of the same tenant,
    /// typically ones it just created) have ended. The runner parks the task durably in the
    /// store ([`TaskEvent::WaitingFor`](task_core::machine::TaskEvent::WaitingFor)): it holds
    /// no slot, survives restarts, and is claimed again, running this step from its start,
    /// once every one of them is done, failed or cancelled. Cancelling the waiting task leaves
    /// the awaited tasks running.
    pub fn waiting_for(tasks: Vec<TaskId>) -> Self {
        Self {
            value: serde_json::Value::Null,
            reused: false,
            wait_for: tasks,
        }
    }
}

/// One step of the pipeline. Implementations must stop promptly when `ctx.cancel` trips (their
/// future may also simply be dropped), and say by the error's type whether a retry may help.
#[async_trait]
pub trait TaskStep: Send + Sync + 'static {
    /// Which step this is.
    fn step(&self) -> Step;

    /// Runs the step for `ctx.task`.
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError>;
}
