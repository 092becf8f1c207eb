//! The no-op four-step workload of the PostgreSQL benches, shared by `pg_workers.rs` and
//! `compare/underway`: a pipeline whose steps do nothing, a runner of 64 slots, and the
//! catalog items and tasks to create.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use task_core::prelude::*;
use task_runner::step::{ProductSettings, StepContext, StepOutput, TaskStep};
use task_runner::{Pipeline, RunnerConfig};

/// Runner slots and claim batch.
pub const SLOTS: usize = 64;

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

pub fn product() -> ProductName {
    ProductName::new("adbreaks").expect("a valid product")
}

pub fn tenant() -> TenantId {
    TenantId::new("bench").expect("a valid tenant")
}

/// Four no-op steps, the last the product's analyzer.
pub fn pipeline() -> Pipeline {
    Pipeline::new(
        Arc::new(Noop(Step::S3Check)),
        Arc::new(Noop(Step::Probe)),
        Arc::new(Noop(Step::LengthGate)),
    )
    .and_then(|p| p.with_analyzer(product(), Arc::new(Noop(Step::Analyze))))
    .expect("a valid pipeline")
}

/// A runner of [`SLOTS`] slots named `name`, claiming up to [`SLOTS`] at once.
pub fn runner_config(name: &str) -> RunnerConfig {
    let mut settings = ProductSettings::new(product());
    settings.concurrency = SLOTS;
    let worker = WorkerId::new(name).expect("a valid worker id");
    let mut config = RunnerConfig::new(worker).with_product(settings);
    config.concurrency = SLOTS;
    config.claim_batch = SLOTS;
    config.lease = Duration::from_secs(30);
    config
}

/// Upserts `count` catalog items; the tasks to create for them, priorities in turn.
pub async fn ingest<S: Store + ?Sized>(store: &S, count: usize) -> Vec<NewTask> {
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let inventory_id = InventoryId::new(format!("asset-{i:07}")).expect("a valid id");
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
            .expect("an item upsert");
        let key = TaskKey {
            tenant: tenant(),
            inventory_id,
            product: product(),
            version: Version::new("1").expect("a valid version"),
        };
        tasks.push(NewTask {
            key,
            priority: Priority::ALL[i % 3],
        });
    }
    tasks
}

/// The value at quantile `p` of `sorted`.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
