//! Catalog parents under concurrency: an upsert checks its parent with the parent's row locked
//! (`FOR SHARE`), so a delete or type change of the parent that commits while the upsert runs
//! is seen by its check, and a type change of a parent waits for a child being added to it.
//! Each race is staged with a raw transaction holding the conflicting change open while the
//! store's call starts; whatever the timing, the outcome asserted is the only correct one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Executor, Postgres, Transaction};
use task_core::catalog::{CatalogItem, ItemType, ItemUpsert};
use task_core::hierarchy::CatalogStoreExt;
use task_core::ids::{InventoryId, TenantId};
use task_core::store::{CatalogStore, StoreError};
use task_core::testing::catalog_item;
use task_core::time::ManualClock;
use task_store_postgres::PostgresStore;

fn item(name: &str, item_type: ItemType, parent: Option<&str>) -> ItemUpsert {
    catalog_item("t1", name, item_type, parent)
}

/// A store holding season `s1`, and a transaction on its pool.
async fn with_a_season() -> (
    Arc<PostgresStore>,
    support::TestSchema,
    Transaction<'static, Postgres>,
) {
    let (store, schema) = support::open(ManualClock::default());
    let store = Arc::new(store);
    store
        .upsert_item(item("s1", ItemType::Season, None))
        .await
        .expect("season");
    let tx = store.pool().begin().await.expect("begin");
    (store, schema, tx)
}

/// Upserts `upsert` in a task of its own.
fn spawn_upsert(
    store: &Arc<PostgresStore>,
    upsert: ItemUpsert,
) -> tokio::task::JoinHandle<Result<(CatalogItem, bool), StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.upsert_item(upsert).await })
}

/// Waits until a backend is blocked on a lock (the store's call reached the lock the raw
/// transaction holds), polling pg_stat_activity; panics after 30 s.
async fn until_blocked_on_a_lock() {
    let mut conn = support::connect().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%catalog_items%'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no call reached the lock"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_deleted_during_a_child_upsert_refuses_the_child() {
    let (store, _schema, mut delete) = with_a_season().await;
    delete
        .execute("UPDATE catalog_items SET deleted_at = 1 WHERE inventory_id = 's1'")
        .await
        .expect("delete the season, uncommitted");
    let upsert = spawn_upsert(&store, item("e1", ItemType::Episode, Some("s1")));
    until_blocked_on_a_lock().await;
    assert!(
        !upsert.is_finished(),
        "the upsert waits for the parent's lock"
    );
    delete.commit().await.expect("commit the delete");
    match upsert.await.expect("no panic") {
        Err(StoreError::Invalid {
            field: "parent_id",
            reason,
        }) => assert!(reason.contains("is deleted"), "{reason}"),
        other => panic!("a child of a deleted season was accepted: {other:?}"),
    }
    let tenant = TenantId::new("t1").expect("valid");
    let child = InventoryId::new("e1").expect("valid");
    assert!(
        store
            .get_item(&tenant, &child, true)
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_retyped_during_a_child_upsert_refuses_the_child() {
    let (store, _schema, mut retype) = with_a_season().await;
    retype
        .execute(
            "UPDATE catalog_items SET item = jsonb_set(item, '{item_type}', '\"series\"')
             WHERE inventory_id = 's1'",
        )
        .await
        .expect("make the season a series, uncommitted");
    let upsert = spawn_upsert(&store, item("e1", ItemType::Episode, Some("s1")));
    until_blocked_on_a_lock().await;
    retype.commit().await.expect("commit the type change");
    match upsert.await.expect("no panic") {
        Err(StoreError::Invalid { reason, .. }) => {
            assert!(reason.contains("is a series"), "{reason}")
        }
        other => panic!("an episode of a series was accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_change_waits_for_a_child_being_added() {
    let (store, _schema, mut child) = with_a_season().await;
    // What a child's upsert does: lock the parent FOR SHARE, then insert the child.
    child
        .execute("SELECT 1 FROM catalog_items WHERE inventory_id = 's1' FOR SHARE")
        .await
        .expect("lock the season");
    let doc = serde_json::to_string(&item("e1", ItemType::Episode, Some("s1"))).expect("json");
    sqlx::query(
        "INSERT INTO catalog_items (tenant, inventory_id, item, created_at, updated_at, parent_id)
         VALUES ('t1', 'e1', $1::jsonb, 1, 1, 's1')",
    )
    .bind(doc)
    .execute(&mut *child)
    .await
    .expect("insert the episode, uncommitted");
    let retype = spawn_upsert(&store, item("s1", ItemType::Series, None));
    until_blocked_on_a_lock().await;
    assert!(!retype.is_finished(), "the type change waits for the child");
    child.commit().await.expect("commit the child");
    match retype.await.expect("no panic") {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("has children"), "{message}")
        }
        other => panic!("a season with an episode became a series: {other:?}"),
    }
    let tenant = TenantId::new("t1").expect("valid");
    let season = InventoryId::new("s1").expect("valid");
    let children = store.children(&tenant, &season).await.expect("children");
    assert_eq!(children.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_stored_before_version_7_read_back_without_a_parent() {
    let clock = ManualClock::default();
    let (store, schema) = support::open(clock.clone());
    store
        .upsert_item(item("old", ItemType::Season, None))
        .await
        .expect("upsert");
    drop(store);
    let mut conn = support::connect().await;
    let name = &schema.name;
    conn.execute(
        format!(
            "DROP INDEX \"{name}\".catalog_items_by_parent;
             ALTER TABLE \"{name}\".catalog_items DROP COLUMN parent_id;
             DROP INDEX \"{name}\".webhook_deliveries_ended;
             DELETE FROM \"{name}\".schema_version WHERE version >= 7;"
        )
        .as_str(),
    )
    .await
    .expect("back to version 6");
    let migrated = support::open_with(support::options(name, &clock)).await;
    let tenant = TenantId::new("t1").expect("valid");
    let old = InventoryId::new("old").expect("valid");
    let got = migrated
        .get_item(&tenant, &old, false)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(got.item.parent_id, None);
    migrated
        .upsert_item(item("e1", ItemType::Episode, Some("old")))
        .await
        .expect("the migrated season takes episodes");
    let children = migrated.children(&tenant, &old).await.expect("children");
    assert_eq!(children.len(), 1);
}
