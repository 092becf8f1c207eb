//! Conformance: catalog parents (`parent_id`), checked in every store's upsert, and the
//! listing of an item's children.

use std::sync::Arc;

use crate::catalog::{ItemType, ItemUpsert};
use crate::hierarchy::CatalogStoreExt;
use crate::ids::{InventoryId, TenantId};
use crate::store::{PageRequest, Store, StoreError};
use crate::time::ManualClock;

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("valid tenant")
}

fn id(name: &str) -> InventoryId {
    InventoryId::new(name).expect("valid inventory id")
}

/// An item of tenant `owner` named `name` (its title and asset too), under `parent` if given.
pub fn catalog_item(
    owner: &str,
    name: &str,
    item_type: ItemType,
    parent: Option<&str>,
) -> ItemUpsert {
    ItemUpsert {
        tenant: tenant(owner),
        inventory_id: id(name),
        item_type,
        title: name.into(),
        asset_url: format!("s3://media/{name}.mp4"),
        tags: Vec::new(),
        extra: serde_json::Map::new(),
        parent_id: parent.map(id),
    }
}

/// Upserts, panicking on a refusal.
async fn put<S: Store>(store: &S, owner: &str, name: &str, t: ItemType, parent: Option<&str>) {
    store
        .upsert_item(catalog_item(owner, name, t, parent))
        .await
        .unwrap_or_else(|e| panic!("upsert of {t} {name} under {parent:?}: {e}"));
}

/// The reason of a refused `parent_id`, panicking on anything else.
async fn refused<S: Store>(store: &S, upsert: ItemUpsert) -> String {
    let what = format!(
        "{} {} under {:?}",
        upsert.item_type, upsert.inventory_id, upsert.parent_id
    );
    match store.upsert_item(upsert).await {
        Err(StoreError::Invalid {
            field: "parent_id",
            reason,
        }) => reason,
        other => panic!("{what}: expected an invalid parent_id, got {other:?}"),
    }
}

/// The ids of every child of `parent` in `owner`, paging by `size`.
async fn child_ids<S: Store>(
    store: &S,
    owner: &str,
    parent: &str,
    include_deleted: bool,
    size: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page = PageRequest::first(size);
    loop {
        let got = store
            .list_children(&tenant(owner), &id(parent), include_deleted, &page)
            .await
            .expect("list children");
        assert!(got.items.len() <= size, "a page holds at most its limit");
        ids.extend(got.items.iter().map(|i| i.item.inventory_id.to_string()));
        match got.next {
            Some(next) => page.after = Some(next),
            None => return ids,
        }
    }
}

/// Series, season and episode link up; every item reads its parent back (None without one).
pub async fn parent_chains_are_stored<S: Store>(store: Arc<S>, _clock: ManualClock) {
    put(&*store, "t1", "show", ItemType::Series, None).await;
    put(&*store, "t1", "show-s1", ItemType::Season, Some("show")).await;
    put(
        &*store,
        "t1",
        "show-s1e1",
        ItemType::Episode,
        Some("show-s1"),
    )
    .await;
    put(&*store, "t1", "movie", ItemType::Standalone, None).await;
    put(&*store, "t1", "loose-episode", ItemType::Episode, None).await;
    let t1 = tenant("t1");
    for (name, parent) in [
        ("show", None),
        ("show-s1", Some("show")),
        ("show-s1e1", Some("show-s1")),
        ("movie", None),
        ("loose-episode", None),
    ] {
        let got = store
            .get_item(&t1, &id(name), false)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(got.item.parent_id, parent.map(id), "{name}'s parent");
    }
    let listed = store
        .list_items(&t1, false, &PageRequest::first(10))
        .await
        .expect("list");
    let episode = listed
        .items
        .iter()
        .find(|i| i.item.inventory_id == id("show-s1e1"))
        .expect("listed");
    assert_eq!(episode.item.parent_id, Some(id("show-s1")));
}

/// Every invalid link is refused with a reason naming the value, and nothing is written.
pub async fn invalid_parents_are_refused<S: Store>(store: Arc<S>, _clock: ManualClock) {
    put(&*store, "t1", "show", ItemType::Series, None).await;
    put(&*store, "t1", "s1", ItemType::Season, Some("show")).await;
    put(&*store, "t1", "e1", ItemType::Episode, Some("s1")).await;
    put(&*store, "t1", "movie", ItemType::Standalone, None).await;
    let cases = [
        (
            "e2",
            ItemType::Episode,
            "show",
            "is a series; an episode's parent must be a season",
        ),
        (
            "e2",
            ItemType::Episode,
            "e1",
            "is an episode; an episode's parent must be a season",
        ),
        (
            "e2",
            ItemType::Episode,
            "movie",
            "is a standalone; an episode's parent",
        ),
        (
            "s2",
            ItemType::Season,
            "s1",
            "is a season; a season's parent must be a series",
        ),
        (
            "s2",
            ItemType::Season,
            "e1",
            "is an episode; a season's parent must be a series",
        ),
        (
            "s2",
            ItemType::Season,
            "movie",
            "is a standalone; a season's parent",
        ),
        ("show2", ItemType::Series, "show", "given for a series"),
        (
            "movie2",
            ItemType::Standalone,
            "s1",
            "given for a standalone",
        ),
        ("e2", ItemType::Episode, "nowhere", "is not in the catalog"),
        ("e2", ItemType::Episode, "e2", "is the item itself"),
    ];
    for (name, item_type, parent, expected) in cases {
        let reason = refused(&*store, catalog_item("t1", name, item_type, Some(parent))).await;
        assert!(
            reason.contains(&format!("parent_id {parent:?}")) && reason.contains(expected),
            "{item_type} {name} under {parent}: {reason:?} should say {expected:?}"
        );
    }
    let t1 = tenant("t1");
    for name in ["e2", "s2", "show2", "movie2"] {
        let stored = store.get_item(&t1, &id(name), true).await.expect("get");
        assert!(stored.is_none(), "a refused upsert of {name} wrote nothing");
    }
    // A refused replacement leaves the stored item as it was.
    refused(
        &*store,
        catalog_item("t1", "e1", ItemType::Episode, Some("show")),
    )
    .await;
    let kept = store
        .get_item(&t1, &id("e1"), false)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(kept.item.parent_id, Some(id("s1")));

    // A deleted parent takes no new children.
    store.delete_item(&t1, &id("s1")).await.expect("delete");
    let reason = refused(
        &*store,
        catalog_item("t1", "e3", ItemType::Episode, Some("s1")),
    )
    .await;
    assert!(reason.contains("is deleted"), "{reason}");
}

/// Another tenant's item is answered exactly like a missing one, and its children never show.
pub async fn another_tenants_parent_is_not_found<S: Store>(store: Arc<S>, _clock: ManualClock) {
    put(&*store, "t2", "show", ItemType::Series, None).await;
    put(&*store, "t2", "s1", ItemType::Season, Some("show")).await;
    put(&*store, "t2", "e1", ItemType::Episode, Some("s1")).await;
    let foreign = refused(
        &*store,
        catalog_item("t1", "e1", ItemType::Episode, Some("s1")),
    )
    .await;
    let missing = refused(
        &*store,
        catalog_item("t3", "e1", ItemType::Episode, Some("s1")),
    )
    .await;
    assert_eq!(foreign, missing, "the refusal reveals nothing of tenant t2");
    assert!(foreign.contains("is not in the catalog"), "{foreign}");
    assert!(child_ids(&*store, "t1", "s1", true, 10).await.is_empty());
    assert_eq!(child_ids(&*store, "t2", "s1", false, 10).await, ["e1"]);
    // The same ids in t1 make a hierarchy of their own.
    put(&*store, "t1", "s1", ItemType::Season, None).await;
    put(&*store, "t1", "e9", ItemType::Episode, Some("s1")).await;
    assert_eq!(child_ids(&*store, "t1", "s1", false, 10).await, ["e9"]);
    assert_eq!(child_ids(&*store, "t2", "s1", false, 10).await, ["e1"]);
}

/// Children list by inventory id, a page at a time; deleted ones only when asked for.
pub async fn children_are_listed_by_parent<S: Store>(store: Arc<S>, _clock: ManualClock) {
    put(&*store, "t1", "show", ItemType::Series, None).await;
    for season in ["s1", "s2"] {
        put(&*store, "t1", season, ItemType::Season, Some("show")).await;
    }
    // Inserted out of order, with another season's episodes and unrelated items between.
    for n in [5, 1, 9, 3, 7, 2, 8, 4, 6] {
        put(
            &*store,
            "t1",
            &format!("s1e{n}"),
            ItemType::Episode,
            Some("s1"),
        )
        .await;
        put(
            &*store,
            "t1",
            &format!("s2e{n}"),
            ItemType::Episode,
            Some("s2"),
        )
        .await;
        put(
            &*store,
            "t1",
            &format!("s1x{n}"),
            ItemType::Standalone,
            None,
        )
        .await;
    }
    let all: Vec<String> = (1..=9).map(|n| format!("s1e{n}")).collect();
    for size in [1, 4, 9, 100] {
        assert_eq!(
            child_ids(&*store, "t1", "s1", false, size).await,
            all,
            "pages of {size}"
        );
    }
    assert_eq!(
        child_ids(&*store, "t1", "show", false, 1).await,
        ["s1", "s2"]
    );
    assert!(child_ids(&*store, "t1", "s1e1", false, 5).await.is_empty());
    assert!(
        child_ids(&*store, "t1", "nowhere", false, 5)
            .await
            .is_empty()
    );

    let t1 = tenant("t1");
    store.delete_item(&t1, &id("s1e4")).await.expect("delete");
    let live: Vec<String> = all.iter().filter(|n| *n != "s1e4").cloned().collect();
    assert_eq!(child_ids(&*store, "t1", "s1", false, 4).await, live);
    assert_eq!(child_ids(&*store, "t1", "s1", true, 4).await, all);

    let children = store.children(&t1, &id("s1")).await.expect("children");
    let names: Vec<String> = children
        .iter()
        .map(|c| c.item.inventory_id.to_string())
        .collect();
    assert_eq!(names, live, "CatalogStoreExt::children gets every page");
    let siblings = store.siblings(&t1, &id("s1e5")).await.expect("siblings");
    let names: Vec<String> = siblings
        .iter()
        .map(|c| c.item.inventory_id.to_string())
        .collect();
    let expected: Vec<String> = live.iter().filter(|n| *n != "s1e5").cloned().collect();
    assert_eq!(
        names, expected,
        "siblings: the parent's other live children"
    );
    assert!(
        store
            .siblings(&t1, &id("show"))
            .await
            .expect("none")
            .is_empty()
    );
}

/// A child moves to another parent or to none; a parent's type change its children cannot
/// follow is a conflict; a deleted parent keeps its children and their links.
pub async fn children_move_and_parents_keep_their_type<S: Store>(
    store: Arc<S>,
    _clock: ManualClock,
) {
    let t1 = tenant("t1");
    put(&*store, "t1", "show", ItemType::Series, None).await;
    put(&*store, "t1", "s1", ItemType::Season, Some("show")).await;
    put(&*store, "t1", "s2", ItemType::Season, Some("show")).await;
    put(&*store, "t1", "e1", ItemType::Episode, Some("s1")).await;
    put(&*store, "t1", "e2", ItemType::Episode, Some("s1")).await;

    put(&*store, "t1", "e1", ItemType::Episode, Some("s2")).await;
    assert_eq!(child_ids(&*store, "t1", "s1", true, 10).await, ["e2"]);
    assert_eq!(child_ids(&*store, "t1", "s2", true, 10).await, ["e1"]);
    put(&*store, "t1", "e1", ItemType::Episode, None).await;
    assert!(child_ids(&*store, "t1", "s2", true, 10).await.is_empty());

    // s1 has an episode: it stays a season (a new title is fine).
    for new_type in [ItemType::Series, ItemType::Standalone, ItemType::Episode] {
        let parent = (new_type == ItemType::Episode).then_some("s2");
        match store
            .upsert_item(catalog_item("t1", "s1", new_type, parent))
            .await
        {
            Err(StoreError::Conflict(message)) => assert!(
                message.contains("\"s1\" has children") && message.contains("\"e2\""),
                "{message}"
            ),
            other => panic!("s1 with children became a {new_type}: {other:?}"),
        }
    }
    let mut renamed = catalog_item("t1", "s1", ItemType::Season, Some("show"));
    renamed.title = "Season one".into();
    store.upsert_item(renamed).await.expect("same type");
    // show has seasons: it stays a series.
    assert!(matches!(
        store
            .upsert_item(catalog_item("t1", "show", ItemType::Season, None))
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Deleting a parent leaves its children and their links.
    store.delete_item(&t1, &id("s1")).await.expect("delete");
    let child = store
        .get_item(&t1, &id("e2"), false)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(child.item.parent_id, Some(id("s1")));
    assert_eq!(child_ids(&*store, "t1", "s1", false, 10).await, ["e2"]);
    // Re-ingesting the parent with another type is still refused while e2 lives.
    assert!(matches!(
        store
            .upsert_item(catalog_item("t1", "s1", ItemType::Standalone, None))
            .await,
        Err(StoreError::Conflict(_))
    ));
    put(&*store, "t1", "s1", ItemType::Season, Some("show")).await;
    put(&*store, "t1", "e2", ItemType::Episode, Some("s1")).await;

    // Once its children are gone (deleted or moved), an item may change type.
    store.delete_item(&t1, &id("e2")).await.expect("delete");
    put(&*store, "t1", "s1", ItemType::Standalone, None).await;
    assert!(
        refused(
            &*store,
            catalog_item("t1", "e2", ItemType::Episode, Some("s1"))
        )
        .await
        .contains("is a standalone")
    );
}
