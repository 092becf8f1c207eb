//! Retention: finished tasks older than the cut-off are deleted with their history and
//! listing entries, active and recent tasks stay, results stay, and the indexes stay
//! consistent, across a reopen too; a store opened with a retention prunes on its own.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::open;
use task_core::prelude::*;
use task_core::testing::{claim_one, new_task, run_to_done};
use task_store_sled::{SledOptions, SledStore};

/// Creates `inventory`'s task and runs it to done.
async fn finished(store: &SledStore, inventory: &str) -> Task {
    let made = store
        .create_task(new_task(inventory, Priority::High))
        .await
        .expect("create")
        .task;
    let claimed = claim_one(store, "w").await;
    assert_eq!(claimed.id, made.id);
    run_to_done(store, &claimed).await
}

async fn listed(store: &SledStore, tenant: &TenantId) -> Vec<TaskId> {
    store
        .list_tasks(tenant, &TaskFilter::default(), &PageRequest::first(100))
        .await
        .expect("list")
        .items
        .iter()
        .map(|t| t.id)
        .collect()
}

#[tokio::test]
async fn old_finished_tasks_are_deleted_and_everything_else_stays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let old = finished(&store, "old").await;
    let tenant = old.key.tenant.clone();
    store
        .put_result(AnalysisResult {
            tenant: tenant.clone(),
            product: old.key.product.clone(),
            inventory_id: old.key.inventory_id.clone(),
            version: old.key.version.clone(),
            task_id: old.id,
            updated_at: clock.now(),
            data: serde_json::json!({"adbreak": []}),
        })
        .await
        .expect("result");
    let cancelled = store
        .create_task(new_task("cancelled", Priority::Low))
        .await
        .expect("create")
        .task;
    store
        .request_cancel(&tenant, cancelled.id)
        .await
        .expect("cancel");
    clock.advance(Duration::from_secs(3600));
    let cut = clock.now();
    let recent = finished(&store, "recent").await;
    let pending = store
        .create_task(new_task("pending", Priority::Low))
        .await
        .expect("create")
        .task;

    assert_eq!(store.prune_finished_before(cut).await.expect("prune"), 2);
    for gone in [old.id, cancelled.id] {
        assert!(store.get_task(&tenant, gone).await.expect("get").is_none());
        assert!(matches!(
            store.history(&tenant, gone).await,
            Err(StoreError::NotFound { .. })
        ));
    }
    assert!(store.latest_task(&old.key).await.expect("latest").is_none());
    let mut kept = listed(&store, &tenant).await;
    kept.sort();
    let mut expected = vec![recent.id, pending.id];
    expected.sort();
    assert_eq!(kept, expected);
    let result = store
        .get_result(&tenant, &old.key.product, &old.key.inventory_id, None)
        .await
        .expect("result");
    assert_eq!(result.map(|r| r.task_id), Some(old.id), "results stay");
    assert!(store.check_consistency().expect("check").is_empty());
    assert_eq!(store.prune_finished_before(cut).await.expect("again"), 0);
    drop(store);

    let store = open(dir.path(), &clock);
    assert!(store.check_consistency().expect("check").is_empty());
    assert_eq!(listed(&store, &tenant).await.len(), 2);
    // The key of a pruned task takes a new task as usual.
    let again = store
        .create_task(new_task("old", Priority::High))
        .await
        .expect("create");
    assert!(again.created);
}

#[tokio::test]
async fn a_store_with_a_retention_prunes_on_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let options = SledOptions::default()
        .with_clock(Arc::new(clock.clone()))
        .with_retention(Duration::from_secs(60));
    let store = SledStore::open_with(dir.path(), options).expect("open");
    let tenant = TenantId::new("t1").expect("valid");
    let done = finished(&store, "a").await;
    clock.advance(Duration::from_secs(61));
    // The committer looks about once a second; wait for its round, bounded for a loaded machine.
    let mut pruned = store.pruned();
    tokio::time::timeout(
        Duration::from_secs(10),
        pruned.wait_for(|count| *count >= 1),
    )
    .await
    .expect("a pruning round within 10 s")
    .expect("the store is open");
    let gone = store
        .get_task(&tenant, done.id)
        .await
        .expect("get")
        .is_none();
    assert!(gone, "the expired task was pruned");
    assert!(store.check_consistency().expect("check").is_empty());
}

#[tokio::test]
async fn a_compacted_copy_holds_the_live_data_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("live");
    let clock = ManualClock::default();
    let store = open(&source, &clock);
    let tenant = TenantId::new("t1").expect("valid");
    for i in 0..20 {
        finished(&store, &format!("old-{i}")).await;
    }
    clock.advance(Duration::from_secs(60));
    let kept = finished(&store, "kept").await;
    let pending = store
        .create_task(new_task("pending", Priority::Low))
        .await
        .expect("create")
        .task;
    assert_eq!(
        store
            .prune_finished_before(clock.now())
            .await
            .expect("prune"),
        20
    );
    let before = store.raw_dump().expect("dump");
    drop(store);

    let copy = dir.path().join("compacted");
    let options = SledOptions::default().with_clock(Arc::new(clock.clone()));
    let report = SledStore::compact_into(&source, &copy, options.clone()).expect("compact");
    let stored = before
        .iter()
        .filter(|e| e.tree != "ready" && e.tree != "leases")
        .count();
    assert_eq!(
        report.keys as usize, stored,
        "every live key, and only those"
    );
    let err = SledStore::compact_into(&source, &copy, options).expect_err("exists");
    assert!(err.to_string().contains("already exists"), "{err}");

    let compacted = open(&copy, &clock);
    assert_eq!(compacted.raw_dump().expect("dump"), before);
    assert!(compacted.check_consistency().expect("check").is_empty());
    let mut ids = listed(&compacted, &tenant).await;
    ids.sort();
    let mut expected = vec![kept.id, pending.id];
    expected.sort();
    assert_eq!(ids, expected);
    let claimed = claim_one(&compacted, "w2").await;
    assert_eq!(
        claimed.id, pending.id,
        "the rebuilt queue serves the pending task"
    );
}
