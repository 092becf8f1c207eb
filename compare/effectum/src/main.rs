//! The same no-op workload through our runner (sled, an fsync per commit) and through
//! effectum 0.7 (SQLite with synchronous=normal), in one run: jobs per second and the ratio.
//!
//! `cargo run --release --manifest-path compare/effectum/Cargo.toml [-- JOBS CONCURRENCY]`

#[path = "../../../benches/support/noop_pipeline.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};

#[derive(Debug)]
struct Counter(AtomicUsize);

async fn noop_job(_job: RunningJob, done: Arc<Counter>) -> Result<(), std::io::Error> {
    done.0.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn effectum_rate(jobs: usize, concurrency: u16) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::new(&dir.path().join("effectum.db")).await.expect("queue");
    let done = Arc::new(Counter(AtomicUsize::new(0)));
    let runner = JobRunner::builder("noop", noop_job).build();
    let _worker = Worker::builder(&queue, done.clone())
        .max_concurrency(concurrency)
        .jobs([runner])
        .build()
        .await
        .expect("worker");
    let started = Instant::now();
    // Enqueued in batches of 64, as our producer does with create_tasks.
    let mut left = jobs;
    while left > 0 {
        let batch: Vec<Job> = (0..left.min(64)).map(|_| Job::builder("noop").build()).collect();
        left -= batch.len();
        queue.add_jobs(batch).await.expect("enqueue");
    }
    while done.0.load(Ordering::Relaxed) < jobs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    println!("effectum 0.7 (SQLite, synchronous=normal), concurrency {concurrency}: {jobs} jobs, {rate:.0} jobs/s");
    rate
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let jobs = args.next().unwrap_or(20_000);
    let concurrency = args.next().unwrap_or(64);
    let strict = support::throughput(jobs, concurrency).await;
    // effectum's SQLite runs synchronous=normal (no fsync per commit): compare at that level too.
    let buffered = support::throughput_with(
        jobs,
        concurrency,
        media_task_engine::sled::Durability::Buffered { interval: Duration::from_millis(50) },
    )
    .await;
    let theirs = effectum_rate(jobs, u16::try_from(concurrency).unwrap_or(u16::MAX)).await;
    println!("ratio ours (strict, fsync per commit) / effectum: {:.2}x", strict / theirs);
    println!("ratio ours (buffered, flush every 50 ms) / effectum: {:.2}x", buffered / theirs);
}
