//! The same multi-step workload through our runner on PostgreSQL and through underway 0.2
//! (durable step functions on PostgreSQL), on the same server, alternating, in one run.
//!
//! ```sh
//! scripts/postgres.sh cargo run --release --manifest-path compare/underway/Cargo.toml \
//!     [-- TASKS ROUNDS]
//! ```
//!
//! (defaults 5,000 tasks, 2 rounds). Use a database of its own (`DATABASE_URL`): underway
//! keeps its tables in schema `underway` and its migration records in
//! `public._sqlx_migrations`. Our tasks go to a fresh schema `pgbench_ours_*`, dropped after
//! the round; underway's to a fresh queue, deleted after its round.
//!
//! The workload is that of `taskd/benches/pg_workers.rs`: four no-op steps per task, each
//! durable before the next starts, tasks created in batches of 64 while 64 slots run them.
//! - **Ours:** a runner with 64 slots in this process over a `PostgresStore` (pool of 10
//!   connections), the same pipeline and settings as the bench's worker processes.
//! - **underway:** a job of four steps, each passing its input on, a worker with a
//!   concurrency limit of 64; each step is a task row of its own, committed with the next
//!   step's row in the step's transaction. Its pool is 10 connections as ours, then 40:
//!   underway holds a connection (its transaction) for as long as each step runs.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jiff::ToSpan;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use task_core::prelude::*;
use task_runner::Runner;
use task_store_postgres::{PostgresOptions, PostgresStore};
use underway::{Job, To};

#[path = "../../../taskd/benches/support/noop.rs"]
mod noop;

use noop::{SLOTS, ingest, percentile, pipeline, runner_config, tenant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Tasks per create batch (and per enqueue transaction).
const BATCH: usize = 64;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Transactions committed in this database so far (`pg_stat_database`; backends report
/// them at most about a second late, so a round's count is within a second's worth).
async fn commits() -> Result<i64, Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&database_url()).await?;
    let n = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(n)
}

/// What a round measured.
struct Measured {
    rate: f64,
    line: String,
    /// Commits in the database from the first create to the last task done.
    commits: i64,
    tasks: usize,
}

impl Measured {
    fn line(&self) -> String {
        format!(
            "{}; {:.1} commits per task",
            self.line,
            self.commits as f64 / self.tasks as f64
        )
    }
}

fn measured(
    name: &str,
    tasks: usize,
    elapsed: Duration,
    (p50, p99): (f64, f64),
    commits: i64,
) -> Measured {
    let rate = tasks as f64 / elapsed.as_secs_f64();
    Measured {
        rate,
        commits,
        tasks,
        line: format!(
            "{name}: {tasks} tasks in {:.2} s = {rate:.0} tasks/s; create->done p50 {p50:.0} ms, p99 {p99:.0} ms",
            elapsed.as_secs_f64()
        ),
    }
}

/// Our runner over a `PostgresStore` in a fresh schema, dropped afterwards.
async fn ours(tasks: usize) -> Result<Measured, Error> {
    let schema = format!("pgbench_ours_{}", uuid::Uuid::now_v7().simple());
    let options = PostgresOptions::new(&database_url())?.with_schema(&schema);
    let store = Arc::new(PostgresStore::open_with(options).await?);
    let result = ours_in(store.clone(), tasks).await;
    let pool = store.pool().clone();
    drop(store);
    sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await?;
    result
}

async fn ours_in(store: Arc<PostgresStore>, tasks: usize) -> Result<Measured, Error> {
    let batch = ingest(&*store, tasks).await;
    let runner = Runner::start(store.clone(), pipeline(), runner_config("compare-ours"))?;
    let before = commits().await?;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks);
    for chunk in batch.chunks(BATCH) {
        let made = store.create_tasks(chunk.to_vec()).await?;
        ids.extend(made.into_iter().map(|o| o.task.id));
    }
    while runner.metrics().done < tasks as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let committed = commits().await? - before;
    runner.shutdown(Duration::from_secs(5)).await?;
    let mut latencies = Vec::with_capacity(tasks);
    for id in ids {
        let task = store
            .get_task(&tenant(), id)
            .await?
            .ok_or("a created task is gone")?;
        if task.status() != Status::Done {
            return Err(format!("task {id} ended {:?}", task.status()).into());
        }
        let finished = task.finished_at.ok_or("a done task without finished_at")?;
        latencies.push(finished.since(task.created_at).as_millis() as u64);
    }
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.5) as f64;
    let p99 = percentile(&latencies, 0.99) as f64;
    let name = "ours, PostgresStore";
    Ok(measured(name, tasks, elapsed, (p50, p99), committed))
}

/// A four-step underway job on `queue`; the last step counts itself in `done`.
async fn job(pool: &PgPool, queue: &str, done: Arc<AtomicUsize>) -> Result<Job<u64, ()>, Error> {
    Ok(Job::builder()
        .step(|_cx, n: u64| async move { To::next(n) })
        .step(|_cx, n: u64| async move { To::next(n) })
        .step(|_cx, n: u64| async move { To::next(n) })
        .step(move |_cx, _n: u64| {
            let done = done.clone();
            async move {
                done.fetch_add(1, Ordering::Relaxed);
                To::done()
            }
        })
        .name(queue)
        .pool(pool.clone())
        .build()
        .await?)
}

/// underway with a pool of `connections`, on a fresh queue deleted afterwards.
async fn underway_round(tasks: usize, connections: u32) -> Result<Measured, Error> {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect(&database_url())
        .await?;
    underway::run_migrations(&pool).await?;
    let queue = format!("pgbench_noop_{}", uuid::Uuid::now_v7().simple());
    let result = underway_in(&pool, &queue, tasks, connections).await;
    for sql in [
        "DELETE FROM underway.task_attempt WHERE task_queue_name = $1",
        "DELETE FROM underway.task WHERE task_queue_name = $1",
        "DELETE FROM underway.task_queue WHERE name = $1",
    ] {
        sqlx::query(sql).bind(&queue).execute(&pool).await?;
    }
    sqlx::raw_sql("VACUUM underway.task, underway.task_attempt")
        .execute(&pool)
        .await?;
    result
}

async fn underway_in(
    pool: &PgPool,
    queue: &str,
    tasks: usize,
    connections: u32,
) -> Result<Measured, Error> {
    let done = Arc::new(AtomicUsize::new(0));
    let running = job(pool, queue, done.clone()).await?;
    // Enqueued through a job of its own: underway 0.2 shares the index of the step to run
    // between a job and its clones, advances it as steps run, and starts new jobs at it, so a
    // job enqueued through the running one would skip its first steps.
    let enqueuer = job(pool, queue, Arc::new(AtomicUsize::new(0))).await?;
    let mut worker = running.worker();
    worker.set_concurrency_limit(SLOTS);
    let stopper = worker.clone();
    let worker = tokio::spawn(async move { worker.run_every(1.second()).await });

    let before = commits().await?;
    let started = Instant::now();
    let inputs: Vec<u64> = (0..tasks as u64).collect();
    for chunk in inputs.chunks(BATCH) {
        let mut tx = pool.begin().await?;
        for n in chunk {
            enqueuer.enqueue_using(&mut *tx, n).await?;
        }
        tx.commit().await?;
    }
    // The last steps count themselves before their commit: then wait for the commits.
    while done.load(Ordering::Relaxed) < tasks {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let finished = "SELECT count(*) FROM underway.task
        WHERE task_queue_name = $1 AND state = 'succeeded'";
    loop {
        let succeeded: i64 = sqlx::query_scalar(finished)
            .bind(queue)
            .fetch_one(pool)
            .await?;
        if succeeded >= 4 * tasks as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let committed = commits().await? - before;
    stopper.shutdown();
    worker.await??;

    // Every job ran its four steps once: four task rows, step indexes 0 to 3.
    let (jobs, rows, steps): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT input->>'job_id'), count(*),
                count(DISTINCT (input->>'job_id', input->>'step_index'))
         FROM underway.task WHERE task_queue_name = $1",
    )
    .bind(queue)
    .fetch_one(pool)
    .await?;
    if jobs != tasks as i64 || rows != 4 * jobs || steps != rows {
        return Err(format!("underway ran {jobs} jobs, {rows} step rows, {steps} distinct").into());
    }
    let latency: (f64, f64) = sqlx::query_as(
        "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms),
                percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)
         FROM (SELECT extract(epoch FROM max(completed_at) - min(created_at))::float8 * 1000 AS ms
               FROM underway.task WHERE task_queue_name = $1
               GROUP BY input->>'job_id') AS d",
    )
    .bind(queue)
    .fetch_one(pool)
    .await?;
    let name = format!("underway 0.2, pool of {connections}");
    Ok(measured(&name, tasks, elapsed, latency, committed))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tasks = numbers.first().copied().unwrap_or(5000);
    let rounds = numbers.get(1).copied().unwrap_or(2);
    for round in 1..=rounds {
        let mine = ours(tasks).await?;
        println!("round {round}: {}", mine.line());
        for connections in [10, 40] {
            let theirs = underway_round(tasks, connections).await?;
            println!(
                "round {round}: {}; ours / underway = {:.2}x",
                theirs.line(),
                mine.rate / theirs.rate
            );
        }
    }
    Ok(())
}
