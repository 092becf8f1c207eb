//! [`CatalogStore`] and [`ResultStore`] for [`SledStore`].

use std::ops::Bound;

use async_trait::async_trait;
use task_core::catalog::{CatalogItem, DeletedItem, ItemUpsert};
use task_core::hierarchy::check_parent;
use task_core::ids::{InventoryId, ProductName, TaskId, TenantId, Version};
use task_core::machine::{Authority, TaskEvent};
use task_core::results::AnalysisResult;
use task_core::store::{CatalogStore, Page, PageRequest, ResultStore, StoreError};
use task_core::task::Task;
use task_core::time::Timestamp;

use crate::codec::{decode, encode};
use crate::committer::{Done, Op};
use crate::layout::{Tk, tree};
use crate::stage::Stage;
use crate::{SledStore, keys, unexpected};

/// Decodes an item record, or reports it (once per key and process) and skips it: one bad
/// record must not fail every listing that contains it, nor block its own overwrite.
fn decode_or_report(ctx: &crate::error::Ctx, key: &[u8], bytes: &[u8]) -> Option<CatalogItem> {
    static REPORTED: std::sync::Mutex<Option<std::collections::HashSet<Vec<u8>>>> =
        std::sync::Mutex::new(None);
    match decode(ctx, tree::ITEMS, key, bytes) {
        Ok(item) => Some(item),
        Err(err) => {
            let mut reported = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
            if reported.get_or_insert_default().insert(key.to_vec()) {
                tracing::error!(error = %err, "skipping a catalog record that cannot be decoded");
            }
            None
        }
    }
}

/// The first `limit` (at least 1) items, soft-deleted ones only with `include_deleted`, and
/// the cursor after them if more follow.
fn take_page(
    items: impl Iterator<Item = Result<CatalogItem, StoreError>>,
    include_deleted: bool,
    limit: usize,
) -> Result<Page<CatalogItem>, StoreError> {
    let limit = limit.max(1);
    let mut page: Vec<CatalogItem> = Vec::new();
    for item in items {
        let item = item?;
        if !include_deleted && item.deleted_at.is_some() {
            continue;
        }
        if page.len() == limit {
            let next = page.last().map(|i| i.item.inventory_id.to_string());
            return Ok(Page { items: page, next });
        }
        page.push(item);
    }
    Ok(Page {
        items: page,
        next: None,
    })
}

/// The key of [`Tk::Children`]: (tenant, parent, child).
fn child_key(tenant: &TenantId, parent: &InventoryId, child: &InventoryId) -> Vec<u8> {
    keys::strings(&[tenant.as_str(), parent.as_str(), child.as_str()])
}

/// The item key of the child named by a [`Tk::Children`] value (its inventory id, as bytes).
fn item_key_of(tenant: &TenantId, child: &[u8]) -> Vec<u8> {
    let mut key = keys::strings(&[tenant.as_str()]);
    keys::push_str(&mut key, &String::from_utf8_lossy(child));
    key
}

fn item_not_found(id: &InventoryId) -> StoreError {
    StoreError::NotFound {
        what: "catalog item",
        id: id.to_string(),
    }
}

#[async_trait]
impl CatalogStore for SledStore {
    async fn upsert_item(&self, item: ItemUpsert) -> Result<(CatalogItem, bool), StoreError> {
        item.check()?;
        match self.live()?.write(Op::Upsert(item)).await? {
            Done::Upserted(item, created) => Ok((item, created)),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
        include_deleted: bool,
    ) -> Result<Option<CatalogItem>, StoreError> {
        let inner = &self.live()?;
        let key = keys::strings(&[tenant.as_str(), id.as_str()]);
        let item: Option<CatalogItem> = inner
            .trees
            .view(Tk::Items)
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
        let inner = &self.live()?;
        let after = page.item_cursor()?;
        let prefix = keys::strings(&[tenant.as_str()]);
        let start = match after {
            Some(id) => Bound::Excluded(keys::strings(&[tenant.as_str(), id.as_str()])),
            None => Bound::Included(prefix.clone()),
        };
        let end = keys::after_prefix(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let items =
            inner
                .trees
                .view(Tk::Items)
                .range((start, end))
                .filter_map(|entry| match entry {
                    Ok((key, value)) => decode_or_report(&inner.ctx, &key, &value).map(Ok),
                    Err(e) => Some(Err(inner.ctx.backend("listing items", e))),
                });
        take_page(items, include_deleted, page.limit)
    }

    async fn list_children(
        &self,
        tenant: &TenantId,
        parent: &InventoryId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        let inner = &self.live()?;
        let after = page.item_cursor()?;
        let prefix = keys::strings(&[tenant.as_str(), parent.as_str()]);
        let start = match after {
            Some(id) => Bound::Excluded(child_key(tenant, parent, &id)),
            None => Bound::Included(prefix.clone()),
        };
        let end = keys::after_prefix(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let view = inner.trees.view(Tk::Items);
        let children = inner
            .trees
            .view(Tk::Children)
            .range((start, end))
            .filter_map(|entry| {
                let (_, child) = match entry {
                    Ok(entry) => entry,
                    Err(e) => return Some(Err(inner.ctx.backend("listing children", e))),
                };
                let item_key = item_key_of(tenant, &child);
                match view.get(&item_key) {
                    Ok(bytes) => bytes
                        .and_then(|bytes| decode_or_report(&inner.ctx, &item_key, &bytes))
                        // An index entry is only a hint: the record says who its parent is.
                        .filter(|item| item.item.parent_id.as_ref() == Some(parent))
                        .map(Ok),
                    Err(e) => Some(Err(inner.ctx.backend("reading a child item", e))),
                }
            });
        take_page(children, include_deleted, page.limit)
    }

    async fn delete_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<DeletedItem, StoreError> {
        let inner = &self.live()?;
        match inner
            .write(Op::DeleteItem(tenant.clone(), id.clone()))
            .await?
        {
            Done::Deleted(item, cancelled) => {
                task_core::telemetry::tasks_ended_by_the_store(&cancelled);
                inner.notify(&cancelled);
                Ok(DeletedItem {
                    item,
                    cancelled_tasks: cancelled.iter().map(|t| t.id).collect(),
                })
            }
            other => Err(unexpected(&other)),
        }
    }
}

#[async_trait]
impl ResultStore for SledStore {
    async fn put_result(&self, result: AnalysisResult) -> Result<(), StoreError> {
        match self.live()?.write(Op::PutResult(result)).await? {
            Done::Stored => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_result(
        &self,
        tenant: &TenantId,
        product: &ProductName,
        inventory_id: &InventoryId,
        version: Option<&Version>,
    ) -> Result<Option<AnalysisResult>, StoreError> {
        let inner = &self.live()?;
        let results = inner.trees.view(Tk::Results);
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
        let inner = &self.live()?;
        inner
            .trees
            .view(Tk::Cache)
            .get(key.as_bytes())
            .map_err(|e| inner.ctx.backend("reading the cache", e))?
            .map(|bytes| decode(&inner.ctx, tree::CACHE, key.as_bytes(), &bytes))
            .transpose()
    }

    async fn cache_put(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        match self
            .live()?
            .write(Op::CachePut(key.to_owned(), value))
            .await?
        {
            Done::Stored => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

impl Stage<'_> {
    /// Creates or replaces an item (un-deleting it). Returns the item and whether it is new.
    pub fn upsert_item(
        &mut self,
        item: ItemUpsert,
        now: Timestamp,
    ) -> Result<(CatalogItem, bool), StoreError> {
        let key = keys::strings(&[item.tenant.as_str(), item.inventory_id.as_str()]);
        // A record that cannot be read is replaced, not a reason to refuse the new one.
        let previous = self.stored_item(&key)?;
        let parent = match &item.parent_id {
            Some(parent) => {
                self.stored_item(&keys::strings(&[item.tenant.as_str(), parent.as_str()]))?
            }
            None => None,
        };
        // Children only matter when the type changes: they were valid under the stored one.
        let child = match &previous {
            Some(p) if p.item.item_type != item.item_type => {
                self.live_child(&item.tenant, &item.inventory_id)?
            }
            _ => None,
        };
        check_parent(&item, parent.as_ref(), child.as_ref())?;
        let old_parent = previous.as_ref().and_then(|p| p.item.parent_id.as_ref());
        if old_parent != item.parent_id.as_ref() {
            if let Some(old) = old_parent {
                self.del(
                    Tk::Children,
                    child_key(&item.tenant, old, &item.inventory_id),
                );
            }
            if let Some(new) = &item.parent_id {
                self.put(
                    Tk::Children,
                    child_key(&item.tenant, new, &item.inventory_id),
                    item.inventory_id.as_str().as_bytes(),
                );
            }
        }
        let created = previous.as_ref().is_none_or(|p| p.deleted_at.is_some());
        let stored = CatalogItem {
            item,
            created_at: previous
                .as_ref()
                .filter(|_| !created)
                .map_or(now, |p| p.created_at),
            updated_at: now,
            deleted_at: None,
        };
        self.put(Tk::Items, key, encode(&stored)?);
        Ok((stored, created))
    }

    /// The item stored at `key`, deleted or not; None if there is none or it cannot be read.
    fn stored_item(&self, key: &[u8]) -> Result<Option<CatalogItem>, StoreError> {
        Ok(self
            .get(Tk::Items, key)?
            .and_then(|bytes| decode_or_report(self.ctx, key, &bytes)))
    }

    /// One non-deleted child of `parent`, if it has any.
    fn live_child(
        &self,
        tenant: &TenantId,
        parent: &InventoryId,
    ) -> Result<Option<CatalogItem>, StoreError> {
        let prefix = keys::strings(&[tenant.as_str(), parent.as_str()]);
        let end = keys::after_prefix(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        for entry in self.range(Tk::Children, (Bound::Included(prefix), end)) {
            let (_, child) = entry?;
            let child = self.stored_item(&item_key_of(tenant, &child))?;
            if let Some(child) = child
                .filter(|c| c.deleted_at.is_none() && c.item.parent_id.as_ref() == Some(parent))
            {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }

    /// Soft-deletes an item and requests cancel of its active tasks.
    pub fn delete_item(
        &mut self,
        tenant: &TenantId,
        id: &InventoryId,
        now: Timestamp,
    ) -> Result<(CatalogItem, Vec<Task>), StoreError> {
        let key = keys::strings(&[tenant.as_str(), id.as_str()]);
        let mut item: CatalogItem = match self.get(Tk::Items, &key)? {
            Some(bytes) => decode(self.ctx, tree::ITEMS, &key, &bytes)?,
            None => return Err(item_not_found(id)),
        };
        if item.deleted_at.is_some() {
            return Err(item_not_found(id));
        }
        item.deleted_at = Some(now);
        item.updated_at = now;
        self.put(Tk::Items, key.clone(), encode(&item)?);
        // The active index is keyed (tenant, inventory id, product, version): the item's
        // active tasks are exactly the entries under its prefix.
        let end = keys::after_prefix(&key).map_or(Bound::Unbounded, Bound::Excluded);
        let mut active: Vec<TaskId> = Vec::new();
        for entry in self.range(Tk::Active, (Bound::Included(key.clone()), end)) {
            let (index_key, raw) = entry?;
            active.push(keys::trailing_id(&raw).ok_or_else(|| {
                self.ctx
                    .corrupt(tree::ACTIVE, &index_key, "malformed task id")
            })?);
        }
        let mut cancelled: Vec<Task> = Vec::new();
        for task_id in active {
            let Some(stored) = self.load(task_id)? else {
                continue;
            };
            if !stored.task.status().is_active() || stored.task.cancel_requested() {
                continue;
            }
            match self.apply(
                task_id,
                Authority::System,
                &[TaskEvent::CancelRequested],
                now,
            ) {
                Ok(task) => cancelled.push(task),
                Err(StoreError::Transition(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok((item, cancelled))
    }

    /// Stores a result, replacing any for the same key.
    pub fn put_result(&mut self, result: &AnalysisResult) -> Result<(), StoreError> {
        let key = keys::strings(&[
            result.tenant.as_str(),
            result.product.as_str(),
            result.inventory_id.as_str(),
            result.version.as_str(),
        ]);
        self.put(Tk::Results, key, encode(result)?);
        Ok(())
    }

    /// Stores a cached step output.
    pub fn cache_put(&mut self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.put(Tk::Cache, key.as_bytes().to_vec(), encode(value)?);
        Ok(())
    }
}
