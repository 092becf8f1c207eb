//! [`CatalogStore`] and [`ResultStore`] for [`MemoryStore`].

use std::collections::BTreeMap;
use std::ops::Bound;

use async_trait::async_trait;

use super::MemoryStore;
use crate::catalog::{CatalogItem, DeletedItem, ItemUpsert};
use crate::hierarchy::check_parent;
use crate::ids::{InventoryId, ProductName, TaskId, TenantId, Version};
use crate::machine::{Authority, TaskEvent};
use crate::results::AnalysisResult;
use crate::store::{CatalogStore, Page, PageRequest, ResultStore, StoreError};

type Items = BTreeMap<(TenantId, InventoryId), CatalogItem>;

/// The items of `tenant` after inventory id `after`, in order.
fn tenant_items<'a>(
    items: &'a Items,
    tenant: &'a TenantId,
    after: Option<InventoryId>,
) -> impl Iterator<Item = &'a CatalogItem> + 'a {
    let start = match after {
        Some(id) => Bound::Excluded((tenant.clone(), id)),
        None => Bound::Unbounded,
    };
    items
        .range((start, Bound::Unbounded))
        .skip_while(move |((owner, _), _)| owner < tenant)
        .take_while(move |((owner, _), _)| owner == tenant)
        .map(|(_, item)| item)
}

/// Whether `item`'s parent is `parent`.
fn is_child(item: &CatalogItem, parent: &InventoryId) -> bool {
    item.item.parent_id.as_ref() == Some(parent)
}

/// The first `limit` (at least 1) of `items`, and the cursor after them if more follow.
fn page_of<'a>(
    mut items: impl Iterator<Item = &'a CatalogItem>,
    limit: usize,
) -> Page<CatalogItem> {
    let page: Vec<CatalogItem> = items.by_ref().take(limit.max(1)).cloned().collect();
    let next = match items.next() {
        Some(_) => page.last().map(|i| i.item.inventory_id.to_string()),
        None => None,
    };
    Page { items: page, next }
}

#[async_trait]
impl CatalogStore for MemoryStore {
    async fn upsert_item(&self, item: ItemUpsert) -> Result<(CatalogItem, bool), StoreError> {
        item.check()?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let key = (item.tenant.clone(), item.inventory_id.clone());
        let previous = inner.items.get(&key);
        let parent = item
            .parent_id
            .as_ref()
            .and_then(|parent| inner.items.get(&(item.tenant.clone(), parent.clone())));
        // Children only matter when the type changes: they were valid under the stored one.
        let child = previous
            .filter(|p| p.item.item_type != item.item_type)
            .and_then(|_| {
                tenant_items(&inner.items, &item.tenant, None)
                    .find(|c| c.deleted_at.is_none() && is_child(c, &item.inventory_id))
            });
        check_parent(&item, parent, child)?;
        let created = previous.is_none_or(|p| p.deleted_at.is_some());
        let stored = CatalogItem {
            item,
            created_at: previous.filter(|_| !created).map_or(now, |p| p.created_at),
            updated_at: now,
            deleted_at: None,
        };
        inner.items.insert(key, stored.clone());
        Ok((stored, created))
    }

    async fn get_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
        include_deleted: bool,
    ) -> Result<Option<CatalogItem>, StoreError> {
        Ok(self
            .lock()
            .items
            .get(&(tenant.clone(), id.clone()))
            .filter(|item| include_deleted || item.deleted_at.is_none())
            .cloned())
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        let after = page.item_cursor()?;
        let inner = self.lock();
        let items = tenant_items(&inner.items, tenant, after)
            .filter(|item| include_deleted || item.deleted_at.is_none());
        Ok(page_of(items, page.limit))
    }

    async fn list_children(
        &self,
        tenant: &TenantId,
        parent: &InventoryId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        let after = page.item_cursor()?;
        let inner = self.lock();
        let items = tenant_items(&inner.items, tenant, after).filter(|item| {
            (include_deleted || item.deleted_at.is_none()) && is_child(item, parent)
        });
        Ok(page_of(items, page.limit))
    }

    async fn delete_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<DeletedItem, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let key = (tenant.clone(), id.clone());
        let item = match inner.items.get_mut(&key) {
            Some(item) if item.deleted_at.is_none() => {
                item.deleted_at = Some(now);
                item.updated_at = now;
                item.clone()
            }
            _ => {
                return Err(StoreError::NotFound {
                    what: "catalog item",
                    id: id.to_string(),
                });
            }
        };
        let active: Vec<TaskId> = inner
            .active
            .iter()
            .filter(|(key, _)| key.tenant == *tenant && key.inventory_id == *id)
            .map(|(_, task)| *task)
            .collect();
        let mut cancelled = Vec::new();
        for task_id in active {
            let already = inner
                .tasks
                .get(&task_id)
                .is_some_and(|t| t.cancel_requested());
            if !already {
                cancelled.push(inner.apply(
                    task_id,
                    Authority::System,
                    &[TaskEvent::CancelRequested],
                    now,
                )?);
            }
        }
        drop(inner);
        crate::telemetry::tasks_ended_by_the_store(&cancelled);
        self.notify(&cancelled);
        Ok(DeletedItem {
            item,
            cancelled_tasks: cancelled.iter().map(|t| t.id).collect(),
        })
    }
}

#[async_trait]
impl ResultStore for MemoryStore {
    async fn put_result(&self, result: AnalysisResult) -> Result<(), StoreError> {
        let key = (
            result.tenant.clone(),
            result.product.clone(),
            result.inventory_id.clone(),
            result.version.clone(),
        );
        self.lock().results.insert(key, result);
        Ok(())
    }

    async fn get_result(
        &self,
        tenant: &TenantId,
        product: &ProductName,
        inventory_id: &InventoryId,
        version: Option<&Version>,
    ) -> Result<Option<AnalysisResult>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .results
            .values()
            .filter(|r| {
                r.tenant == *tenant
                    && r.product == *product
                    && r.inventory_id == *inventory_id
                    && version.is_none_or(|v| *v == r.version)
            })
            .max_by_key(|r| r.updated_at)
            .cloned())
    }

    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self.lock().cache.get(key).cloned())
    }

    async fn cache_put(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        self.lock().cache.insert(key.to_owned(), value);
        Ok(())
    }
}
