//! Conformance: the tasks a store ends by its own writes are counted in
//! `taskd_tasks_finished_total`, as runners count the ends they write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use super::{LEASE, claim_one, key, worker};
use crate::catalog::{ItemType, ItemUpsert};
use crate::ids::{InventoryId, Priority, ProductName, TenantId};
use crate::store::{ClaimRequest, NewTask, Store};
use crate::task::Status;
use crate::telemetry::TASKS_FINISHED;
use crate::time::ManualClock;

/// A product name no other test (nor another run of this one in the same binary) uses, so
/// that no other counts mix in.
fn unique_product() -> String {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    format!("metered_{}", RUNS.fetch_add(1, Ordering::Relaxed))
}

/// The process-wide recorder of this test binary (installed once, with telemetry enabled).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder)
            .expect("no other metrics recorder in a store's conformance tests");
        crate::telemetry::enable();
        snapshotter
    })
}

/// `taskd_tasks_finished_total` of `product` with `status` and `code` so far. A snapshot
/// drains the recorder's counters, so what each one reads is added to a running tally.
fn finished(product: &str, status: &str, code: &str) -> u64 {
    type Labels = (String, String, String);
    static TALLY: Mutex<BTreeMap<Labels, u64>> = Mutex::new(BTreeMap::new());
    let mut tally = TALLY.lock().unwrap_or_else(|p| p.into_inner());
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
        };
        if key.name() == TASKS_FINISHED.name
            && let (Some(product), Some(status), Some(code), DebugValue::Counter(count)) = (
                label("product"),
                label("status"),
                label("error_code"),
                value,
            )
        {
            *tally.entry((product, status, code)).or_default() += count;
        }
    }
    tally
        .get(&(product.to_owned(), status.to_owned(), code.to_owned()))
        .copied()
        .unwrap_or(0)
}

fn metered(product: &str, item: &str) -> NewTask {
    NewTask {
        key: key("t1", item, product, "1"),
        priority: Priority::High,
    }
}

/// A claim that gives a task up at its attempt limit, a lease that expires on a task whose
/// cancel was requested, and a catalog item's deletion cancelling its pending task each count
/// one finished task, with its status and error code; active tasks count nothing.
pub async fn tasks_the_store_ends_are_counted<S: Store>(store: Arc<S>, clock: ManualClock) {
    snapshotter();
    let name = unique_product();
    let finished = |status: &str, code: &str| finished(&name, status, code);
    let metered = |item: &str| metered(&name, item);
    let product = ProductName::new(&name).expect("valid");
    let limited = ClaimRequest::one(worker("w"), LEASE).with_attempt_limit(product, 1);

    store.create_task(metered("lost")).await.expect("create");
    let lost = store.claim(&limited).await.expect("claim");
    assert_eq!(lost.len(), 1);
    assert_eq!(
        finished("failed", "attempts_exhausted"),
        0,
        "still processing"
    );
    clock.advance(LEASE * 2);
    assert!(store.claim(&limited).await.expect("claim").is_empty());
    let tenant = TenantId::new("t1").expect("valid");
    let gave_up = store.get_task(&tenant, lost[0].id).await.expect("get");
    assert_eq!(gave_up.map(|t| t.status()), Some(Status::Failed));
    assert_eq!(finished("failed", "attempts_exhausted"), 1);

    store
        .create_task(metered("cancelled"))
        .await
        .expect("create");
    let held = claim_one(&*store, "w").await;
    store
        .request_cancel(&tenant, held.id)
        .await
        .expect("cancel request");
    assert_eq!(
        finished("cancelled", ""),
        0,
        "a processing task ends in its runner"
    );
    clock.advance(LEASE * 2);
    store.requeue_expired().await.expect("requeue");
    assert_eq!(finished("cancelled", ""), 1, "its lease expired: cancelled");

    let item = ItemUpsert {
        tenant: tenant.clone(),
        inventory_id: InventoryId::new("deleted").expect("valid"),
        item_type: ItemType::Standalone,
        title: "Deleted".into(),
        asset_url: "s3://media/deleted.mp4".into(),
        tags: Vec::new(),
        extra: serde_json::Map::new(),
        parent_id: None,
    };
    store.upsert_item(item).await.expect("upsert");
    let pending = store.create_task(metered("deleted")).await.expect("create");
    assert_eq!(pending.task.status(), Status::Pending);
    let deleted = store
        .delete_item(&tenant, &InventoryId::new("deleted").expect("valid"))
        .await
        .expect("delete");
    assert_eq!(deleted.cancelled_tasks, vec![pending.task.id]);
    assert_eq!(finished("cancelled", ""), 2);
}
