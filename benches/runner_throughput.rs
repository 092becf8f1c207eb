//! End-to-end runner throughput through the sled store with durable commits.
//!
//! Tasks whose four steps do nothing, 64 workers: tasks per second and the p50/p99 time from
//! create to done, plus the cancel-to-cancelled latency of a running step. Prints its figures.
//! `cargo bench --bench runner_throughput [-- TASKS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use media_task_engine::core::prelude::*;
use media_task_engine::runner::step::{ProductSettings, StepContext, StepOutput, TaskStep};
use media_task_engine::runner::{Pipeline, Runner, RunnerConfig};
use media_task_engine::sled::SledStore;

struct Noop(Step);

#[async_trait]
impl TaskStep for Noop {
    fn step(&self) -> Step {
        self.0
    }
    async fn run(&self, _ctx: &StepContext) -> Result<StepOutput, TaskError> {
        StepOutput::new(&serde_json::json!({}))
    }
}

struct Hang;

#[async_trait]
impl TaskStep for Hang {
    fn step(&self) -> Step {
        Step::Analyze
    }
    async fn run(&self, _ctx: &StepContext) -> Result<StepOutput, TaskError> {
        std::future::pending().await
    }
}

fn pipeline(analyze: Arc<dyn TaskStep>) -> Pipeline {
    Pipeline::new(
        Arc::new(Noop(Step::S3Check)),
        Arc::new(Noop(Step::Probe)),
        Arc::new(Noop(Step::LengthGate)),
    )
    .and_then(|p| p.with_analyzer(product(), analyze))
    .expect("valid pipeline")
}

fn product() -> ProductName {
    ProductName::new("adbreaks").expect("valid product")
}

fn tenant() -> TenantId {
    TenantId::new("bench").expect("valid tenant")
}

fn config(workers: usize) -> RunnerConfig {
    let mut settings = ProductSettings::new(product());
    settings.concurrency = workers;
    let mut config =
        RunnerConfig::new(WorkerId::new("bench-runner").expect("valid")).with_product(settings);
    config.concurrency = workers;
    config.claim_batch = workers;
    config.lease = Duration::from_secs(30);
    config
}

async fn ingest(store: &SledStore, count: usize) -> Vec<NewTask> {
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

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn throughput(tasks: usize, workers: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(dir.path()).expect("open"));
    let batch = ingest(&store, tasks).await;
    let runner = Runner::start(
        store.clone(),
        pipeline(Arc::new(Noop(Step::Analyze))),
        config(workers),
    )
    .expect("runner");
    let started = Instant::now();
    let commits_before = store.commit_stats();
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
    let commits = store.commit_stats().since(&commits_before);
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
    println!(
        "runner end-to-end, sled strict durability, {workers} workers: {tasks} tasks in {:.2} s = {rate:.0} tasks/s; create->done p50 {} ms, p99 {} ms; {:.1} writes per fsync; claimed {}",
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        commits.writes_per_flush(),
        metrics.claimed,
    );
}

async fn cancel_latency(rounds: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(dir.path()).expect("open"));
    let batch = ingest(&store, rounds).await;
    let runner = Runner::start(store.clone(), pipeline(Arc::new(Hang)), config(4)).expect("runner");
    let mut latencies = Vec::with_capacity(rounds);
    for new in batch {
        let task = store.create_task(new).await.expect("create").task;
        media_task_engine::runner::wait_for(&*store, &tenant(), task.id, |t| {
            t.current_step() == Some(Step::Analyze)
        })
        .await
        .expect("reaches analyze");
        let asked = Instant::now();
        store
            .request_cancel(&tenant(), task.id)
            .await
            .expect("cancel");
        let ended = media_task_engine::runner::wait_until_finished(&*store, &tenant(), task.id)
            .await
            .expect("ends");
        assert_eq!(ended.status(), Status::Cancelled);
        latencies.push(asked.elapsed().as_micros() as u64);
    }
    runner
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    latencies.sort_unstable();
    println!(
        "cancel of a running step -> cancelled (durable): p50 {:.2} ms, p99 {:.2} ms over {rounds} rounds",
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
    );
}

fn main() {
    let tasks = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        throughput(tasks, 64).await;
        cancel_latency(50).await;
    });
}
