//! End-to-end runner throughput through the sled store with durable commits.
//!
//! Tasks whose four steps do nothing, 64 workers: tasks per second and the p50/p99 time from
//! create to done with strict durability, then the same with buffered durability and over the
//! in-memory store (the runner's own ceiling), plus the cancel-to-cancelled latency of a
//! running step. Prints its figures. `--recorder` measures what metrics cost instead: the same
//! runs with recording off and on (the Prometheus recorder installed), as a ratio.
//! `cargo bench --bench runner_throughput [-- TASKS] [--strict-only | --memory-only | --recorder]`

#[path = "support/noop_pipeline.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use media_task_engine::core::prelude::*;
use media_task_engine::core::telemetry;
use media_task_engine::runner::Runner;
use media_task_engine::sled::Durability;
use media_task_engine::sled::SledStore;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use support::{
    Hang, config, ingest, percentile, pipeline, tenant, throughput, throughput_memory,
    throughput_with,
};

/// Throughput over the memory store (the runner's own cost, where recording weighs most) and
/// over sled (strict) with the Prometheus recorder installed, recording off (what a library
/// user without metrics runs: one relaxed load per would-be record) and on, in alternation
/// after a warm-up run; best of three each.
async fn recorder_cost(tasks: usize) {
    let mut builder = PrometheusBuilder::new();
    for metric in telemetry::ALL.iter().filter(|m| !m.buckets.is_empty()) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), metric.buckets)
            .expect("buckets");
    }
    let handle = builder.install_recorder().expect("recorder");
    throughput_memory(tasks, 64).await;
    let mut best = [[0.0f64; 2]; 2];
    for _ in 0..3 {
        for (on, best) in best.iter_mut().enumerate() {
            if on == 1 {
                telemetry::enable();
            } else {
                telemetry::disable();
            }
            best[0] = best[0].max(throughput_memory(tasks, 64).await);
            best[1] = best[1].max(throughput(tasks, 64).await);
        }
    }
    assert!(
        handle.render().contains("taskd_tasks_finished_total"),
        "recorded"
    );
    let [[memory_off, sled_off], [memory_on, sled_on]] = best;
    println!(
        "metrics recorder cost: tasks/s recording / not: in-memory store {memory_on:.0} / {memory_off:.0} = {:.3}, sled strict {sled_on:.0} / {sled_off:.0} = {:.3}",
        memory_on / memory_off,
        sled_on / sled_off,
    );
}

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
        if only("--recorder") {
            recorder_cost(tasks).await;
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
