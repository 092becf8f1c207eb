//! The same no-op workload through our runner (sled, an fsync per commit) and through
//! effectum 0.7 (SQLite with synchronous=normal), in one run: jobs per second and the ratios.
//! effectum runs it twice: plain no-op jobs (claim and complete), and jobs that checkpoint
//! after each of their first three steps, as our four-step tasks do before they finish.
//!
//! `cargo run --release --manifest-path compare/effectum/Cargo.toml [-- JOBS CONCURRENCY]`

#[path = "../../../benches/support/noop_pipeline.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};

#[derive(Debug)]
struct Context {
    done: AtomicUsize,
    checkpoints: usize,
}

async fn noop_job(job: RunningJob, context: Arc<Context>) -> Result<(), effectum::Error> {
    for step in 0..context.checkpoints {
        job.checkpoint_json(step).await?;
    }
    context.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn effectum_rate(jobs: usize, concurrency: u16, checkpoints: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::new(&dir.path().join("effectum.db")).await.expect("queue");
    let done = Arc::new(Context {
        done: AtomicUsize::new(0),
        checkpoints,
    });
    let runner = JobRunner::builder("noop", noop_job).build();
    let worker = Worker::builder(&queue, done.clone())
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
    while done.done.load(Ordering::Relaxed) < jobs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    // Inside the runtime: effectum's pools panic when dropped outside one.
    worker
        .unregister(Some(Duration::from_secs(5)))
        .await
        .expect("unregister");
    queue.close(Duration::from_secs(5)).await.expect("close");
    println!(
        "effectum 0.7 (SQLite, synchronous=normal), concurrency {concurrency}, {checkpoints} checkpoints per job: {jobs} jobs, {rate:.0} jobs/s"
    );
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
    let in_memory = support::throughput_memory(jobs, concurrency).await;
    let slots = u16::try_from(concurrency).unwrap_or(u16::MAX);
    let plain = effectum_rate(jobs, slots, 0).await;
    let checkpointed = effectum_rate(jobs, slots, 3).await;
    for (name, theirs) in [("plain", plain), ("3 checkpoints", checkpointed)] {
        println!("ratio ours (strict, fsync per commit) / effectum {name}: {:.2}x", strict / theirs);
        println!("ratio ours (buffered, flush every 50 ms) / effectum {name}: {:.2}x", buffered / theirs);
        println!("ratio ours (in-memory store) / effectum {name}: {:.2}x", in_memory / theirs);
    }
}
