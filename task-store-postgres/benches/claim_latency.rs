//! Claim latency with one tenant's backlog of 100,000 ready tasks, and another tenant's single
//! task taken by the next claim. A bench (not run by `cargo test`: 100,000 creates to set up):
//!
//! ```sh
//! scripts/postgres.sh cargo bench -p task-store-postgres --bench claim_latency
//! ```
//!
//! Prints the p50/p99 of: the claim statement of schema version 1 (one index scan in
//! (priority, ready-at, seq) order, no fairness, no product limits) and the fair statement of
//! version 2 (`sql/fair_ready.sql`), each run in a transaction rolled back; and whole claims
//! of 16 and of 1 through the store (requeue check, product locks, the statement, the write
//! and the commit).
#![allow(clippy::unwrap_used)] // a bench: a failed unwrap stops the measurement

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use task_core::ids::{Priority, ProductName};
use task_core::store::{ClaimRequest, NewTask, TaskStore};
use task_core::testing::{key, worker};
use task_core::time::{Clock, ManualClock};

const BACKLOG: usize = 100_000;
const RUNS: usize = 200;

/// The claim statement of schema version 1, for comparison.
const BEFORE: &str = "
WITH ready AS (
    SELECT id, seq, doc, priority_rank, ready_at FROM tasks
    WHERE status = 'pending' AND ready_at <= $1 AND product <> ALL($2::text[])
    ORDER BY priority_rank, ready_at, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
SELECT id, seq, doc::text FROM ready ORDER BY priority_rank, ready_at, seq";

const FAIR: &str = include_str!("../sql/fair_ready.sql");

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clock = ManualClock::default();
    let (store, _schema) = support::open(clock.clone());
    let started = Instant::now();
    let batch: Vec<NewTask> = (0..BACKLOG)
        .map(|i| NewTask {
            key: key("busy", &format!("item-{i}"), "adbreaks", "1"),
            priority: Priority::Medium,
        })
        .collect();
    for chunk in batch.chunks(5_000) {
        store.create_tasks(chunk.to_vec()).await.unwrap();
    }
    clock.advance(Duration::from_millis(1));
    let single = store
        .create_task(NewTask {
            key: key("quiet", "one", "adbreaks", "1"),
            priority: Priority::Medium,
        })
        .await
        .unwrap()
        .task;
    sqlx::query("ANALYZE tasks")
        .execute(store.pool())
        .await
        .unwrap();
    println!("created {BACKLOG} + 1 tasks in {:?}", started.elapsed());

    let product = ProductName::new("adbreaks").unwrap();
    let request = |max| ClaimRequest {
        max,
        ..ClaimRequest::one(worker("w"), Duration::from_secs(3600))
            .with_product_limit(product.clone(), 1_000_000)
    };
    // The quiet tenant's task is in the first claim of 2.
    let first = store.claim(&request(2)).await.unwrap();
    assert!(
        first.iter().any(|t| t.id == single.id),
        "the next claim takes the quiet tenant's task"
    );

    let now = clock.now().as_millis() as i64;
    let none: Vec<String> = Vec::new();
    for (name, sql) in [
        ("before (v1 statement)", BEFORE),
        ("after (fair statement)", FAIR),
    ] {
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let mut tx = store.pool().begin().await.unwrap();
            let started = Instant::now();
            // As the store runs each: the v1 statement prepared, the fair one unnamed (planned
            // with its parameters).
            let query = sqlx::query(sql)
                .persistent(sql != FAIR)
                .bind(now)
                .bind(&none)
                .bind(16i64);
            let query = if sql == FAIR {
                query
                    .bind(1i16)
                    .bind(vec!["adbreaks".to_owned()])
                    .bind(vec![1_000_000i64])
            } else {
                query
            };
            let rows = query.fetch_all(&mut *tx).await.unwrap();
            samples.push(started.elapsed());
            assert_eq!(rows.len(), 16);
            tx.rollback().await.unwrap();
        }
        println!("claim statement of 16, {name}: {}", percentiles(samples));
    }
    for max in [16, 1] {
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let claimed = store.claim(&request(max)).await.unwrap();
            samples.push(started.elapsed());
            assert_eq!(claimed.len(), max);
        }
        println!(
            "whole claim of {max} (fair, product limit), {BACKLOG} ready: {}",
            percentiles(samples)
        );
    }
}
