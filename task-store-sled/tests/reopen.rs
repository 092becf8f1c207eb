//! Close and reopen: every record, index and history entry is as it was; expired leases are
//! requeued on open; corrupt values and newer formats are reported with path, tree and key.

mod support;

use std::time::Duration;

use support::{open, populate};
use task_core::prelude::*;
use task_core::testing::{LEASE, claim_up_to, new_task, worker};
use task_store_sled::SledStore;

#[tokio::test]
async fn everything_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let [held, flagged, retrying] = populate(&store, &clock).await[..] else {
        panic!("three ids");
    };
    let before = store.raw_dump().expect("dump");
    assert!(store.check_consistency().expect("check").is_empty());
    let tenant = TenantId::new("t1").expect("valid");
    let tasks_before = store
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(100))
        .await
        .expect("list");
    drop(store);

    let store = open(dir.path(), &clock);
    assert_eq!(
        store.raw_dump().expect("dump"),
        before,
        "identical after reopen"
    );
    let tasks_after = store
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(tasks_after.items, tasks_before.items);
    assert!(store.check_consistency().expect("check").is_empty());
    drop(store);

    // Closed past the leases' end: processing tasks are claimable again (or cancelled when a
    // cancel was pending); the retrying task keeps its retry time.
    clock.advance(LEASE + Duration::from_secs(1));
    let store = open(dir.path(), &clock);
    let get = |id| {
        let store = store.clone();
        let tenant = tenant.clone();
        async move {
            store
                .get_task(&tenant, id)
                .await
                .expect("get")
                .expect("exists")
        }
    };
    let requeued = get(held).await;
    assert_eq!(requeued.status(), Status::Pending);
    assert_eq!(requeued.checkpoints.len(), 1, "checkpoints are kept");
    assert_eq!(get(flagged).await.status(), Status::Cancelled);
    let waiting = get(retrying).await;
    assert_eq!(
        waiting.ready_at(),
        Some(waiting.updated_at.plus(Duration::from_secs(60))),
        "a retry keeps its time"
    );
    assert!(store.check_consistency().expect("check").is_empty());
    let claimed = claim_up_to(&store, "w2", 10).await;
    assert!(claimed.iter().any(|t| t.id == held));
    assert!(claimed.iter().all(|t| t.id != retrying));
}

#[tokio::test]
async fn corrupt_values_and_newer_formats_are_reported_not_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let made = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create")
        .task;
    drop(store);

    let record_key = |id: TaskId| [&b"T"[..], &id.to_bytes()].concat();
    let db = support::raw_open(dir.path());
    let data = db.open_tree("data").expect("tree");
    let mut value = data
        .get(record_key(made.id))
        .expect("get")
        .expect("stored")
        .to_vec();
    value[0] = 200;
    data.insert(record_key(made.id), value).expect("corrupt");
    db.flush().expect("flush");
    drop((data, db));

    // The record of an active task is read on open (to rebuild the in-memory queue): the
    // open is refused, naming the file, the keyspace and the key, rather than dropping it.
    let err = SledStore::open(dir.path()).expect_err("corrupt");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(
        text.contains("tasks") && text.contains("version 200"),
        "{text}"
    );
    assert!(
        text.contains(&made.id.to_bytes().escape_ascii().to_string()),
        "{text}"
    );

    // Repaired, but its active-index entry lost: the checker names the missing entries (the
    // in-memory ready queue is rebuilt from the active index, so it misses the task too).
    let db = support::raw_open(dir.path());
    let data = db.open_tree("data").expect("tree");
    let mut value = data
        .get(record_key(made.id))
        .expect("get")
        .expect("stored")
        .to_vec();
    value[0] = 3;
    data.insert(record_key(made.id), value).expect("repair");
    let (active, _) = data
        .scan_prefix(b"A")
        .next()
        .expect("an active entry")
        .expect("read");
    data.remove(active).expect("drop an index entry");
    db.flush().expect("flush");
    drop((data, db));
    let store = open(dir.path(), &clock);
    let problems = store.check_consistency().expect("check");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("active: missing entry"),
        "{problems:?}"
    );
    assert!(problems[1].contains("ready: missing entry"), "{problems:?}");
    drop(store);

    support::set_format_marker(dir.path(), 5);
    let err = SledStore::open(dir.path()).expect_err("newer format");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(
        text.contains(&dir.path().display().to_string()) && text.contains("format version 5"),
        "{text}"
    );
}
/// A claim that starts the first step and a batch of applies are durable as acknowledged:
/// after a reopen the records, histories and indexes are exactly what the calls returned.
#[tokio::test]
async fn started_claims_and_apply_batches_survive_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let batch = (0..4)
        .map(|i| new_task(&format!("i{i}"), Priority::High))
        .collect();
    store.create_tasks(batch).await.expect("create");
    let claimed = store
        .claim(
            &ClaimRequest {
                max: 4,
                ..ClaimRequest::one(worker("w"), LEASE)
            }
            .with_start_first_step(true),
        )
        .await
        .expect("claim");
    assert!(
        claimed
            .iter()
            .all(|t| t.current_step() == Some(Step::S3Check))
    );
    let mut requests: Vec<ApplyRequest> = claimed
        .iter()
        .map(|t| ApplyRequest {
            id: t.id,
            epoch: t.epoch,
            events: vec![
                TaskEvent::StepSucceeded {
                    output: serde_json::json!({"ok": true}),
                    reused: false,
                },
                TaskEvent::StepStarted { step: Step::Probe },
            ],
        })
        .collect();
    requests[1].epoch += 1;
    let outcomes = store.apply_many(requests).await.expect("apply many");
    assert!(outcomes[1].as_ref().is_err_and(StoreError::is_lease_lost));
    let written: Vec<Task> = outcomes.into_iter().filter_map(Result::ok).collect();
    assert_eq!(written.len(), 3);
    let tenant = TenantId::new("t1").expect("valid");
    let mut histories = Vec::new();
    for task in &written {
        histories.push(store.history(&tenant, task.id).await.expect("history"));
    }
    drop(store);

    let store = open(dir.path(), &clock);
    assert!(store.check_consistency().expect("check").is_empty());
    for (task, history) in written.iter().zip(&histories) {
        let stored = store.get_task(&tenant, task.id).await.expect("get");
        assert_eq!(stored.as_ref(), Some(task));
        assert_eq!(
            &store.history(&tenant, task.id).await.expect("history"),
            history
        );
        assert_eq!(
            history.len(),
            5,
            "created, claimed, started, succeeded, started"
        );
    }
    let fenced = store
        .get_task(&tenant, claimed[1].id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(fenced, claimed[1], "the refused entry wrote nothing");
}

/// The queues are rebuilt on open by several threads, each scanning runs of the active-task
/// index: thousands of active tasks, with natural keys spread over tenants, items and products,
/// some leased and some pending at three priorities, come back with exactly the same queues.
#[tokio::test]
async fn many_active_tasks_rebuild_the_same_queues() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let batch: Vec<NewTask> = (0..3_000)
        .map(|n| NewTask {
            key: task_core::testing::key(
                ["acme", "b", "zulu-media"][n % 3],
                &format!("item-{:05}", (n * 7919) % 100_000),
                ["adbreaks", "thumbs"][n % 2],
                "1",
            ),
            priority: Priority::ALL[n % 3],
        })
        .collect();
    store.create_tasks(batch).await.expect("create");
    let leased = claim_up_to(&store, "w", 700).await;
    assert_eq!(leased.len(), 700);
    let before = store.raw_dump().expect("dump");
    drop(store);

    let store = open(dir.path(), &clock);
    assert_eq!(
        store.raw_dump().expect("dump"),
        before,
        "same queues and leases"
    );
    assert!(store.check_consistency().expect("check").is_empty());
    let next = claim_up_to(&store, "w2", 3_000).await;
    assert_eq!(next.len(), 2_300, "every pending task is claimable once");
}

#[tokio::test]
async fn catalog_parents_and_their_index_survive_reopen() {
    use task_core::hierarchy::CatalogStoreExt;
    use task_core::testing::catalog_item;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let put = |name: &str, item_type, parent| catalog_item("t1", name, item_type, parent);
    for item in [
        put("show", ItemType::Series, None),
        put("s1", ItemType::Season, Some("show")),
        put("s2", ItemType::Season, Some("show")),
        put("e1", ItemType::Episode, Some("s1")),
        put("e2", ItemType::Episode, Some("s1")),
        // Moved: its old index entry goes.
        put("e2", ItemType::Episode, Some("s2")),
    ] {
        store.upsert_item(item).await.expect("upsert");
    }
    let tenant = TenantId::new("t1").expect("valid");
    store
        .delete_item(&tenant, &InventoryId::new("s1").expect("valid"))
        .await
        .expect("delete");
    assert_eq!(
        store.check_consistency().expect("check"),
        Vec::<String>::new()
    );
    let before = store.raw_dump().expect("dump");
    drop(store);

    let store = open(dir.path(), &clock);
    assert_eq!(store.raw_dump().expect("dump"), before);
    assert_eq!(
        store.check_consistency().expect("check"),
        Vec::<String>::new()
    );
    for (parent, expected) in [("show", "s2"), ("s1", "e1"), ("s2", "e2")] {
        let parent = InventoryId::new(parent).expect("valid");
        let children = store.children(&tenant, &parent).await.expect("list");
        let names: Vec<String> = children
            .iter()
            .map(|i| i.item.inventory_id.to_string())
            .collect();
        assert_eq!(names, [expected], "the children of {parent}");
    }
}
