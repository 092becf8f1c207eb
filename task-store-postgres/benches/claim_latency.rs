//! Claim latency with one tenant's backlog of 100,000 ready tasks, and another tenant's single
//! task taken by the next claim; first with no finished task in the table, then with
//! 1,000,000 finished (done) tasks beside the backlog. A bench (not run by `cargo test`:
//! 100,000 creates and a bulk insert to set up):
//!
//! ```sh
//! scripts/postgres.sh cargo bench -p task-store-postgres --bench claim_latency [-- FINISHED]
//! ```
//!
//! Prints the p50/p99 of: the claim statement of schema version 1 (one index scan in
//! (priority, ready-at, seq) order, no fairness, no product limits) and the fair statement of
//! version 2 (`sql/fair_ready.sql`), each run in a transaction rolled back; and whole claims
//! of 16 and of 1 through the store (requeue check, product locks, the statement, the write
//! and the commit). Each once with 0 finished tasks and once with FINISHED (default
//! 1,000,000): copies of a task the store ran to done, with its history, inserted in one
//! statement (`benches/finished.sql`). `VACUUM ANALYZE` runs before each round, as autovacuum
//! would (the local server may have it off).
#![allow(clippy::unwrap_used)] // a bench: a failed unwrap stops the measurement

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use task_core::ids::{Priority, ProductName};
use task_core::store::{ClaimRequest, NewTask, TaskStore};
use task_core::task::{Status, Task};
use task_core::testing::{claim_one, key, run_to_done, worker};
use task_core::time::{Clock, ManualClock};
use task_store_postgres::PostgresStore;

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

/// Keeps the template task (run to done) aside and deletes it, so the first round has no
/// finished task; `finished_ids(n)` gives the ids and inventory ids of the copies.
const KEEP_TEMPLATE: &str = "
CREATE TABLE finished_template AS SELECT * FROM tasks WHERE status = 'done';
CREATE TABLE finished_history AS
    SELECT h.id, h.entry FROM task_history h JOIN finished_template t ON h.task_id = t.id;
DELETE FROM tasks WHERE status = 'done';
CREATE FUNCTION finished_ids(n bigint) RETURNS TABLE (i bigint, id uuid, inventory_id text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT i, (lpad(to_hex(1700000000000 + i), 12, '0') || '7' || substr(md5(i::text), 1, 3)
               || '8' || substr(md5(i::text), 4, 15))::uuid, 'finished-' || i
    FROM generate_series(1, n) AS i
$$;";

const FINISHED_SQL: &str = include_str!("finished.sql");

fn product() -> ProductName {
    ProductName::new("adbreaks").unwrap()
}

fn request(max: usize) -> ClaimRequest {
    ClaimRequest {
        max,
        ..ClaimRequest::one(worker("w"), Duration::from_secs(3600))
            .with_product_limit(product(), 1_000_000)
    }
}

/// A medium task of `tenant` for `item`.
async fn create(store: &PostgresStore, tenant: &str, item: &str) -> Task {
    let task = NewTask {
        key: key(tenant, item, "adbreaks", "1"),
        priority: Priority::Medium,
    };
    store.create_task(task).await.unwrap().task
}

async fn count(store: &PostgresStore, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = $1")
        .bind(status)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// One round of every measurement: (row name, percentiles).
async fn round(store: &PostgresStore, clock: &ManualClock) -> Vec<(String, String)> {
    sqlx::raw_sql("VACUUM ANALYZE tasks")
        .execute(store.pool())
        .await
        .unwrap();
    let now = clock.now().as_millis() as i64;
    let none: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for (name, sql) in [
        ("claim statement of 16, schema 1 (no fairness)", BEFORE),
        ("claim statement of 16, fair (schema 2)", FAIR),
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
            let got = query.fetch_all(&mut *tx).await.unwrap();
            samples.push(started.elapsed());
            assert_eq!(got.len(), 16);
            tx.rollback().await.unwrap();
        }
        rows.push((name.to_owned(), percentiles(samples)));
    }
    for max in [16, 1] {
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let claimed = store.claim(&request(max)).await.unwrap();
            samples.push(started.elapsed());
            assert_eq!(claimed.len(), max);
        }
        rows.push((
            format!("whole claim of {max} (fair, product limit)"),
            percentiles(samples),
        ));
    }
    rows
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let finished: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let clock = ManualClock::default();
    let (store, _schema) = support::open(clock.clone());
    let started = Instant::now();
    // The template of the finished tasks: a task the store runs to done.
    let template = create(&store, "busy", "template").await;
    let claimed = claim_one(&store, "w").await;
    assert_eq!(claimed.id, template.id);
    assert_eq!(run_to_done(&store, &claimed).await.status(), Status::Done);
    sqlx::raw_sql(KEEP_TEMPLATE)
        .execute(store.pool())
        .await
        .unwrap();
    clock.advance(Duration::from_millis(1));
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
    let single = create(&store, "quiet", "one").await;
    println!("created {BACKLOG} + 1 tasks in {:?}", started.elapsed());

    // The quiet tenant's task is in the first claim of 2.
    let first = store.claim(&request(2)).await.unwrap();
    assert!(
        first.iter().any(|t| t.id == single.id),
        "the next claim takes the quiet tenant's task"
    );

    assert_eq!(count(&store, "done").await, 0);
    let empty = round(&store, &clock).await;

    let started = Instant::now();
    let sql = FINISHED_SQL.replace("FINISHED_COUNT", &finished.to_string());
    sqlx::raw_sql(&sql).execute(store.pool()).await.unwrap();
    let done = count(&store, "done").await;
    assert!(done >= finished);
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM task_history")
        .fetch_one(store.pool())
        .await
        .unwrap();
    println!(
        "inserted {finished} finished tasks ({done} done, {history} history rows) in {:?}",
        started.elapsed()
    );
    let full = round(&store, &clock).await;
    let ready = count(&store, "pending").await;
    println!("| | 0 finished | {done} finished ({ready} still ready) |");
    println!("| --- | --- | --- |");
    for ((name, a), (_, b)) in empty.iter().zip(&full) {
        println!("| {name} | {a} | {b} |");
    }
}
