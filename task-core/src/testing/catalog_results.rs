//! Conformance: the catalog, results and the step cache.

use std::sync::Arc;
use std::time::Duration;

use super::{claim_one, new_task};
use crate::catalog::{ItemType, ItemUpsert};
use crate::ids::{InventoryId, Priority, ProductName, TaskId, TenantId, Version};
use crate::results::AnalysisResult;
use crate::store::{PageRequest, Store, StoreError};
use crate::task::Status;
use crate::time::ManualClock;

fn item(tenant: &str, id: &str, title: &str) -> ItemUpsert {
    let mut extra = serde_json::Map::new();
    extra.insert("season".into(), serde_json::json!(2));
    ItemUpsert {
        tenant: TenantId::new(tenant).expect("valid"),
        inventory_id: InventoryId::new(id).expect("valid"),
        item_type: ItemType::Episode,
        title: title.into(),
        asset_url: format!("s3://media/{id}.mp4"),
        tags: vec!["drama".into()],
        extra,
        parent_id: None,
    }
}

/// Upsert creates then replaces; list pages by inventory id; delete is soft.
pub async fn catalog_upsert_get_list_delete<S: Store>(store: Arc<S>, clock: ManualClock) {
    let t1 = TenantId::new("t1").expect("valid");
    let (first, created) = store
        .upsert_item(item("t1", "ep-1", "Pilot"))
        .await
        .expect("upsert");
    assert!(created);
    clock.advance(Duration::from_secs(1));
    let (second, created) = store
        .upsert_item(item("t1", "ep-1", "Pilot (cut)"))
        .await
        .expect("upsert");
    assert!(!created, "the same id replaces the item");
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    let id = InventoryId::new("ep-1").expect("valid");
    let got = store
        .get_item(&t1, &id, false)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.item.title, "Pilot (cut)");
    assert_eq!(got.item.extra.get("season"), Some(&serde_json::json!(2)));

    for i in 2..=9 {
        store
            .upsert_item(item("t1", &format!("ep-{i}"), "x"))
            .await
            .expect("upsert");
    }
    store
        .upsert_item(item("t2", "ep-1", "other tenant"))
        .await
        .expect("upsert");
    let mut names = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let got = store.list_items(&t1, false, &page).await.expect("list");
        names.extend(got.items.iter().map(|i| i.item.inventory_id.to_string()));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=9).map(|i| format!("ep-{i}")).collect();
    assert_eq!(names, expected);

    store.delete_item(&t1, &id).await.expect("delete");
    assert!(
        store
            .get_item(&t1, &id, false)
            .await
            .expect("get")
            .is_none()
    );
    let deleted = store
        .get_item(&t1, &id, true)
        .await
        .expect("get")
        .expect("kept");
    assert!(deleted.deleted_at.is_some());
    let visible = store
        .list_items(&t1, false, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(visible.items.len(), 8);
    let all = store
        .list_items(&t1, true, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(all.items.len(), 9);
    assert!(matches!(
        store.delete_item(&t1, &id).await,
        Err(StoreError::NotFound { .. })
    ));
    let t2 = TenantId::new("t2").expect("valid");
    assert!(
        store
            .get_item(&t2, &id, false)
            .await
            .expect("get")
            .is_some(),
        "other tenant untouched"
    );

    let (back, created) = store
        .upsert_item(item("t1", "ep-1", "Back"))
        .await
        .expect("upsert");
    assert!(created, "re-ingesting a deleted item creates it again");
    assert!(back.deleted_at.is_none());
}

/// Deleting an item cancels its pending tasks and flags its processing ones.
pub async fn delete_item_cancels_its_active_tasks<S: Store>(store: Arc<S>, _clock: ManualClock) {
    let t1 = TenantId::new("t1").expect("valid");
    store
        .upsert_item(item("t1", "a", "A"))
        .await
        .expect("upsert");
    store
        .upsert_item(item("t1", "b", "B"))
        .await
        .expect("upsert");
    let running = store
        .create_task(new_task("a", Priority::High))
        .await
        .expect("create")
        .task;
    claim_one(&*store, "w").await;
    let mut other_version = new_task("a", Priority::Low);
    other_version.key.version = Version::new("2").expect("valid");
    let waiting = store.create_task(other_version).await.expect("create").task;
    let unrelated = store
        .create_task(new_task("b", Priority::Low))
        .await
        .expect("create")
        .task;

    let deleted = store
        .delete_item(&t1, &InventoryId::new("a").expect("valid"))
        .await
        .expect("delete");
    let mut cancelled = deleted.cancelled_tasks.clone();
    cancelled.sort();
    let mut expected = vec![running.id, waiting.id];
    expected.sort();
    assert_eq!(cancelled, expected);
    let running = store
        .get_task(&t1, running.id)
        .await
        .expect("get")
        .expect("exists");
    assert!(running.cancel_requested());
    let waiting = store
        .get_task(&t1, waiting.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(waiting.status(), Status::Cancelled);
    let unrelated = store
        .get_task(&t1, unrelated.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(unrelated.status(), Status::Pending);
}

/// Results are replaced, never duplicated, and read by version or latest.
pub async fn results_are_idempotent_and_versioned<S: Store>(store: Arc<S>, clock: ManualClock) {
    let t1 = TenantId::new("t1").expect("valid");
    let product = ProductName::new("adbreaks").expect("valid");
    let item_id = InventoryId::new("a").expect("valid");
    let v1 = Version::new("1.0").expect("valid");
    let v2 = Version::new("2.0").expect("valid");
    let result = |version: &Version, data: serde_json::Value, at| AnalysisResult {
        tenant: t1.clone(),
        product: product.clone(),
        inventory_id: item_id.clone(),
        version: version.clone(),
        task_id: TaskId::generate(),
        updated_at: at,
        data,
    };
    use crate::time::Clock;
    assert!(
        store
            .get_result(&t1, &product, &item_id, None)
            .await
            .expect("get")
            .is_none()
    );
    store
        .put_result(result(&v1, serde_json::json!({"run": 1}), clock.now()))
        .await
        .expect("put");
    store
        .put_result(result(&v1, serde_json::json!({"run": 2}), clock.now()))
        .await
        .expect("put");
    let got = store
        .get_result(&t1, &product, &item_id, Some(&v1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        got.data,
        serde_json::json!({"run": 2}),
        "a rewrite replaces"
    );
    clock.advance(Duration::from_secs(1));
    store
        .put_result(result(&v2, serde_json::json!({"run": 3}), clock.now()))
        .await
        .expect("put");
    let latest = store
        .get_result(&t1, &product, &item_id, None)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(latest.version, v2);
    let old = store
        .get_result(&t1, &product, &item_id, Some(&v1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(old.data, serde_json::json!({"run": 2}));
    let t2 = TenantId::new("t2").expect("valid");
    assert!(
        store
            .get_result(&t2, &product, &item_id, None)
            .await
            .expect("get")
            .is_none()
    );
    let missing = Version::new("9").expect("valid");
    assert!(
        store
            .get_result(&t1, &product, &item_id, Some(&missing))
            .await
            .expect("get")
            .is_none()
    );
}

/// The step cache stores and replaces values by key.
pub async fn cache_round_trips<S: Store>(store: Arc<S>, _clock: ManualClock) {
    assert!(
        store
            .cache_get("probe:s3://b/k:etag:10")
            .await
            .expect("get")
            .is_none()
    );
    store
        .cache_put("probe:s3://b/k:etag:10", serde_json::json!({"d": 1}))
        .await
        .expect("put");
    store
        .cache_put("probe:s3://b/k:etag:10", serde_json::json!({"d": 2}))
        .await
        .expect("put");
    assert_eq!(
        store
            .cache_get("probe:s3://b/k:etag:10")
            .await
            .expect("get"),
        Some(serde_json::json!({"d": 2}))
    );
}
