//! A no-op pipeline over the sled store, shared by the runner benchmarks.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use media_task_engine::core::memory::MemoryStore;
use media_task_engine::core::prelude::*;
use media_task_engine::runner::step::{ProductSettings, StepContext, StepOutput, TaskStep};
use media_task_engine::runner::{Pipeline, Runner, RunnerConfig};
use media_task_engine::sled::{Durability, SledOptions, SledStore};

/// A step that does nothing.
pub struct Noop(pub Step);

#[async_trait]
impl TaskStep for Noop {
    fn step(&self) -> Step {
        self.0
    }
    async fn run(&self, _ctx: &StepContext) -> Result<StepOutput, TaskError> {
        StepOutput::new(&serde_json::json!({}))
    }
}

/// A step that never ends.
pub struct Hang;

#[async_trait]
impl TaskStep for Hang {
    fn step(&self) -> Step {
        Step::Analyze
    }
    async fn run(&self, _ctx: &StepContext) -> Result<StepOutput, TaskError> {
        std::future::pending().await
    }
}

pub fn pipeline(analyze: Arc<dyn TaskStep>) -> Pipeline {
    Pipeline::new(
        Arc::new(Noop(Step::S3Check)),
        Arc::new(Noop(Step::Probe)),
        Arc::new(Noop(Step::LengthGate)),
    )
    .and_then(|p| p.with_analyzer(product(), analyze))
    .expect("valid pipeline")
}

pub fn product() -> ProductName {
    ProductName::new("adbreaks").expect("valid product")
}

pub fn tenant() -> TenantId {
    TenantId::new("bench").expect("valid tenant")
}

pub fn config(workers: usize) -> RunnerConfig {
    let mut settings = ProductSettings::new(product());
    settings.concurrency = workers;
    let mut config =
        RunnerConfig::new(WorkerId::new("bench-runner").expect("valid")).with_product(settings);
    config.concurrency = workers;
    config.claim_batch = workers;
    config.lease = Duration::from_secs(30);
    config
}

pub async fn ingest<S: Store + ?Sized>(store: &S, count: usize) -> Vec<NewTask> {
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let inventory_id = InventoryId::new(format!("asset-{i:07}")).expect("valid");
        store
            .upsert_item(ItemUpsert {
                tenant: tenant(),
                inventory_id: inventory_id.clone(),
                item_type: ItemType::Standalone,
                title: format!("asset {i}"),
                asset_url: format!("memory:///asset-{i}.mp4"),
                tags: vec![],
                extra: Default::default(),
                parent_id: None,
            })
            .await
            .expect("ingest");
        tasks.push(NewTask {
            key: TaskKey {
                tenant: tenant(),
                inventory_id,
                product: product(),
                version: Version::new("1").expect("valid"),
            },
            priority: Priority::ALL[i % 3],
        });
    }
    tasks
}

pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs `tasks` no-op tasks through a runner with `workers` slots over a store with strict
/// durability (an fsync before every acknowledgement); prints and returns tasks/s.
pub async fn throughput(tasks: usize, workers: usize) -> f64 {
    throughput_with(tasks, workers, Durability::Strict).await
}

/// [`throughput`] with the given durability.
pub async fn throughput_with(tasks: usize, workers: usize, durability: Durability) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SledOptions::default().with_durability(durability);
    let store = Arc::new(SledStore::open_with(dir.path(), options).expect("open"));
    let batch = ingest(&*store, tasks).await;
    let commits_before = store.commit_stats();
    let run = run_through(store.clone(), batch, workers).await;
    let commits = store.commit_stats().since(&commits_before);
    println!(
        "runner end-to-end, sled {durability:?}, {workers} workers: {}; {:.1} writes per fsync, {:.0} journal bytes per task",
        run.summary,
        commits.writes_per_flush(),
        commits.journal_bytes as f64 / tasks as f64,
    );
    run.rate
}

/// The runner alone: the same workload over task-core's in-memory store (no disk, no
/// serialization), the ceiling the runner itself allows.
pub async fn throughput_memory(tasks: usize, workers: usize) -> f64 {
    let store = Arc::new(MemoryStore::default());
    let batch = ingest(&*store, tasks).await;
    let run = run_through(store, batch, workers).await;
    println!(
        "runner end-to-end, in-memory store, {workers} workers: {}",
        run.summary
    );
    run.rate
}

/// One measured run.
pub struct Run {
    /// Tasks per second.
    pub rate: f64,
    /// Rate, latencies and claims, printable.
    pub summary: String,
}

/// Creates the `batch` of no-op tasks in chunks of 64 while a runner with `workers` slots runs
/// them.
pub async fn run_through<S: Store + 'static>(
    store: Arc<S>,
    batch: Vec<NewTask>,
    workers: usize,
) -> Run {
    let tasks = batch.len();
    let runner = Runner::start(
        store.clone(),
        pipeline(Arc::new(Noop(Step::Analyze))),
        config(workers),
    )
    .expect("runner");
    let started = Instant::now();
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(batch.len());
            for chunk in batch.chunks(64) {
                let made = store.create_tasks(chunk.to_vec()).await.expect("create");
                ids.extend(made.into_iter().map(|o| o.task.id));
            }
            ids
        })
    };
    let ids = producer.await.expect("producer");
    while runner.metrics().done < tasks as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let metrics = runner
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    let mut latencies = Vec::with_capacity(ids.len());
    for id in ids {
        let task = store
            .get_task(&tenant(), id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(task.status(), Status::Done);
        let finished = task.finished_at.expect("finished");
        latencies.push(finished.since(task.created_at).as_millis() as u64);
    }
    latencies.sort_unstable();
    let rate = tasks as f64 / elapsed.as_secs_f64();
    Run {
        rate,
        summary: format!(
            "{tasks} tasks in {:.2} s = {rate:.0} tasks/s; create->done p50 {} ms, p99 {} ms; claimed {}",
            elapsed.as_secs_f64(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            metrics.claimed,
        ),
    }
}
