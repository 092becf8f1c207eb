//! Several store instances (as several processes would) on one schema: claims never share a
//! task, a product's limit holds across them, creates of one key make one task, a stale holder is fenced and writes nothing, and
//! the retention deletes finished tasks with their history.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use task_core::ids::{Priority, TenantId};
use task_core::machine::TaskEvent;
use task_core::store::{ClaimRequest, NewTask, TaskStore};
use task_core::testing::{LEASE, claim_one, new_task, run_to_done, worker};
use task_core::time::{Clock, ManualClock};
use task_store_postgres::PostgresStore;

async fn stores(count: usize) -> (Vec<PostgresStore>, ManualClock, support::TestSchema) {
    let clock = ManualClock::default();
    let name = support::fresh_schema();
    let guard = support::TestSchema {
        url: support::database_url(),
        name: name.clone(),
    };
    let mut stores = Vec::new();
    for _ in 0..count {
        stores.push(
            support::open_with(support::options(&name, &clock).with_max_connections(4)).await,
        );
    }
    (stores, clock, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimers_on_three_instances_never_share_a_task() {
    let (stores, _clock, _guard) = stores(3).await;
    const TASKS: usize = 240;
    let batch: Vec<NewTask> = (0..TASKS)
        .map(|i| new_task(&format!("item-{i}"), Priority::ALL[i % 3]))
        .collect();
    stores[0].create_tasks(batch).await.expect("create");
    let mut handles = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for c in 0..3 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let request = ClaimRequest {
                        max: 1 + c,
                        ..ClaimRequest::one(worker(&format!("s{i}-c{c}")), LEASE)
                    };
                    let claimed = store.claim(&request).await.expect("claim");
                    if claimed.is_empty() {
                        break mine;
                    }
                    mine.extend(claimed.into_iter().map(|t| t.id));
                }
            }));
        }
    }
    let mut seen = HashSet::new();
    for handle in handles {
        for id in handle.await.expect("no panic") {
            assert!(seen.insert(id), "task {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), TASKS);
}

/// Claimers on three instances, several tenants and two products, one limited to 3: never
/// more than 3 of it processing at once, no deadlock, every task done once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_limit_holds_for_claimers_on_three_instances() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const LIMIT: usize = 3;
    const TASKS: usize = 180;
    let (stores, _clock, _guard) = stores(3).await;
    let limited = task_core::ids::ProductName::new("fingerprint").expect("valid");
    let batch: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask {
            key: task_core::testing::key(
                &format!("tenant-{}", i % 4),
                &format!("item-{i}"),
                if i % 2 == 0 {
                    "fingerprint"
                } else {
                    "adbreaks"
                },
                "1",
            ),
            priority: Priority::ALL[i % 3],
        })
        .collect();
    stores[0].create_tasks(batch).await.expect("create");
    // Counts a task up after its claim returns and down before its end is written: never
    // more than the store's own count of running tasks.
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for c in 0..4 {
            let (store, limited) = (store.clone(), limited.clone());
            let (running, peak) = (running.clone(), peak.clone());
            handles.push(tokio::spawn(async move {
                let mut done = 0;
                loop {
                    let request = ClaimRequest {
                        max: 1 + c % 2,
                        ..ClaimRequest::one(worker(&format!("s{i}-c{c}")), LEASE)
                            .with_product_limit(limited.clone(), LIMIT)
                    };
                    let claimed = store.claim(&request).await.expect("claim");
                    if claimed.is_empty() {
                        break done;
                    }
                    let mine = claimed.iter().filter(|t| t.key.product == limited).count();
                    let now = running.fetch_add(mine, Ordering::SeqCst) + mine;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    running.fetch_sub(mine, Ordering::SeqCst);
                    for task in &claimed {
                        run_to_done(&store, task).await;
                        done += 1;
                    }
                }
            }));
        }
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.expect("no panic");
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= LIMIT,
        "{peak} fingerprint tasks processing at once (limit {LIMIT})"
    );
    assert!(peak >= 1);
    // A claimer stops at its first empty claim, which a full product can cause while others
    // still run: the rest is claimed by whoever is still looping, or here.
    loop {
        let request = ClaimRequest {
            max: 16,
            ..ClaimRequest::one(worker("sweeper"), LEASE)
        };
        let claimed = stores[0].claim(&request).await.expect("claim");
        if claimed.is_empty() {
            break;
        }
        for task in &claimed {
            run_to_done(&stores[0], task).await;
            total += 1;
        }
    }
    assert_eq!(total, TASKS, "every task done once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_of_one_key_make_one_task() {
    let (stores, _clock, _guard) = stores(2).await;
    for round in 0..10 {
        let name = format!("race-{round}");
        let racers: Vec<_> = (0..6)
            .map(|i| {
                let store = stores[i % 2].clone();
                let new = new_task(&name, Priority::Low);
                tokio::spawn(async move { store.create_task(new).await })
            })
            .collect();
        let mut ids = HashSet::new();
        let mut created = 0;
        for racer in racers {
            let outcome = racer.await.expect("no panic").expect("create");
            ids.insert(outcome.task.id);
            created += usize::from(outcome.created);
        }
        assert_eq!(created, 1, "round {round}: one create wins");
        assert_eq!(
            ids.len(),
            1,
            "round {round}: every racer gets the same task"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_on_another_instance_is_fenced_and_writes_nothing() {
    let (stores, clock, _guard) = stores(2).await;
    let (a, b) = (&stores[0], &stores[1]);
    a.create_task(new_task("x", Priority::Low))
        .await
        .expect("create");
    let old = claim_one(a, "old").await;
    clock.advance(LEASE + Duration::from_millis(1));
    let new = claim_one(b, "new").await;
    assert_eq!((new.id, new.epoch), (old.id, old.epoch + 1));
    let tenant = TenantId::new("t1").expect("valid");
    let trail = b.history(&tenant, old.id).await.expect("history").len();
    for events in [
        vec![TaskEvent::LeaseExtended { lease_ms: 60_000 }],
        vec![TaskEvent::StepStarted {
            step: task_core::task::Step::S3Check,
        }],
        vec![TaskEvent::LeaseReleased],
    ] {
        let err = a
            .apply(old.id, old.epoch, &events)
            .await
            .expect_err("the old epoch is refused");
        assert!(err.is_lease_lost(), "{err}");
    }
    let stored = a
        .get_task(&tenant, old.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored, new, "nothing of the refused writes landed");
    assert_eq!(
        b.history(&tenant, old.id).await.expect("history").len(),
        trail
    );
    let done = run_to_done(b, &new).await;
    assert_eq!(done.status(), task_core::task::Status::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_finished_tasks_and_their_history_only() {
    let (stores, clock, _guard) = stores(1).await;
    let store = &stores[0];
    let tenant = TenantId::new("t1").expect("valid");
    let batch: Vec<NewTask> = (0..5)
        .map(|i| new_task(&format!("old-{i}"), Priority::Low))
        .collect();
    store.create_tasks(batch).await.expect("create");
    for _ in 0..5 {
        let held = claim_one(store, "w").await;
        run_to_done(store, &held).await;
    }
    clock.advance(Duration::from_secs(3600));
    let cutoff = clock.now();
    let recent = store
        .create_task(new_task("recent", Priority::Low))
        .await
        .expect("create")
        .task;
    let held = claim_one(store, "w").await;
    let recent_done = run_to_done(store, &held).await;
    let pending = store
        .create_task(new_task("pending", Priority::Low))
        .await
        .expect("create")
        .task;
    assert_eq!(store.prune_finished_before(cutoff).await.expect("prune"), 5);
    let history_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM task_history")
        .fetch_one(store.pool())
        .await
        .expect("count");
    let left = store
        .list_tasks(
            &tenant,
            &Default::default(),
            &task_core::store::PageRequest::first(100),
        )
        .await
        .expect("list");
    let ids: HashSet<_> = left.items.iter().map(|t| t.id).collect();
    assert_eq!(ids, HashSet::from([recent.id, pending.id]));
    assert_eq!(recent_done.id, recent.id);
    let kept = store
        .history(&tenant, recent.id)
        .await
        .expect("history")
        .len()
        + store
            .history(&tenant, pending.id)
            .await
            .expect("history")
            .len();
    assert_eq!(
        usize::try_from(history_rows).expect("count"),
        kept,
        "the history of deleted tasks went with them"
    );
    assert_eq!(store.prune_finished_before(cutoff).await.expect("prune"), 0);

    // With a retention, the store prunes on its own.
    let name = store.schema().to_owned();
    let options = support::options(&name, &clock).with_retention(Duration::from_secs(60));
    let pruning = support::open_with(options).await;
    clock.advance(Duration::from_secs(120));
    let mut remaining = Vec::new();
    for _ in 0..100 {
        remaining = pruning
            .list_tasks(
                &tenant,
                &Default::default(),
                &task_core::store::PageRequest::first(100),
            )
            .await
            .expect("list")
            .items;
        if remaining.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        remaining.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![pending.id],
        "the background retention deleted the finished task, kept the pending one"
    );
}
