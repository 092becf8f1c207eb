//! Tasks per second of four no-op steps on PostgreSQL with 1, 2 and 3 worker processes, beside
//! sled with strict durability on the same workload in this process, in one run; then the time
//! from a create on an API node to the `done` event on its `/task/{id}/events` stream, the
//! task run by a worker process. Prints its figures (BENCHMARKS.md, "PostgreSQL and several
//! processes").
//!
//! `scripts/postgres.sh cargo bench -p taskd --bench pg_workers [-- TASKS [SSE_SAMPLES]]`
//! (defaults 5000 and 200). Each worker process is this binary again, started with
//! `PG_BENCH_WORKER_SCHEMA` set: a runner with 64 slots over its own store instance.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use task_core::prelude::*;
use task_http::{ServiceConfig, TaskApi};
use task_runner::Runner;
use task_store_postgres::{PostgresOptions, PostgresStore};
use task_store_sled::SledStore;

#[path = "support/noop.rs"]
mod noop;

use noop::{SLOTS, ingest, percentile, pipeline, product, runner_config, tenant};

const KEY: &str = "bench-key-0123";

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn open_pg(schema: &str) -> PostgresStore {
    let options = PostgresOptions::new(&database_url())
        .unwrap()
        .with_schema(schema);
    PostgresStore::open_with(options).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {}: {e} (run through scripts/postgres.sh)",
            database_url()
        )
    })
}

/// Worker mode: a runner over the schema until stdin closes, then a graceful stop.
async fn worker(schema: String) {
    let store = Arc::new(open_pg(&schema).await);
    let name = format!("bench-worker-{}", std::process::id());
    let runner = Runner::start(store, pipeline(), runner_config(&name)).unwrap();
    println!("ready");
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
        .await
        .unwrap()
        .unwrap();
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Creates `batch` in chunks of 64, waits until `done()` counts them all; tasks per second and
/// the create-to-done p50/p99 from the tasks' own times.
async fn run<S: Store + ?Sized, F, Fut>(store: &S, batch: Vec<NewTask>, done: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let tasks = batch.len();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks);
    for chunk in batch.chunks(64) {
        let made = store.create_tasks(chunk.to_vec()).await.unwrap();
        ids.extend(made.into_iter().map(|o| o.task.id));
    }
    while done().await < tasks as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(tasks);
    for id in ids {
        let task = store.get_task(&tenant(), id).await.unwrap().unwrap();
        assert_eq!(task.status(), Status::Done);
        latencies.push(task.finished_at.unwrap().since(task.created_at).as_millis() as u64);
    }
    latencies.sort_unstable();
    format!(
        "{tasks} tasks in {:.2} s = {:.0} tasks/s; create->done p50 {} ms, p99 {} ms",
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    )
}

/// `n` worker processes on `schema`, each ready.
fn spawn_workers(schema: &str, n: usize) -> Vec<Child> {
    (0..n)
        .map(|_| {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .env("PG_BENCH_WORKER_SCHEMA", schema)
                .env("DATABASE_URL", database_url())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready");
            child
        })
        .collect()
}

fn stop_workers(workers: Vec<Child>) {
    for mut child in workers {
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
}

async fn drop_schema(schema: &str) {
    let mut conn = sqlx::PgConnection::connect(&database_url()).await.unwrap();
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn postgres_round(tasks: usize, processes: usize) {
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let store = open_pg(&schema).await;
    let batch = ingest(&store, tasks).await;
    let workers = spawn_workers(&schema, processes);
    let pool = store.pool().clone();
    let pool = &pool;
    let summary = run(&store, batch, move || async move {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = 'done'")
            .fetch_one(pool)
            .await
            .unwrap();
        done as u64
    })
    .await;
    println!("PostgreSQL, {processes} worker process(es) x {SLOTS} slots: {summary}");
    stop_workers(workers);
    drop(store);
    drop_schema(&schema).await;
}

async fn sled_round(tasks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let batch = ingest(&*store, tasks).await;
    let runner = Runner::start(store.clone(), pipeline(), runner_config("bench-sled")).unwrap();
    let metrics = &runner;
    let summary = run(
        &*store,
        batch,
        move || async move { metrics.metrics().done },
    )
    .await;
    println!("sled strict, one process x {SLOTS} slots: {summary}");
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// An API node in this process, one worker process; POST /task then the event stream until
/// `done`, one task at a time.
async fn sse_round(samples: usize) {
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let store = Arc::new(open_pg(&schema).await);
    let batch = ingest(&*store, samples).await;
    let config = ServiceConfig::new()
        .with_api_key(KEY, tenant())
        .with_product(product());
    let router = TaskApi::new(store.clone(), config).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let workers = spawn_workers(&schema, 1);
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(samples);
    for new in batch {
        let body = serde_json::json!({"inventory_id": new.key.inventory_id.as_str(), "product": "adbreaks", "version": "1"});
        let asked = Instant::now();
        let created: serde_json::Value = http
            .post(format!("{base}/task"))
            .header("X-API-Key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["task_id"].as_str().unwrap();
        let mut events = http
            .get(format!("{base}/task/{id}/events"))
            .header("X-API-Key", KEY)
            .send()
            .await
            .unwrap();
        let mut text = String::new();
        while !text.contains("\"status\":\"done\"") {
            let chunk = events
                .chunk()
                .await
                .unwrap()
                .expect("the stream ends after done");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        latencies.push(asked.elapsed().as_micros() as u64);
    }
    latencies.sort_unstable();
    println!(
        "SSE across processes, {samples} tasks one at a time: POST /task on the API node -> `done` on its event stream, run by a worker process: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0
    );
    stop_workers(workers);
    server.abort();
    drop(store);
    drop_schema(&schema).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(schema) = std::env::var("PG_BENCH_WORKER_SCHEMA") {
        return worker(schema).await;
    }
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tasks = numbers.first().copied().unwrap_or(5000);
    let samples = numbers.get(1).copied().unwrap_or(200);
    sled_round(tasks).await;
    for processes in 1..=3 {
        postgres_round(tasks, processes).await;
    }
    sled_round(tasks).await;
    sse_round(samples).await;
}
