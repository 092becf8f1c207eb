//! Close and reopen: every record, index and history entry is as it was; expired leases are
//! requeued on open; corrupt values and newer formats are reported with path, tree and key.

use std::sync::Arc;
use std::time::Duration;

use task_core::catalog::{ItemType, ItemUpsert};
use task_core::prelude::*;
use task_core::testing::{LEASE, claim_one, key, new_task, run_to_done, worker};
use task_store_sled::{SledOptions, SledStore};

fn open(dir: &std::path::Path, clock: &ManualClock) -> SledStore {
    SledStore::open_with(
        dir,
        SledOptions::default().with_clock(Arc::new(clock.clone())),
    )
    .expect("open")
}

/// Fills a store with tasks in every state, catalog items, results and cache entries.
async fn populate(store: &SledStore, clock: &ManualClock) -> Vec<TaskId> {
    let tenant = TenantId::new("t1").expect("valid");
    let item = ItemUpsert {
        tenant: tenant.clone(),
        inventory_id: InventoryId::new("a").expect("valid"),
        item_type: ItemType::Standalone,
        title: "A".into(),
        asset_url: "s3://b/a.mp4".into(),
        tags: vec![],
        extra: serde_json::Map::new(),
    };
    store.upsert_item(item).await.expect("upsert");
    let batch = (0..8)
        .map(|i| new_task(&format!("i{i}"), Priority::ALL[i % 3]))
        .collect();
    let made = store.create_tasks(batch).await.expect("create");
    clock.advance(Duration::from_millis(5));
    let done = claim_one(store, "w").await;
    run_to_done(store, &done).await;
    let retrying = claim_one(store, "w").await;
    store
        .apply(
            retrying.id,
            retrying.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                TaskEvent::StepFailed {
                    error: TaskError::Transient {
                        step: Step::S3Check,
                        message: "reset".into(),
                    },
                    retry_after_ms: Some(60_000),
                },
            ],
        )
        .await
        .expect("retry later");
    let failed = claim_one(store, "w").await;
    store
        .apply(
            failed.id,
            failed.epoch,
            &[TaskEvent::Failed {
                error: TaskError::Internal {
                    message: "boom".into(),
                },
            }],
        )
        .await
        .expect("fail");
    let flagged = claim_one(store, "w").await;
    store
        .request_cancel(&tenant, flagged.id)
        .await
        .expect("cancel");
    let held = claim_one(store, "w").await;
    store
        .apply(
            held.id,
            held.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                TaskEvent::StepSucceeded {
                    output: serde_json::json!({"size": 1}),
                    reused: false,
                },
            ],
        )
        .await
        .expect("checkpoint");
    store
        .request_cancel(&tenant, made[7].task.id)
        .await
        .expect("cancel pending");
    store
        .create_task(NewTask {
            key: key("t2", "a", "adbreaks", "1"),
            priority: Priority::High,
        })
        .await
        .expect("create");
    store
        .put_result(AnalysisResult {
            tenant: tenant.clone(),
            product: ProductName::new("adbreaks").expect("valid"),
            inventory_id: InventoryId::new("a").expect("valid"),
            version: Version::new("1").expect("valid"),
            task_id: done.id,
            updated_at: clock.now(),
            data: serde_json::json!({"adbreak": []}),
        })
        .await
        .expect("result");
    store
        .cache_put("probe:a", serde_json::json!({"duration": 600}))
        .await
        .expect("cache");
    vec![held.id, flagged.id, retrying.id]
}

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
    let claimed = store
        .claim(&ClaimRequest {
            max: 10,
            ..ClaimRequest::one(worker("w2"), LEASE)
        })
        .await
        .expect("claim");
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

    let db = sled::open(dir.path()).expect("raw open");
    let tasks = db.open_tree("tasks").expect("tree");
    let mut value = tasks
        .get(made.id.to_bytes())
        .expect("get")
        .expect("stored")
        .to_vec();
    value[0] = 200;
    tasks.insert(made.id.to_bytes(), value).expect("corrupt");
    db.open_tree("ready")
        .expect("tree")
        .clear()
        .expect("drop an index");
    db.flush().expect("flush");
    drop((tasks, db));

    let store = open(dir.path(), &clock);
    let err = store
        .get_task(&made.key.tenant, made.id)
        .await
        .expect_err("corrupt");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(
        text.contains("tasks") && text.contains("version 200"),
        "{text}"
    );
    assert!(
        store.check_consistency().is_err(),
        "the checker reports it too"
    );
    drop(store);

    let db = sled::open(dir.path()).expect("raw open");
    let tasks = db.open_tree("tasks").expect("tree");
    let mut value = tasks
        .get(made.id.to_bytes())
        .expect("get")
        .expect("stored")
        .to_vec();
    value[0] = 1;
    tasks.insert(made.id.to_bytes(), value).expect("repair");
    db.flush().expect("flush");
    drop((tasks, db));
    let store = open(dir.path(), &clock);
    let problems = store.check_consistency().expect("check");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("ready: missing entry"), "{problems:?}");
    drop(store);

    let db = sled::open(dir.path()).expect("raw open");
    db.open_tree("meta")
        .expect("tree")
        .insert("format", &3u32.to_be_bytes()[..])
        .expect("bump");
    db.flush().expect("flush");
    drop(db);
    let err = SledStore::open(dir.path()).expect_err("newer format");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(
        text.contains(&dir.path().display().to_string()) && text.contains("format version 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_version_1_database_is_read_and_marked_version_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let made = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create")
        .task;
    let history = store
        .history(&made.key.tenant, made.id)
        .await
        .expect("history");
    drop(store);

    // Rewrite it as version 1 wrote it: marker 1, one history entry per value.
    let db = sled::open(dir.path()).expect("raw open");
    let meta = db.open_tree("meta").expect("tree");
    meta.insert("format", &1u32.to_be_bytes()[..])
        .expect("marker");
    let tree = db.open_tree("history").expect("tree");
    let (key, _) = tree
        .scan_prefix(made.id.to_bytes())
        .next()
        .expect("one value")
        .expect("read");
    let mut single = vec![1u8];
    single.extend(serde_json::to_vec(&history[0]).expect("json"));
    tree.insert(key, single).expect("rewrite");
    db.flush().expect("flush");
    drop((meta, tree, db));

    let store = open(dir.path(), &clock);
    assert_eq!(
        store
            .history(&made.key.tenant, made.id)
            .await
            .expect("history"),
        history
    );
    assert!(store.check_consistency().expect("check").is_empty());
    let marker = store
        .raw_dump()
        .expect("dump")
        .into_iter()
        .find(|e| e.tree == "meta")
        .expect("marker");
    assert_eq!(marker.value, 2u32.to_be_bytes());
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
