//! The catalog's hierarchy: an episode belongs to a season, a season to a series, through the
//! item's optional `parent_id`.
//!
//! The rule, checked by every store inside its upsert ([`check_parent`], pure):
//! - an episode's parent must be a season, a season's a series; a series and a standalone item
//!   take no parent; an episode or a season may also have none;
//! - the parent must be an item of the same tenant that is not soft-deleted (another tenant's
//!   item is answered exactly like a missing one), and an item cannot be its own parent;
//! - an item that has (non-deleted) children keeps a type they can have as parent: changing a
//!   season that has episodes into anything else is refused as a conflict, rather than leaving
//!   links the rule would refuse. Move or delete the children first.
//!
//! Deleting a parent leaves its children as they are, `parent_id` included (a soft delete
//! loses nothing, and re-ingesting the parent restores the hierarchy); a child of a deleted
//! parent can only be upserted again with another parent, or none, until the parent is back.
//! [`CatalogStore::list_children`] lists an item's children; [`CatalogStoreExt`] adds the
//! conveniences (every child, an item's siblings).
//!
//! ```
//! use task_core::catalog::ItemType;
//! use task_core::hierarchy::parent_type;
//!
//! assert_eq!(parent_type(ItemType::Episode), Some(ItemType::Season));
//! assert_eq!(parent_type(ItemType::Season), Some(ItemType::Series));
//! assert_eq!(parent_type(ItemType::Series), None);
//! ```

use async_trait::async_trait;

use crate::catalog::{CatalogItem, ItemType, ItemUpsert};
use crate::ids::{InventoryId, TenantId};
use crate::store::{CatalogStore, PageRequest, StoreError};

/// The type the parent of an item of type `child` must have, or None when it takes no parent.
pub fn parent_type(child: ItemType) -> Option<ItemType> {
    match child {
        ItemType::Episode => Some(ItemType::Season),
        ItemType::Season => Some(ItemType::Series),
        ItemType::Series | ItemType::Standalone => None,
    }
}

/// "a" or "an", whichever reads right before the type's name.
fn article(item_type: ItemType) -> &'static str {
    match item_type {
        ItemType::Episode => "an",
        ItemType::Standalone | ItemType::Series | ItemType::Season => "a",
    }
}

/// Why a parent link is refused: each variant names the items and types involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParentError {
    /// The item names itself as its parent.
    #[error("parent_id {id:?} is the item itself; an item cannot be its own parent")]
    OwnParent {
        /// The item (and parent) id.
        id: String,
    },
    /// The item's type takes no parent.
    #[error(
        "parent_id {parent:?} given for {article} {item_type}; only an episode (in a season) \
         and a season (in a series) have a parent",
        article = article(*item_type)
    )]
    TakesNoParent {
        /// The item's type.
        item_type: ItemType,
        /// The parent id given.
        parent: String,
    },
    /// No item of the tenant has that id (another tenant's item is reported the same way).
    #[error("parent_id {parent:?} is not in the catalog; ingest the {expected} first")]
    NotFound {
        /// The parent id given.
        parent: String,
        /// The type the parent must have.
        expected: ItemType,
    },
    /// The parent is soft-deleted.
    #[error("parent_id {parent:?} is deleted; ingest the {expected} again first")]
    Deleted {
        /// The parent id given.
        parent: String,
        /// The type the parent must have.
        expected: ItemType,
    },
    /// The parent has the wrong type.
    #[error(
        "parent_id {parent:?} is {found_article} {found}; {article} {child}'s parent must be \
         {expected_article} {expected}",
        found_article = article(*found),
        article = article(*child),
        expected_article = article(*expected)
    )]
    WrongType {
        /// The parent id given.
        parent: String,
        /// The parent's type.
        found: ItemType,
        /// The item's type.
        child: ItemType,
        /// The type the parent must have.
        expected: ItemType,
    },
    /// The item has children that could not have it as parent with its new type.
    #[error(
        "{id:?} has children (e.g. {child_article} {child_type} {child:?}), whose parent must \
         be {expected_article} {expected}; it cannot become {new_article} {new_type}: move or \
         delete its children first",
        child_article = article(*child_type),
        expected_article = article(*expected),
        new_article = article(*new_type)
    )]
    HasChildren {
        /// The item.
        id: String,
        /// The type it was upserted with.
        new_type: ItemType,
        /// One of its children.
        child: String,
        /// That child's type.
        child_type: ItemType,
        /// The type that child's parent must have.
        expected: ItemType,
    },
}

impl ParentError {
    /// Whether the refusal is a conflict with stored children (HTTP 409) rather than an
    /// invalid `parent_id` (HTTP 422).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ParentError::HasChildren { .. })
    }
}

impl From<ParentError> for StoreError {
    fn from(error: ParentError) -> Self {
        if error.is_conflict() {
            StoreError::Conflict(error.to_string())
        } else {
            StoreError::Invalid {
                field: "parent_id",
                reason: error.to_string(),
            }
        }
    }
}

/// Checks the parent link of `item` against what the store holds, in one pure function.
///
/// - `parent`: the stored item named by `item.parent_id`, looked up in the item's tenant,
///   deleted or not; None when there is none (or no `parent_id`). An item of another tenant
///   passed here is treated as missing.
/// - `child`: one non-deleted stored item whose parent is `item`, if any. Stores may pass None
///   when the item's stored type is the same as the new one: its children were valid then.
///
/// Stores call it inside the upsert's atomic write, with the parent locked against a
/// concurrent delete or type change.
pub fn check_parent(
    item: &ItemUpsert,
    parent: Option<&CatalogItem>,
    child: Option<&CatalogItem>,
) -> Result<(), ParentError> {
    if let Some(parent_id) = &item.parent_id {
        if *parent_id == item.inventory_id {
            return Err(ParentError::OwnParent {
                id: parent_id.to_string(),
            });
        }
        let Some(expected) = parent_type(item.item_type) else {
            return Err(ParentError::TakesNoParent {
                item_type: item.item_type,
                parent: parent_id.to_string(),
            });
        };
        let parent =
            parent.filter(|p| p.item.tenant == item.tenant && p.item.inventory_id == *parent_id);
        let Some(parent) = parent else {
            return Err(ParentError::NotFound {
                parent: parent_id.to_string(),
                expected,
            });
        };
        if parent.deleted_at.is_some() {
            return Err(ParentError::Deleted {
                parent: parent_id.to_string(),
                expected,
            });
        }
        if parent.item.item_type != expected {
            return Err(ParentError::WrongType {
                parent: parent_id.to_string(),
                found: parent.item.item_type,
                child: item.item_type,
                expected,
            });
        }
    }
    if let Some(child) = child.filter(|c| c.deleted_at.is_none()) {
        let child_type = child.item.item_type;
        // A child's stored parent type; a type that takes no parent cannot be a child at all.
        let expected = parent_type(child_type).unwrap_or(child_type);
        if expected != item.item_type {
            return Err(ParentError::HasChildren {
                id: item.inventory_id.to_string(),
                new_type: item.item_type,
                child: child.item.inventory_id.to_string(),
                child_type,
                expected,
            });
        }
    }
    Ok(())
}

/// How many children [`CatalogStoreExt::children`] asks for per page.
const CHILDREN_PAGE: usize = 500;

/// Conveniences over [`CatalogStore`] for every store.
#[async_trait]
pub trait CatalogStoreExt: CatalogStore {
    /// Every non-deleted child of `parent` in `tenant`, ordered by inventory id (every page of
    /// [`CatalogStore::list_children`]). Empty when it has none or is not in the catalog.
    async fn children(
        &self,
        tenant: &TenantId,
        parent: &InventoryId,
    ) -> Result<Vec<CatalogItem>, StoreError> {
        let mut children = Vec::new();
        let mut page = PageRequest::first(CHILDREN_PAGE);
        loop {
            let got = self.list_children(tenant, parent, false, &page).await?;
            children.extend(got.items);
            match got.next {
                Some(next) => page.after = Some(next),
                None => return Ok(children),
            }
        }
    }

    /// The other non-deleted children of the parent of item `id` (an episode's siblings in its
    /// season), ordered by inventory id; empty when the item is not in the catalog (or is
    /// deleted) or has no parent.
    async fn siblings(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<Vec<CatalogItem>, StoreError> {
        let Some(item) = self.get_item(tenant, id, false).await? else {
            return Ok(Vec::new());
        };
        let Some(parent) = &item.item.parent_id else {
            return Ok(Vec::new());
        };
        let mut siblings = self.children(tenant, parent).await?;
        siblings.retain(|s| s.item.inventory_id != *id);
        Ok(siblings)
    }
}

impl<T: CatalogStore + ?Sized> CatalogStoreExt for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    const TYPES: [ItemType; 4] = [
        ItemType::Standalone,
        ItemType::Series,
        ItemType::Season,
        ItemType::Episode,
    ];

    fn upsert(tenant: &str, id: &str, item_type: ItemType, parent: Option<&str>) -> ItemUpsert {
        ItemUpsert {
            tenant: TenantId::new(tenant).expect("valid"),
            inventory_id: InventoryId::new(id).expect("valid"),
            item_type,
            title: id.into(),
            asset_url: format!("s3://media/{id}.mp4"),
            tags: Vec::new(),
            extra: serde_json::Map::new(),
            parent_id: parent.map(|p| InventoryId::new(p).expect("valid")),
        }
    }

    fn stored(item: ItemUpsert, deleted: bool) -> CatalogItem {
        CatalogItem {
            item,
            created_at: Timestamp::from_millis(1),
            updated_at: Timestamp::from_millis(1),
            deleted_at: deleted.then(|| Timestamp::from_millis(2)),
        }
    }

    #[test]
    fn every_child_and_parent_type_pair() {
        for child in TYPES {
            for parent in TYPES {
                let item = upsert("t1", "c", child, Some("p"));
                let found = stored(upsert("t1", "p", parent, None), false);
                let verdict = check_parent(&item, Some(&found), None);
                let allowed = matches!(
                    (child, parent),
                    (ItemType::Episode, ItemType::Season) | (ItemType::Season, ItemType::Series)
                );
                match verdict {
                    Ok(()) => assert!(allowed, "{child} under {parent} was accepted"),
                    Err(ParentError::TakesNoParent { item_type, .. }) => {
                        assert!(!allowed);
                        assert_eq!(item_type, child);
                        assert!(matches!(child, ItemType::Series | ItemType::Standalone));
                    }
                    Err(ParentError::WrongType {
                        found, expected, ..
                    }) => {
                        assert!(!allowed, "{child} under {parent}");
                        assert_eq!(found, parent);
                        assert_eq!(Some(expected), parent_type(child));
                    }
                    Err(other) => panic!("{child} under {parent}: unexpected {other}"),
                }
            }
        }
    }

    #[test]
    fn every_type_may_have_no_parent() {
        for item_type in TYPES {
            assert_eq!(
                check_parent(&upsert("t1", "a", item_type, None), None, None),
                Ok(())
            );
        }
    }

    #[test]
    fn missing_deleted_foreign_and_own_parents_are_refused() {
        let episode = upsert("t1", "e1", ItemType::Episode, Some("s1"));
        let missing = check_parent(&episode, None, None).expect_err("missing");
        assert_eq!(
            missing.to_string(),
            "parent_id \"s1\" is not in the catalog; ingest the season first"
        );
        let foreign = stored(upsert("t2", "s1", ItemType::Season, None), false);
        assert_eq!(
            check_parent(&episode, Some(&foreign), None),
            Err(missing.clone()),
            "another tenant's item is answered as a missing one"
        );
        let deleted = stored(upsert("t1", "s1", ItemType::Season, None), true);
        assert_eq!(
            check_parent(&episode, Some(&deleted), None)
                .expect_err("deleted")
                .to_string(),
            "parent_id \"s1\" is deleted; ingest the season again first"
        );
        let own = upsert("t1", "s1", ItemType::Season, Some("s1"));
        assert_eq!(
            check_parent(&own, Some(&deleted), None),
            Err(ParentError::OwnParent { id: "s1".into() })
        );
    }

    #[test]
    fn messages_name_the_field_the_value_and_the_rule() {
        let episode = upsert("t1", "e1", ItemType::Episode, Some("s1"));
        let series = stored(upsert("t1", "s1", ItemType::Series, None), false);
        let error = check_parent(&episode, Some(&series), None).expect_err("wrong type");
        assert_eq!(
            error.to_string(),
            "parent_id \"s1\" is a series; an episode's parent must be a season"
        );
        assert!(!error.is_conflict());
        assert!(matches!(
            StoreError::from(error),
            StoreError::Invalid {
                field: "parent_id",
                ..
            }
        ));
        let movie = upsert("t1", "m", ItemType::Standalone, Some("s1"));
        assert_eq!(
            check_parent(&movie, Some(&series), None)
                .expect_err("no parent")
                .to_string(),
            "parent_id \"s1\" given for a standalone; only an episode (in a season) and a \
             season (in a series) have a parent"
        );
    }

    #[test]
    fn a_type_change_its_children_cannot_follow_is_a_conflict() {
        for child_type in [ItemType::Episode, ItemType::Season] {
            let Some(parent_of_child) = parent_type(child_type) else {
                continue;
            };
            let child = stored(upsert("t1", "c", child_type, Some("p")), false);
            for new_type in TYPES {
                let item = upsert("t1", "p", new_type, None);
                let verdict = check_parent(&item, None, Some(&child));
                if new_type == parent_of_child {
                    assert_eq!(verdict, Ok(()));
                } else {
                    let error = verdict.expect_err("conflict");
                    assert!(error.is_conflict(), "{error}");
                    assert!(matches!(StoreError::from(error), StoreError::Conflict(_)));
                }
                let gone = stored(upsert("t1", "c", child_type, Some("p")), true);
                assert_eq!(
                    check_parent(&item, None, Some(&gone)),
                    Ok(()),
                    "deleted children do not hold their parent's type"
                );
            }
        }
        let season = upsert("t1", "s1", ItemType::Standalone, None);
        let episode = stored(upsert("t1", "e1", ItemType::Episode, Some("s1")), false);
        assert_eq!(
            check_parent(&season, None, Some(&episode))
                .expect_err("conflict")
                .to_string(),
            "\"s1\" has children (e.g. an episode \"e1\"), whose parent must be a season; it \
             cannot become a standalone: move or delete its children first"
        );
    }
}
