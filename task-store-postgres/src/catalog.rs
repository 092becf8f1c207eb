//! [`CatalogStore`] and [`ResultStore`] for [`PostgresStore`].

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use task_core::catalog::{CatalogItem, DeletedItem, ItemUpsert};
use task_core::hierarchy::check_parent;
use task_core::ids::{InventoryId, ProductName, TenantId, Version};
use task_core::machine::{Authority, TaskEvent, transition};
use task_core::results::AnalysisResult;
use task_core::store::{CatalogStore, Page, PageRequest, ResultStore, StoreError};
use task_core::task::Task;
use task_core::time::Timestamp;

use crate::PostgresStore;
use crate::error::encode_error;
use crate::rows::{HistoryRows, TaskRows, millis, timestamp};
use crate::tasks::decode_locked;
use crate::write::update_tasks;

/// How often an upsert retries after losing the race to insert a new item.
const UPSERT_ROUNDS: usize = 3;

type ItemRow = (String, i64, i64, Option<i64>);

impl PostgresStore {
    fn decode_item(&self, tenant: &TenantId, row: ItemRow) -> Result<CatalogItem, StoreError> {
        let (item, created_at, updated_at, deleted_at) = row;
        let item: ItemUpsert = serde_json::from_str(&item).map_err(|e| {
            self.shared
                .ctx
                .corrupt("catalog_items", format_args!("tenant {tenant}"), e)
        })?;
        Ok(CatalogItem {
            item,
            created_at: timestamp(created_at),
            updated_at: timestamp(updated_at),
            deleted_at: deleted_at.map(timestamp),
        })
    }
}

/// The columns of an item as [`PostgresStore::decode_item`] reads them.
const ITEM_COLUMNS: &str = "item::text, created_at, updated_at, deleted_at";

impl PostgresStore {
    /// Replaces or inserts `item` in `conn`, its parent link checked first: its creation time
    /// and whether it is new, or None if another transaction inserted it first.
    ///
    /// The item's row is locked `FOR UPDATE` and its parent's `FOR SHARE` until the commit,
    /// so neither can change under the check: a concurrent delete or type change of the
    /// parent waits for this upsert (and a later child upsert waits for them, then sees the
    /// change), and a new child of this item waits for its type change (whose check of the
    /// children runs after the lock, so it sees a child committed before).
    async fn upsert_in(
        &self,
        conn: &mut PgConnection,
        item: &ItemUpsert,
        doc: &str,
        now: Timestamp,
    ) -> Result<Option<(i64, bool)>, StoreError> {
        let input = format!("item {}/{}", item.tenant, item.inventory_id);
        let fail = |e| self.shared.ctx.db("upserting a catalog item", &input, e);
        let previous: Option<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT created_at, deleted_at, item->>'item_type' FROM catalog_items
             WHERE tenant = $1 AND inventory_id = $2 FOR UPDATE",
        )
        .bind(item.tenant.as_str())
        .bind(item.inventory_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(fail)?;
        let parent = match &item.parent_id {
            Some(parent) if *parent != item.inventory_id => {
                self.item_in(conn, &item.tenant, parent, "FOR SHARE")
                    .await?
            }
            _ => None,
        };
        let type_changed = previous
            .as_ref()
            .is_some_and(|(_, _, stored)| stored.as_deref() != Some(item.item_type.as_str()));
        let child = if type_changed {
            self.live_child_in(conn, &item.tenant, &item.inventory_id)
                .await?
        } else {
            None
        };
        check_parent(item, parent.as_ref(), child.as_ref())?;
        let (created_at, created) = match previous {
            Some((created_at, None, _)) => (created_at, false),
            // A deleted item comes back as a new one.
            Some((_, Some(_), _)) | None => (millis(now), true),
        };
        let parent_id = item.parent_id.as_ref().map(|p| p.as_str());
        let stored = if previous.is_some() {
            sqlx::query(
                "UPDATE catalog_items SET item = $3::jsonb, created_at = $4, updated_at = $5,
                     deleted_at = NULL, parent_id = $6
                 WHERE tenant = $1 AND inventory_id = $2",
            )
            .bind(item.tenant.as_str())
            .bind(item.inventory_id.as_str())
            .bind(doc)
            .bind(created_at)
            .bind(millis(now))
            .bind(parent_id)
            .execute(&mut *conn)
            .await
        } else {
            sqlx::query(
                "INSERT INTO catalog_items
                     (tenant, inventory_id, item, created_at, updated_at, parent_id)
                 VALUES ($1, $2, $3::jsonb, $4, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(item.tenant.as_str())
            .bind(item.inventory_id.as_str())
            .bind(doc)
            .bind(millis(now))
            .bind(parent_id)
            .execute(&mut *conn)
            .await
        }
        .map_err(fail)?;
        Ok((stored.rows_affected() == 1).then_some((created_at, created)))
    }

    /// An item of `tenant` in `conn`, deleted or not, read with `lock` (`FOR SHARE`...).
    async fn item_in(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        id: &InventoryId,
        lock: &'static str,
    ) -> Result<Option<CatalogItem>, StoreError> {
        let row: Option<ItemRow> = sqlx::query_as(&format!(
            "SELECT {ITEM_COLUMNS} FROM catalog_items
             WHERE tenant = $1 AND inventory_id = $2 {lock}"
        ))
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| {
            self.shared.ctx.db(
                "reading a parent item",
                format_args!("item {tenant}/{id}"),
                e,
            )
        })?;
        row.map(|row| self.decode_item(tenant, row)).transpose()
    }

    /// One non-deleted child of `parent`, if it has any.
    async fn live_child_in(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        parent: &InventoryId,
    ) -> Result<Option<CatalogItem>, StoreError> {
        let row: Option<ItemRow> = sqlx::query_as(&format!(
            "SELECT {ITEM_COLUMNS} FROM catalog_items
             WHERE tenant = $1 AND parent_id = $2 AND deleted_at IS NULL
             ORDER BY inventory_id LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(parent.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| {
            self.shared.ctx.db(
                "finding an item's children",
                format_args!("item {tenant}/{parent}"),
                e,
            )
        })?;
        row.map(|row| self.decode_item(tenant, row)).transpose()
    }
}

impl PostgresStore {
    /// A page of `tenant`'s items by inventory id, only the children of `parent` if given.
    async fn list_where(
        &self,
        tenant: &TenantId,
        parent: Option<&InventoryId>,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        let after = page.item_cursor()?;
        let limit = page.limit.max(1);
        // Two statements, not `($5 IS NULL OR ...)`: a generic plan of that could not use the
        // index of children.
        let by_parent = if parent.is_some() {
            "AND parent_id = $5"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM catalog_items
             WHERE tenant = $1 AND ($2::text IS NULL OR inventory_id > $2)
               AND ($3 OR deleted_at IS NULL) {by_parent}
             ORDER BY inventory_id LIMIT $4"
        );
        let mut query = sqlx::query_as(&sql)
            .bind(tenant.as_str())
            .bind(after.as_ref().map(|a| a.as_str()))
            .bind(include_deleted)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1);
        if let Some(parent) = parent {
            query = query.bind(parent.as_str());
        }
        let rows: Vec<ItemRow> = query.fetch_all(&self.shared.pool).await.map_err(|e| {
            self.shared
                .ctx
                .db("listing catalog items", format_args!("tenant {tenant}"), e)
        })?;
        let mut items = rows
            .into_iter()
            .map(|row| self.decode_item(tenant, row))
            .collect::<Result<Vec<_>, _>>()?;
        let mut next = None;
        if items.len() > limit {
            items.truncate(limit);
            next = items.last().map(|i| i.item.inventory_id.to_string());
        }
        Ok(Page { items, next })
    }

    /// Soft-deletes an item in `conn` and asks to cancel its active tasks: the item and the
    /// tasks written.
    async fn delete_in(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        id: &InventoryId,
        now: Timestamp,
    ) -> Result<(CatalogItem, Vec<Task>), StoreError> {
        let shared = &self.shared;
        let input = format!("item {tenant}/{id}");
        let fail = |e| shared.ctx.db("deleting a catalog item", &input, e);
        let row: Option<ItemRow> = sqlx::query_as(
            "UPDATE catalog_items SET deleted_at = $3, updated_at = $3
             WHERE tenant = $1 AND inventory_id = $2 AND deleted_at IS NULL
             RETURNING item::text, created_at, updated_at, deleted_at",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(millis(now))
        .fetch_optional(&mut *conn)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                what: "catalog item",
                id: id.to_string(),
            });
        };
        let item = self.decode_item(tenant, row)?;
        let active: Vec<(Uuid, i64, String)> = sqlx::query_as(
            "SELECT id, seq, doc::text FROM tasks
             WHERE tenant = $1 AND inventory_id = $2 AND status IN ('pending', 'processing')
             ORDER BY id FOR UPDATE",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(fail)?;
        let mut locked: Vec<_> = decode_locked(shared, active)?.into_values().collect();
        locked.sort_by_key(|l| l.task.id);
        let mut writes = TaskRows::default();
        let mut history = HistoryRows::default();
        let mut cancelled = Vec::new();
        for current in locked
            .into_iter()
            .filter(|l| l.task.status().is_active() && !l.task.cancel_requested())
        {
            let step = transition(
                &current.task,
                &TaskEvent::CancelRequested,
                Authority::System,
                now,
            )?;
            writes.push(Some(&current.task), &step.task, current.seq)?;
            history.push(&step.task, [&step.entry])?;
            cancelled.push(step.task);
        }
        update_tasks(shared, conn, writes, history).await?;
        Ok((item, cancelled))
    }
}

#[async_trait]
impl CatalogStore for PostgresStore {
    async fn upsert_item(&self, item: ItemUpsert) -> Result<(CatalogItem, bool), StoreError> {
        item.check()?;
        let shared = &self.shared;
        let now = shared.clock.now();
        let doc = serde_json::to_string(&item).map_err(|e| encode_error("a catalog item", e))?;
        let input = format!("item {}/{}", item.tenant, item.inventory_id);
        for _ in 0..UPSERT_ROUNDS {
            let mut tx = shared.begin("upserting a catalog item").await?;
            let result = self.upsert_in(&mut tx, &item, &doc, now).await;
            let outcome = shared
                .finish(tx, result, "upserting a catalog item", &input)
                .await?;
            // None: another upsert inserted the item first; lock it and replace it.
            if let Some((created_at, created)) = outcome {
                let stored = CatalogItem {
                    item,
                    created_at: timestamp(created_at),
                    updated_at: now,
                    deleted_at: None,
                };
                return Ok((stored, created));
            }
        }
        Err(StoreError::Conflict(format!(
            "{input} kept changing during {UPSERT_ROUNDS} upsert attempts"
        )))
    }

    async fn get_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
        include_deleted: bool,
    ) -> Result<Option<CatalogItem>, StoreError> {
        let row: Option<ItemRow> = sqlx::query_as(
            "SELECT item::text, created_at, updated_at, deleted_at FROM catalog_items
             WHERE tenant = $1 AND inventory_id = $2 AND ($3 OR deleted_at IS NULL)",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(include_deleted)
        .fetch_optional(&self.shared.pool)
        .await
        .map_err(|e| {
            self.shared.ctx.db(
                "reading a catalog item",
                format_args!("item {tenant}/{id}"),
                e,
            )
        })?;
        row.map(|row| self.decode_item(tenant, row)).transpose()
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        self.list_where(tenant, None, include_deleted, page).await
    }

    async fn list_children(
        &self,
        tenant: &TenantId,
        parent: &InventoryId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        self.list_where(tenant, Some(parent), include_deleted, page)
            .await
    }

    async fn delete_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<DeletedItem, StoreError> {
        let shared = &self.shared;
        let now = shared.clock.now();
        let input = format!("item {tenant}/{id}");
        let mut tx = shared.begin("deleting a catalog item").await?;
        let result = self.delete_in(&mut tx, tenant, id, now).await;
        let (item, cancelled) = shared
            .finish(tx, result, "deleting a catalog item", &input)
            .await?;
        task_core::telemetry::tasks_ended_by_the_store(&cancelled);
        shared.notify(&cancelled);
        Ok(DeletedItem {
            item,
            cancelled_tasks: cancelled.iter().map(|t| t.id).collect(),
        })
    }
}

#[async_trait]
impl ResultStore for PostgresStore {
    async fn put_result(&self, result: AnalysisResult) -> Result<(), StoreError> {
        let doc =
            serde_json::to_string(&result).map_err(|e| encode_error("an analysis result", e))?;
        sqlx::query(
            "INSERT INTO results (tenant, product, inventory_id, version, updated_at, doc)
             VALUES ($1, $2, $3, $4, $5, $6::jsonb)
             ON CONFLICT (tenant, product, inventory_id, version)
             DO UPDATE SET updated_at = EXCLUDED.updated_at, doc = EXCLUDED.doc",
        )
        .bind(result.tenant.as_str())
        .bind(result.product.as_str())
        .bind(result.inventory_id.as_str())
        .bind(result.version.as_str())
        .bind(millis(result.updated_at))
        .bind(doc)
        .execute(&self.shared.pool)
        .await
        .map_err(|e| {
            self.shared.ctx.db(
                "storing a result",
                format_args!(
                    "result {}/{}/{}/{}",
                    result.tenant, result.product, result.inventory_id, result.version
                ),
                e,
            )
        })?;
        Ok(())
    }

    async fn get_result(
        &self,
        tenant: &TenantId,
        product: &ProductName,
        inventory_id: &InventoryId,
        version: Option<&Version>,
    ) -> Result<Option<AnalysisResult>, StoreError> {
        let input = format!("result {tenant}/{product}/{inventory_id}");
        let doc: Option<String> = sqlx::query_scalar(
            "SELECT doc::text FROM results
             WHERE tenant = $1 AND product = $2 AND inventory_id = $3
               AND ($4::text IS NULL OR version = $4)
             ORDER BY updated_at DESC, version DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(product.as_str())
        .bind(inventory_id.as_str())
        .bind(version.map(|v| v.as_str()))
        .fetch_optional(&self.shared.pool)
        .await
        .map_err(|e| self.shared.ctx.db("reading a result", &input, e))?;
        doc.map(|doc| {
            serde_json::from_str(&doc).map_err(|e| self.shared.ctx.corrupt("results", &input, e))
        })
        .transpose()
    }

    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value::text FROM step_cache WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.shared.pool)
                .await
                .map_err(|e| {
                    self.shared
                        .ctx
                        .db("reading the step cache", format_args!("key {key:?}"), e)
                })?;
        value
            .map(|v| {
                serde_json::from_str(&v)
                    .map_err(|e| self.shared.ctx.corrupt("step_cache", format!("{key:?}"), e))
            })
            .transpose()
    }

    async fn cache_put(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO step_cache (key, value) VALUES ($1, $2::jsonb)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value.to_string())
        .execute(&self.shared.pool)
        .await
        .map_err(|e| {
            self.shared
                .ctx
                .db("writing the step cache", format_args!("key {key:?}"), e)
        })?;
        Ok(())
    }
}
