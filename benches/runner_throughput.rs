//! End-to-end runner throughput through the sled store with durable commits.
//!
//! Tasks whose four steps do nothing, 64 workers: tasks per second and the p50/p99 time from
//! create to done with strict durability, then the same with buffered durability and over the
//! in-memory store (the runner's own ceiling), plus the cancel-to-cancelled latency of a
//! running step. Prints its figures.
//! `cargo bench --bench runner_throughput [-- TASKS] [--strict-only | --memory-only]`

#[path = "support/noop_pipeline.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use media_task_engine::core::prelude::*;
use media_task_engine::runner::Runner;
use media_task_engine::sled::Durability;
use media_task_engine::sled::SledStore;
use support::{
    Hang, config, ingest, percentile, pipeline, tenant, throughput, throughput_memory,
    throughput_with,
};

async fn cancel_latency(rounds: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(dir.path()).expect("open"));
    let batch = ingest(&*store, rounds).await;
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
    let only = |flag: &str| std::env::args().any(|a| a == flag);
    runtime.block_on(async {
        if only("--strict-only") {
            throughput(tasks, 64).await;
            return;
        }
        if only("--memory-only") {
            throughput_memory(tasks, 64).await;
            return;
        }
        throughput(tasks, 64).await;
        throughput_with(
            tasks,
            64,
            Durability::Buffered {
                interval: Duration::from_millis(50),
            },
        )
        .await;
        throughput_memory(tasks, 64).await;
        cancel_latency(50).await;
    });
}
