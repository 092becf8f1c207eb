//! [`CatalogStore`] and [`ResultStore`] for [`SledStore`].

use std::ops::Bound;

use async_trait::async_trait;
use sled::transaction::ConflictableTransactionError;
use task_core::catalog::{CatalogItem, DeletedItem, ItemUpsert};
use task_core::ids::{InventoryId, ProductName, TaskId, TenantId, Version};
use task_core::machine::{Authority, TaskEvent};
use task_core::results::AnalysisResult;
use task_core::store::{CatalogStore, Page, PageRequest, ResultStore, StoreError};
use task_core::task::Task;

use crate::codec::{decode, encode};
use crate::open::tree;
use crate::txn::abort;
use crate::{SledStore, keys};

fn item_not_found(id: &InventoryId) -> StoreError {
    StoreError::NotFound {
        what: "catalog item",
        id: id.to_string(),
    }
}

#[async_trait]
impl CatalogStore for SledStore {
    async fn upsert_item(&self, item: ItemUpsert) -> Result<(CatalogItem, bool), StoreError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let key = keys::strings(&[item.tenant.as_str(), item.inventory_id.as_str()]);
        let ctx = &inner.ctx;
        let outcome = inner
            .trees
            .items
            .transaction(|items| {
                let previous: Option<CatalogItem> = items
                    .get(&key)?
                    .map(|bytes| decode(ctx, tree::ITEMS, &key, &bytes))
                    .transpose()
                    .map_err(abort)?;
                let created = previous.as_ref().is_none_or(|p| p.deleted_at.is_some());
                let stored = CatalogItem {
                    item: item.clone(),
                    created_at: previous
                        .as_ref()
                        .filter(|_| !created)
                        .map_or(now, |p| p.created_at),
                    updated_at: now,
                    deleted_at: None,
                };
                items.insert(key.as_slice(), encode(&stored).map_err(abort)?)?;
                Ok((stored, created))
            })
            .map_err(|e| ctx.transaction("upserting an item", e))?;
        inner.durable().await?;
        Ok(outcome)
    }

    async fn get_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
        include_deleted: bool,
    ) -> Result<Option<CatalogItem>, StoreError> {
        let inner = &self.inner;
        let key = keys::strings(&[tenant.as_str(), id.as_str()]);
        let item: Option<CatalogItem> = inner
            .trees
            .items
            .get(&key)
            .map_err(|e| inner.ctx.backend("reading an item", e))?
            .map(|bytes| decode(&inner.ctx, tree::ITEMS, &key, &bytes))
            .transpose()?;
        Ok(item.filter(|i| include_deleted || i.deleted_at.is_none()))
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        let inner = &self.inner;
        let after = page
            .after
            .as_deref()
            .map(InventoryId::new)
            .transpose()
            .map_err(|e| StoreError::Invalid {
                field: "cursor",
                reason: e.to_string(),
            })?;
        let limit = page.limit.max(1);
        let prefix = keys::strings(&[tenant.as_str()]);
        let start = match after {
            Some(id) => Bound::Excluded(keys::strings(&[tenant.as_str(), id.as_str()])),
            None => Bound::Included(prefix.clone()),
        };
        let end = keys::after_prefix(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let mut items: Vec<CatalogItem> = Vec::new();
        let mut next = None;
        for entry in inner.trees.items.range::<Vec<u8>, _>((start, end)) {
            let (key, value) = entry.map_err(|e| inner.ctx.backend("listing items", e))?;
            let item: CatalogItem = decode(&inner.ctx, tree::ITEMS, &key, &value)?;
            if !include_deleted && item.deleted_at.is_some() {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|i| i.item.inventory_id.to_string());
                break;
            }
            items.push(item);
        }
        Ok(Page { items, next })
    }

    async fn delete_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<DeletedItem, StoreError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let key = keys::strings(&[tenant.as_str(), id.as_str()]);
        let (item, cancelled) = {
            let _guard = inner.scan_guard();
            // The active index is keyed (tenant, inventory id, product, version): the item's
            // active tasks are exactly the entries under its prefix.
            let mut active: Vec<TaskId> = Vec::new();
            for entry in inner.trees.active.scan_prefix(&key) {
                let (index_key, raw) =
                    entry.map_err(|e| inner.ctx.backend("scanning active tasks", e))?;
                active.push(keys::trailing_id(&raw).ok_or_else(|| {
                    inner
                        .ctx
                        .corrupt(tree::ACTIVE, &index_key, "malformed task id")
                })?);
            }
            inner
                .trees
                .transaction(&inner.ctx, "deleting an item", |tx| {
                    let mut item: CatalogItem = match tx.items.get(&key)? {
                        Some(bytes) => decode(tx.ctx, tree::ITEMS, &key, &bytes).map_err(abort)?,
                        None => return Err(abort(item_not_found(id))),
                    };
                    if item.deleted_at.is_some() {
                        return Err(abort(item_not_found(id)));
                    }
                    item.deleted_at = Some(now);
                    item.updated_at = now;
                    tx.items
                        .insert(key.as_slice(), encode(&item).map_err(abort)?)?;
                    let mut cancelled: Vec<Task> = Vec::new();
                    for task_id in &active {
                        let Some(stored) = tx.load(*task_id)? else {
                            continue;
                        };
                        if !stored.task.status().is_active() || stored.task.cancel_requested() {
                            continue;
                        }
                        match tx.apply(
                            *task_id,
                            Authority::System,
                            &[TaskEvent::CancelRequested],
                            now,
                        ) {
                            Ok(task) => cancelled.push(task),
                            Err(ConflictableTransactionError::Abort(StoreError::Transition(_))) => {
                            }
                            Err(err) => return Err(err),
                        }
                    }
                    Ok((item, cancelled))
                })?
        };
        inner.durable().await?;
        inner.notify(&cancelled);
        Ok(DeletedItem {
            item,
            cancelled_tasks: cancelled.iter().map(|t| t.id).collect(),
        })
    }
}

#[async_trait]
impl ResultStore for SledStore {
    async fn put_result(&self, result: AnalysisResult) -> Result<(), StoreError> {
        let inner = &self.inner;
        let key = keys::strings(&[
            result.tenant.as_str(),
            result.product.as_str(),
            result.inventory_id.as_str(),
            result.version.as_str(),
        ]);
        inner
            .trees
            .results
            .insert(key, encode(&result)?)
            .map_err(|e| inner.ctx.backend("writing a result", e))?;
        inner.durable().await
    }

    async fn get_result(
        &self,
        tenant: &TenantId,
        product: &ProductName,
        inventory_id: &InventoryId,
        version: Option<&Version>,
    ) -> Result<Option<AnalysisResult>, StoreError> {
        let inner = &self.inner;
        let results = &inner.trees.results;
        if let Some(version) = version {
            let key = keys::strings(&[
                tenant.as_str(),
                product.as_str(),
                inventory_id.as_str(),
                version.as_str(),
            ]);
            return results
                .get(&key)
                .map_err(|e| inner.ctx.backend("reading a result", e))?
                .map(|bytes| decode(&inner.ctx, tree::RESULTS, &key, &bytes))
                .transpose();
        }
        let prefix = keys::strings(&[tenant.as_str(), product.as_str(), inventory_id.as_str()]);
        let mut latest: Option<AnalysisResult> = None;
        for entry in results.scan_prefix(&prefix) {
            let (key, value) = entry.map_err(|e| inner.ctx.backend("reading results", e))?;
            let result: AnalysisResult = decode(&inner.ctx, tree::RESULTS, &key, &value)?;
            // Ties go to the later key (the greater version), as in the reference store.
            if latest
                .as_ref()
                .is_none_or(|l| result.updated_at >= l.updated_at)
            {
                latest = Some(result);
            }
        }
        Ok(latest)
    }

    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let inner = &self.inner;
        inner
            .trees
            .cache
            .get(key.as_bytes())
            .map_err(|e| inner.ctx.backend("reading the cache", e))?
            .map(|bytes| decode(&inner.ctx, tree::CACHE, key.as_bytes(), &bytes))
            .transpose()
    }

    async fn cache_put(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner
            .trees
            .cache
            .insert(key.as_bytes(), encode(&value)?)
            .map_err(|e| inner.ctx.backend("writing the cache", e))?;
        inner.durable().await
    }
}
