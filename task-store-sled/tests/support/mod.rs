//! Shared by the reopen and upgrade tests: opening with a manual clock and a populated store.

use std::sync::Arc;
use std::time::Duration;

use task_core::catalog::{ItemType, ItemUpsert};
use task_core::prelude::*;
use task_core::testing::{claim_one, key, new_task, run_to_done};
use task_store_sled::{SledOptions, SledStore};

/// Opens the store in `dir` on `clock`.
pub fn open(dir: &std::path::Path, clock: &ManualClock) -> SledStore {
    SledStore::open_with(
        dir,
        SledOptions::default().with_clock(Arc::new(clock.clone())),
    )
    .expect("open")
}

#[allow(dead_code)] // not every test binary that includes this module uses it
/// Fills a store with tasks in every state, catalog items, results and cache entries.
pub async fn populate(store: &SledStore, clock: &ManualClock) -> Vec<TaskId> {
    let tenant = TenantId::new("t1").expect("valid");
    let item = ItemUpsert {
        tenant: tenant.clone(),
        inventory_id: InventoryId::new("a").expect("valid"),
        item_type: ItemType::Standalone,
        title: "A".into(),
        asset_url: "s3://b/a.mp4".into(),
        tags: vec![],
        extra: serde_json::Map::new(),
        parent_id: None,
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

/// Opens the database in `dir` with sled directly, once a just-dropped store's background
/// threads have let go of sled's lock: sled holds an exclusive `flock` on its `db` file, so
/// taking that lock ourselves (it blocks until they release it) is the event to wait for.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn raw_open(dir: &std::path::Path) -> sled::Db {
    if let Ok(file) = std::fs::File::open(dir.join("db")) {
        file.lock().expect("wait for sled's lock");
        drop(file);
    }
    sled::open(dir).unwrap_or_else(|err| panic!("raw open: {err}"))
}

/// Writes format marker `version` into the closed database at `dir`.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn set_format_marker(dir: &std::path::Path, version: u32) {
    let db = raw_open(dir);
    db.open_tree("meta")
        .expect("tree")
        .insert("format", &version.to_be_bytes()[..])
        .expect("marker");
    db.flush().expect("flush");
}
