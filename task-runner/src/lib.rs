//! The runner: turns stored tasks into finished ones, durably.
//!
//! A [`Runner`] claims tasks from any [`Store`] (highest priority first, tenants taking turns
//! within a priority and FIFO within a tenant, with a guaranteed share for lower priorities, see
//! [`priority`]; each product's concurrency is a limit the store holds across every runner
//! sharing it), runs the pipeline
//! `s3_check -> probe -> length_gate -> analyze` from the first step without a checkpoint, and
//! records each step's output before the next starts.
//!
//! - **Leases with fencing.** Every claim carries a lease epoch that each write presents; a
//!   heartbeat extends the lease every third of its length while a step runs, so a long analysis
//!   is never taken away while alive, and a dead runner's tasks are free again within one lease.
//!   A runner that lost a lease is refused by the store and writes nothing more for that task.
//! - **Retries** for retryable errors only, with exponential back-off and jitter; the retry time
//!   is stored, so a restart does not retry early. When attempts run out the task fails with
//!   `attempts_exhausted` naming the last error. Permanent errors fail at once.
//! - **Timeouts** per step and product, failing the attempt as retryable `step_timeout`.
//! - **Cancellation**: a cancel request trips the task's [`CancellationToken`]; the running step's
//!   future is dropped (its child processes are killed) and the task ends `cancelled`.
//! - **Graceful shutdown**: [`RunnerHandle::shutdown`] stops claiming, lets running tasks go on
//!   until a deadline, then stops them and releases their leases for another runner.
//!   Dropping the handle without shutdown aborts everything at once, as a crash would.
//!
//! - **Few writes per task.** A claim also starts each task's first step (one write), and each
//!   later step transition goes to a per-runner write batcher that sends whatever accumulated
//!   while its previous call ran as one [`TaskStore::apply_many`]; every executor still gets
//!   its own entry's outcome, fencing errors included.
//!
//! Workers wake on the store's change notifications: with an empty queue the runner sleeps, and
//! a new task starts within milliseconds.
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use task_core::prelude::*;
//! use task_runner::{Pipeline, Runner, RunnerConfig};
//! use task_runner::step::{ProductSettings, StepContext, StepOutput, TaskStep};
//!
//! /// A step that does nothing but succeed.
//! struct Noop(Step);
//!
//! #[async_trait]
//! impl TaskStep for Noop {
//!     fn step(&self) -> Step { self.0 }
//!     async fn run(&self, _ctx: &StepContext) -> Result<StepOutput, TaskError> {
//!         StepOutput::new(&serde_json::json!({"ok": true}))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::default());
//! let product = ProductName::new("adbreaks")?;
//! let pipeline = Pipeline::new(Arc::new(Noop(Step::S3Check)), Arc::new(Noop(Step::Probe)),
//!     Arc::new(Noop(Step::LengthGate)))?
//!     .with_analyzer(product.clone(), Arc::new(Noop(Step::Analyze)))?;
//! let config = RunnerConfig::new(WorkerId::new("example")?)
//!     .with_product(ProductSettings::new(product.clone()));
//!
//! let tenant = TenantId::new("acme")?;
//! let inventory_id = InventoryId::new("movie-1")?;
//! store.upsert_item(ItemUpsert {
//!     tenant: tenant.clone(), inventory_id: inventory_id.clone(), item_type: ItemType::Standalone,
//!     title: "Movie".into(), asset_url: "memory:///movie.mp4".into(), tags: vec![],
//!     extra: Default::default(),
//!     parent_id: None,
//! }).await?;
//! let key = TaskKey { tenant: tenant.clone(), inventory_id, product, version: Version::new("1")? };
//! let task = store.create_task(NewTask { key, priority: Priority::High }).await?.task;
//!
//! let runner = Runner::start(store.clone(), pipeline, config)?;
//! let finished = task_runner::wait_until_finished(&*store, &tenant, task.id).await?;
//! assert_eq!(finished.status(), Status::Done);
//! runner.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod batcher;
mod config;
mod dispatcher;
mod error;
mod executor;
mod metrics;
mod pipeline;
pub mod priority;
pub mod step;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{RetryPolicy, RunnerConfig};
pub use error::RunnerError;
pub use metrics::{Metrics, MetricsSnapshot};
pub use pipeline::Pipeline;

use task_core::ids::{TaskId, TenantId};
use task_core::store::{Store, StoreError, TaskStore};
use task_core::task::Task;

use crate::batcher::WriteBatcher;
use crate::dispatcher::Control;
use crate::executor::Shared;

/// Builds runners.
#[derive(Debug)]
pub struct Runner;

impl Runner {
    /// Checks the configuration and starts a runner over `store` on the current tokio runtime.
    pub fn start<S: Store>(
        store: Arc<S>,
        pipeline: Pipeline,
        config: RunnerConfig,
    ) -> Result<RunnerHandle, RunnerError> {
        if config.concurrency == 0 {
            return Err(RunnerError::InvalidSetting {
                field: "concurrency",
                reason: "must be at least 1".into(),
            });
        }
        if config.claim_batch == 0 {
            return Err(RunnerError::InvalidSetting {
                field: "claim_batch",
                reason: "must be at least 1".into(),
            });
        }
        if config.lease < Duration::from_millis(30) {
            return Err(RunnerError::InvalidSetting {
                field: "lease",
                reason: format!(
                    "{:?} is too short to heartbeat; use at least 30 ms",
                    config.lease
                ),
            });
        }
        if let Some(product) = config.products.keys().find(|p| !pipeline.has_product(p)) {
            return Err(RunnerError::MissingAnalyzer(product.clone()));
        }
        let metrics = Arc::new(Metrics::default());
        let (writes, batcher) = WriteBatcher::start(store.clone());
        let shared = Arc::new(Shared {
            store,
            writes,
            pipeline,
            config,
            metrics: metrics.clone(),
            running: Mutex::new(HashMap::new()),
        });
        let shutdown = CancellationToken::new();
        let deadline = CancellationToken::new();
        let control = Control {
            shutdown: shutdown.clone(),
            deadline: deadline.clone(),
        };
        let dispatcher = tokio::spawn(dispatcher::run(shared, control));
        Ok(RunnerHandle {
            dispatcher,
            batcher,
            shutdown,
            deadline,
            metrics,
        })
    }
}

/// A running runner. Dropping it without [`shutdown`](RunnerHandle::shutdown) aborts every task
/// at once and writes nothing more, as a crash would; their leases then expire.
#[derive(Debug)]
pub struct RunnerHandle {
    dispatcher: JoinHandle<()>,
    /// Ends by itself once the dispatcher and its executors, which hold its queue, are gone.
    batcher: JoinHandle<()>,
    shutdown: CancellationToken,
    deadline: CancellationToken,
    metrics: Arc<Metrics>,
}

impl RunnerHandle {
    /// The counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Stops claiming, lets running tasks continue for up to `grace`, then stops them and
    /// releases their leases so another runner takes over at once.
    pub async fn shutdown(mut self, grace: Duration) -> Result<MetricsSnapshot, RunnerError> {
        self.shutdown.cancel();
        let deadline = self.deadline.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            deadline.cancel();
        });
        let joined = (&mut self.dispatcher).await;
        timer.abort();
        joined.map_err(|e| RunnerError::Dispatcher(e.to_string()))?;
        (&mut self.batcher)
            .await
            .map_err(|e| RunnerError::WriteBatcher(e.to_string()))?;
        Ok(self.metrics.snapshot())
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        // Queued writes are dropped too, as in a crash.
        self.dispatcher.abort();
        self.batcher.abort();
    }
}

/// Waits until task `id` of `tenant` has ended (done, failed or cancelled) and returns it.
/// Wakes on the store's change notifications, not by polling.
pub async fn wait_until_finished<S: TaskStore + ?Sized>(
    store: &S,
    tenant: &TenantId,
    id: TaskId,
) -> Result<Task, StoreError> {
    wait_for(store, tenant, id, |task| !task.status().is_active()).await
}

/// Waits until task `id` of `tenant` satisfies `done` and returns it.
pub async fn wait_for<S: TaskStore + ?Sized>(
    store: &S,
    tenant: &TenantId,
    id: TaskId,
    done: impl Fn(&Task) -> bool,
) -> Result<Task, StoreError> {
    let mut changes = store.subscribe();
    loop {
        let task = store
            .get_task(tenant, id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "task",
                id: id.to_string(),
            })?;
        if done(&task) {
            return Ok(task);
        }
        loop {
            match changes.recv().await {
                Ok(change) if change.task_id == id => break,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(StoreError::Conflict(
                        "the store's change stream closed".into(),
                    ));
                }
            }
        }
    }
}
