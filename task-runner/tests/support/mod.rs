//! Scripted steps and helpers for runner tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use task_core::prelude::*;
use task_runner::step::{ProductSettings, StepContext, StepOutput, TaskStep};
use task_runner::{Pipeline, RetryPolicy, RunnerConfig};
use tokio::sync::Semaphore;

/// What a scripted step does on each call.
#[derive(Clone)]
pub enum Behaviour {
    /// Succeeds at once.
    Succeed,
    /// Fails with the error for the first `times` calls, then succeeds.
    FailTimes(usize, TaskError),
    /// Never completes (until its future is dropped).
    Hang,
    /// Waits for a permit of the gate, then succeeds.
    Gate(Arc<Semaphore>),
    /// Starts `sleep 1000` as a child process killed on drop, records its pid, and waits on it.
    Child(Arc<Mutex<Vec<u32>>>),
    /// Panics for the task of this inventory id, succeeds for every other.
    PanicFor(String),
}

/// A step whose behaviour, call count and observed concurrency tests can read.
pub struct Scripted {
    pub step: Step,
    pub behaviour: Behaviour,
    pub calls: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub peak: AtomicUsize,
    pub order: Mutex<Vec<String>>,
    /// Notified (one stored permit) each time the step starts, for tests that wait for a call.
    pub entered: tokio::sync::Notify,
}

impl Scripted {
    pub fn new(step: Step, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            step,
            behaviour,
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            order: Mutex::new(Vec::new()),
            entered: tokio::sync::Notify::new(),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn order(&self) -> Vec<String> {
        self.order.lock().unwrap().clone()
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl TaskStep for Scripted {
    fn step(&self) -> Step {
        self.step
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(&self.in_flight);
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.order
            .lock()
            .unwrap()
            .push(ctx.task.key.inventory_id.to_string());
        self.entered.notify_one();
        match &self.behaviour {
            Behaviour::Succeed => {}
            Behaviour::FailTimes(times, error) if call < *times => return Err(error.clone()),
            Behaviour::FailTimes(..) => {}
            Behaviour::Hang => std::future::pending::<()>().await,
            Behaviour::Gate(gate) => gate.acquire().await.unwrap().forget(),
            Behaviour::PanicFor(poison) if ctx.task.key.inventory_id.as_str() == poison => {
                panic!("bucket name {poison:?} is not valid")
            }
            Behaviour::PanicFor(_) => {}
            Behaviour::Child(pids) => {
                let mut child = tokio::process::Command::new("sleep")
                    .arg("1000")
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| TaskError::Internal {
                        message: e.to_string(),
                    })?;
                pids.lock().unwrap().push(child.id().unwrap_or_default());
                let _ = child.wait().await;
            }
        }
        StepOutput::new(&serde_json::json!({ "step": self.step.as_str(), "call": call }))
    }
}

/// The four steps of a test pipeline.
pub struct Steps {
    pub s3_check: Arc<Scripted>,
    pub probe: Arc<Scripted>,
    pub length_gate: Arc<Scripted>,
    pub analyze: Arc<Scripted>,
}

impl Steps {
    pub fn all_succeed() -> Self {
        Self::with_analyze(Behaviour::Succeed)
    }

    pub fn with_analyze(behaviour: Behaviour) -> Self {
        Self {
            s3_check: Scripted::new(Step::S3Check, Behaviour::Succeed),
            probe: Scripted::new(Step::Probe, Behaviour::Succeed),
            length_gate: Scripted::new(Step::LengthGate, Behaviour::Succeed),
            analyze: Scripted::new(Step::Analyze, behaviour),
        }
    }

    /// A pipeline with these steps and `analyze` for every product in `products`.
    pub fn pipeline(&self, products: &[&str]) -> Pipeline {
        let mut pipeline = Pipeline::new(
            self.s3_check.clone(),
            self.probe.clone(),
            self.length_gate.clone(),
        )
        .unwrap();
        for product in products {
            pipeline = pipeline
                .with_analyzer(ProductName::new(*product).unwrap(), self.analyze.clone())
                .unwrap();
        }
        pipeline
    }
}

pub fn settings(product: &str) -> ProductSettings {
    ProductSettings {
        max_attempts: 5,
        step_timeout: Duration::from_secs(60),
        concurrency: 64,
        ..ProductSettings::new(ProductName::new(product).unwrap())
    }
}

/// A runner configuration for tests: fast retries, short leases.
pub fn config(worker: &str, products: &[&str]) -> RunnerConfig {
    let mut config = RunnerConfig::new(WorkerId::new(worker).unwrap());
    config.retry = RetryPolicy {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    config.lease = Duration::from_millis(600);
    config.poll_interval = Duration::from_millis(200);
    for product in products {
        config = config.with_product(settings(product));
    }
    config
}

pub fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

/// Ingests `inventory` and creates a task for it.
pub async fn submit<S: Store>(
    store: &S,
    inventory: &str,
    product: &str,
    priority: Priority,
) -> Task {
    let inventory_id = InventoryId::new(inventory).unwrap();
    store
        .upsert_item(ItemUpsert {
            tenant: tenant(),
            inventory_id: inventory_id.clone(),
            item_type: ItemType::Standalone,
            title: inventory.into(),
            asset_url: format!("memory:///{inventory}.mp4"),
            tags: vec![],
            extra: Default::default(),
            parent_id: None,
        })
        .await
        .unwrap();
    let key = TaskKey {
        tenant: tenant(),
        inventory_id,
        product: ProductName::new(product).unwrap(),
        version: Version::new("1").unwrap(),
    };
    store
        .create_task(NewTask { key, priority })
        .await
        .unwrap()
        .task
}

/// Waits (on change notifications) until the task is in `step` of a processing run.
pub async fn wait_for_step<S: Store>(store: &S, id: TaskId, step: Step) -> Task {
    task_runner::wait_for(store, &tenant(), id, |t| t.current_step() == Some(step))
        .await
        .unwrap()
}

pub async fn finished<S: Store>(store: &S, id: TaskId) -> Task {
    tokio::time::timeout(
        Duration::from_secs(60),
        task_runner::wait_until_finished(store, &tenant(), id),
    )
    .await
    .expect("the task finishes within a minute")
    .unwrap()
}

/// Whether a process is gone or a zombie (dead, not yet reaped).
pub fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}
