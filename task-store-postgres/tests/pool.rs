//! No connection or transaction is held while a step runs: a runner with 50 steps hanging at
//! once, on a store whose pool has 5 connections, still lets creates, reads and heartbeats
//! through. The hanging step waits on a gate the test opens at the end (no sleep stands in for
//! the work); the test only waits for real time to pass so that leases would lapse if the
//! heartbeats were starved.
#![allow(clippy::unwrap_used)]

mod support;
// The runner tests' scripted steps (a gated analyzer that counts its calls) and helpers.
#[path = "../../task-runner/tests/support/mod.rs"]
mod runner_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use runner_support::{Behaviour, Steps, submit, tenant};
use task_core::prelude::*;
use task_core::store::{PageRequest, TaskFilter};
use task_runner::Runner;
use task_store_postgres::{PostgresOptions, PostgresStore};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

/// Steps hanging at once.
const HANGING: usize = 50;
/// The store's pool.
const POOL: u32 = 5;
/// The runner's lease: heartbeats renew it every third of it.
const LEASE: Duration = Duration::from_secs(3);
/// How many lease periods the steps hang for.
const PERIODS: u32 = 4;
/// Tasks created during each period, beside the hanging ones.
const CREATED_PER_PERIOD: usize = 3;
/// The liveness bound of any one wait.
const BOUND: Duration = Duration::from_secs(30);

/// `future`, failing the test if it takes longer than [`BOUND`].
async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not complete within {BOUND:?}"))
}

/// Each of `ids` read at once (many more calls than pooled connections); all processing, as
/// `(id, lease expiry)`.
async fn leases(store: &Arc<PostgresStore>, ids: &[TaskId]) -> HashMap<TaskId, Timestamp> {
    let mut reads = JoinSet::new();
    for &id in ids {
        let store = store.clone();
        reads.spawn(async move { (id, store.get_task(&tenant(), id).await) });
    }
    let mut expiries = HashMap::new();
    while let Some(read) = reads.join_next().await {
        let (id, task) = read.unwrap();
        let task = task
            .expect("a read while steps hang")
            .expect("the task exists");
        assert_eq!(task.status(), Status::Processing, "{id}: {task:?}");
        let lease = task.lease().expect("a processing task has a lease");
        expiries.insert(id, lease.expires_at);
    }
    expiries
}

/// The events of `id`'s history with their counts, by name (`step_succeeded` by name and step:
/// `step_succeeded:probe`).
async fn event_counts(store: &PostgresStore, id: TaskId) -> HashMap<String, usize> {
    let history = store.history(&tenant(), id).await.expect("a history read");
    let mut counts = HashMap::new();
    for entry in history {
        let name = match entry.step {
            Some(step) if entry.event == "step_succeeded" => format!("{}:{step}", entry.event),
            _ => entry.event,
        };
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// The store's pooled connections now, and how many have had a transaction open for longer
/// than `longer_than`.
async fn connections(store: &PostgresStore, longer_than: Duration) -> (i64, i64) {
    let mut admin = support::connect().await;
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE xact_start < now() - make_interval(secs => $2))
         FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(store.application_name())
    .bind(longer_than.as_secs_f64())
    .fetch_one(&mut admin)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_steps_hold_no_connection() {
    let schema = support::TestSchema {
        url: support::database_url(),
        name: support::fresh_schema(),
    };
    // The system clock: leases lapse in real time unless heartbeats get through.
    let options = PostgresOptions::new(&support::database_url())
        .expect("a valid DATABASE_URL")
        .with_schema(&schema.name)
        .with_max_connections(POOL);
    let store = Arc::new(support::open_with(options).await);

    let gate = Arc::new(Semaphore::new(0));
    let steps = Steps::with_analyze(Behaviour::Gate(gate.clone()));
    let mut config = runner_support::config("pool-of-5", &["adbreaks"]);
    config.concurrency = HANGING;
    config.claim_batch = HANGING;
    config.lease = LEASE;
    let runner = Runner::start(store.clone(), steps.pipeline(&["adbreaks"]), config).unwrap();

    let mut hanging = Vec::new();
    for i in 0..HANGING {
        let inventory = format!("hang-{i:02}");
        let task = submit(&*store, &inventory, "adbreaks", Priority::High);
        hanging.push(bounded("a create", task).await.id);
    }
    // Every analyzer waits at the gate (it counts itself in before it notifies).
    bounded("50 steps starting", async {
        while steps.analyze.in_flight.load(Ordering::SeqCst) < HANGING {
            steps.analyze.entered.notified().await;
        }
    })
    .await;

    let mut created = Vec::new();
    let mut last = leases(&store, &hanging).await;
    let start = Instant::now();
    for period in 1..=PERIODS {
        // Creates and reads go through while every step hangs.
        for i in 0..CREATED_PER_PERIOD {
            let inventory = format!("more-{period}-{i}");
            let task = submit(&*store, &inventory, "adbreaks", Priority::High);
            let task = bounded("a create while steps hang", task).await;
            assert_eq!(
                task.status(),
                Status::Pending,
                "the runner's slots are full"
            );
            created.push(task.id);
        }
        let (tenant, filter, first) = (tenant(), TaskFilter::default(), PageRequest::first(100));
        let page = store.list_tasks(&tenant, &filter, &first);
        let listed = bounded("a list while steps hang", page).await.unwrap();
        assert_eq!(listed.items.len(), HANGING + created.len());
        for &id in &hanging {
            let counts = bounded("a history read", event_counts(&store, id)).await;
            assert_eq!(counts.get("claimed"), Some(&1), "{id}: {counts:?}");
            assert_eq!(counts.get("lease_expired"), None, "{id}: {counts:?}");
        }
        let (open, old) = connections(&store, LEASE).await;
        assert!(open <= i64::from(POOL), "{open} pooled connections");
        assert_eq!(old, 0, "a transaction stayed open for a lease period");

        // Then a lease period passes: every lease must have been extended past its expiry.
        tokio::time::sleep_until(start + LEASE * period).await;
        let now = bounded("50 reads at once", leases(&store, &hanging)).await;
        for (id, expiry) in &now {
            assert!(
                *expiry > last[id],
                "{id}: lease not extended in period {period}: {expiry} after {}",
                last[id]
            );
        }
        last = now;
    }
    assert_eq!(
        steps.analyze.calls(),
        HANGING,
        "only the hanging tasks started"
    );

    // Open the gate: every task, the hanging ones and those created meanwhile, ends done once.
    gate.add_permits(HANGING + created.len());
    let tenant = tenant();
    for &id in hanging.iter().chain(&created) {
        let finished = task_runner::wait_until_finished(&*store, &tenant, id);
        let task = bounded("a task finishing", finished).await.unwrap();
        assert_eq!(task.status(), Status::Done, "{id}: {task:?}");
        let counts = event_counts(&store, id).await;
        for event in [
            "claimed",
            "done",
            "step_succeeded:s3_check",
            "step_succeeded:probe",
            "step_succeeded:length_gate",
            "step_succeeded:analyze",
        ] {
            assert_eq!(counts.get(event), Some(&1), "{id} {event}: {counts:?}");
        }
        assert_eq!(counts.get("lease_expired"), None, "{id}: {counts:?}");
    }
    // The hanging tasks outlived several leases on one claim: their heartbeats kept the lease,
    // and left no history entry.
    for &id in &hanging {
        let counts = event_counts(&store, id).await;
        assert_eq!(counts.get("lease_extended"), None, "{id}: {counts:?}");
    }
    assert_eq!(steps.analyze.calls(), HANGING + created.len());
    assert_eq!(steps.analyze.peak.load(Ordering::SeqCst), HANGING);
    bounded("the shutdown", runner.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}
