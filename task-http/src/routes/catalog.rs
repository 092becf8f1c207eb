//! `/catalog/v1/item`: upsert, list, get and soft delete of catalog items.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse};
use task_core::catalog::{CatalogItem, ItemType, ItemUpsert};
use task_core::ids::{InventoryId, TenantId};
use task_core::store::{Page, PageRequest, Store, StoreError};

use crate::body::{ApiPath, Fields, JsonBody, RawQuery, check, parse_bool, parse_int, path_param};
use crate::error::{ApiError, FieldError, MessageBody, ValidationErrorBody};
use crate::state::{ApiState, Tenant};
use crate::views::{CatalogItemView, CatalogPage, DeletedItemView};
use task_api::bodies::ItemBody;

/// The fields of an item the service reads; any other field is kept as given, except these
/// read-only ones, which are refused.
const KNOWN: [&str; 6] = ["id", "type", "title", "asset_url", "tags", "parent_id"];
const READ_ONLY: [&str; 4] = ["created_at", "updated_at", "deleted_at", "tenant"];
/// The largest `page_size`.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Upserts a catalog item. Fields other than the known ones are stored and returned as given;
/// `created_at`, `updated_at`, `deleted_at` and `tenant` are read-only and refused.
///
/// `parent_id` (optional, null for none) links an episode to its season and a season to its
/// series: the parent must be a live item of the tenant with that type, else 422 naming it
/// (another tenant's item is answered as a missing one). An item whose live children could
/// not have it as parent with its new type is refused with 409. Deleting a parent leaves its
/// children and their `parent_id` as they are.
#[utoipa::path(put, path = "/catalog/v1/item", tag = "catalog",
    request_body = ItemBody,
    responses(
        (status = 201, description = "Created (or re-created after a delete)", body = CatalogItemView),
        (status = 200, description = "Replaced", body = CatalogItemView),
        (status = 401, body = MessageBody), (status = 413, body = MessageBody),
        (status = 409, description = "The item has children that could not have it as parent \
            with the new type: move or delete them first", body = MessageBody),
        (status = 422, description = "Invalid input: each entry names the field (a parent_id \
            that is missing, deleted, of the wrong type or the item itself included)",
            body = ValidationErrorBody),
    ))]
pub(crate) async fn put_item(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let mut upsert = None;
    if let Some(mut fields) = Fields::of(&body, vec!["body".into()], &mut errors) {
        for name in READ_ONLY {
            // Present at all, null included: a null would otherwise be kept as an extra
            // field and shown in place of the real time.
            if fields.has(name) {
                fields.error(name, "Field is read-only", "extra_forbidden");
            }
        }
        let id: Option<InventoryId> = fields.parse("id", true);
        let item_type: Option<ItemType> = fields.parse("type", true);
        let title = fields.string("title", true);
        let asset_url = fields.string("asset_url", true);
        let tags = fields.strings("tags").unwrap_or_default();
        let parent_id: Option<InventoryId> = fields.parse("parent_id", false);
        if let Some(url) = asset_url {
            let verdict = match &state.config.asset_url_validator {
                Some(validate) => validate(&tenant, url),
                None if url.trim().is_empty() => Err("must not be empty".to_owned()),
                None => Ok(()),
            };
            if let Err(reason) = verdict {
                fields.error(
                    "asset_url",
                    format!("Invalid asset URL {url:?}: {reason}"),
                    "value_error",
                );
            }
        }
        let extra = fields.rest(&[&KNOWN[..], &READ_ONLY[..]].concat());
        for (name, value) in &extra {
            if task_core::catalog::nesting(value) > task_core::catalog::MAX_EXTRA_DEPTH {
                fields.error(
                    name,
                    format!(
                        "Value nests deeper than {} levels of objects and arrays",
                        task_core::catalog::MAX_EXTRA_DEPTH
                    ),
                    "value_error",
                );
            }
        }
        if let (Some(id), Some(item_type), Some(title), Some(url)) =
            (id, item_type, title, asset_url)
        {
            upsert = Some(ItemUpsert {
                tenant: tenant.clone(),
                inventory_id: id,
                item_type,
                title: title.to_owned(),
                asset_url: url.to_owned(),
                tags,
                extra,
                parent_id,
            });
        }
    }
    check(errors)?;
    let upsert = upsert.ok_or_else(|| ApiError::Internal("item body lost".into()))?;
    let (item, created) = match state.store.upsert_item(upsert).await {
        Err(StoreError::Invalid { field, reason }) if field == "parent_id" => {
            let loc = vec!["body".into(), field.into()];
            return Err(ApiError::field(FieldError::new(loc, reason, "value_error")));
        }
        other => other?,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(CatalogItemView::of(&item))))
}

/// Lists the tenant's items by id, a page at a time. Query: `page_num` (from 1, default 1),
/// `page_size` (1-1000, default 50), `allow_deleted` (default false), `parent_id` (only the
/// children of that item: a season's episodes, a series' seasons).
#[utoipa::path(get, path = "/catalog/v1/item", tag = "catalog",
    params(
        ("parent_id" = Option<String>, Query, description = "Only the items whose parent is this \
            inventory id (none when it has no children or is not in the catalog)"),
        ("page_num" = Option<u64>, Query, description = "Page number from 1 (default 1)"),
        ("page_size" = Option<u64>, Query, description = "Items per page, 1-1000 (default 50)"),
        ("allow_deleted" = Option<bool>, Query, description = "Include soft-deleted items (default false)"),
    ),
    responses(
        (status = 200, body = CatalogPage),
        (status = 401, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn list_items(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    query: RawQuery,
) -> Result<Json<CatalogPage>, ApiError> {
    let mut errors = Vec::new();
    let page_num = query
        .get("page_num", &mut errors, |r| parse_int(r, 1, 1_000_000))
        .unwrap_or(1);
    let page_size = query
        .get("page_size", &mut errors, |r| parse_int(r, 1, MAX_PAGE_SIZE))
        .unwrap_or(50);
    let allow_deleted = query
        .get("allow_deleted", &mut errors, parse_bool)
        .unwrap_or(false);
    let parent = query.get("parent_id", &mut errors, |raw| {
        InventoryId::new(raw).map_err(|e| (e.to_string(), "value_error"))
    });
    check(errors)?;
    let limit = usize::try_from(page_size).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut request = PageRequest::first(limit);
    let store = &*state.store;
    let parent = parent.as_ref();
    let mut page = list_page(store, &tenant, parent, allow_deleted, &request).await?;
    for _ in 1..page_num {
        let Some(next) = page.next.take() else {
            page.items.clear();
            break;
        };
        request.after = Some(next);
        page = list_page(store, &tenant, parent, allow_deleted, &request).await?;
    }
    Ok(Json(CatalogPage {
        items: page.items.iter().map(CatalogItemView::of).collect(),
        page_num,
        page_size,
        has_next: page.next.is_some(),
    }))
}

/// One page of the tenant's items, or of the children of `parent`.
async fn list_page(
    store: &dyn Store,
    tenant: &TenantId,
    parent: Option<&InventoryId>,
    allow_deleted: bool,
    request: &PageRequest,
) -> Result<Page<CatalogItem>, StoreError> {
    match parent {
        Some(parent) => {
            store
                .list_children(tenant, parent, allow_deleted, request)
                .await
        }
        None => store.list_items(tenant, allow_deleted, request).await,
    }
}

fn item_path(item_type: &str, inventory_id: &str) -> Result<(ItemType, InventoryId), ApiError> {
    let mut errors = Vec::new();
    let item_type = path_param::<ItemType>("type", item_type, &mut errors);
    let id = path_param::<InventoryId>("inventory_id", inventory_id, &mut errors);
    check(errors)?;
    match (item_type, id) {
        (Some(t), Some(id)) => Ok((t, id)),
        _ => Err(ApiError::Internal("path parameters lost".into())),
    }
}

fn item_not_found(item_type: ItemType, id: &InventoryId) -> ApiError {
    ApiError::NotFound(format!(
        "Catalog item {item_type}/{:?} not found",
        id.as_str()
    ))
}

/// One item by type and inventory id; a soft-deleted one only with `allow_deleted=true`.
#[utoipa::path(get, path = "/catalog/v1/item/{type}/{inventory_id}", tag = "catalog",
    params(
        ("type" = String, Path, description = "standalone, series, season or episode"),
        ("inventory_id" = String, Path, description = "The item's inventory id"),
        ("allow_deleted" = Option<bool>, Query, description = "Also find a soft-deleted item"),
    ),
    responses(
        (status = 200, body = CatalogItemView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn get_item(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((item_type, inventory_id)): ApiPath<(String, String)>,
    query: RawQuery,
) -> Result<Json<CatalogItemView>, ApiError> {
    let (item_type, id) = item_path(&item_type, &inventory_id)?;
    let mut errors = Vec::new();
    let allow_deleted = query
        .get("allow_deleted", &mut errors, parse_bool)
        .unwrap_or(false);
    check(errors)?;
    match state.store.get_item(&tenant, &id, allow_deleted).await? {
        Some(item) if item.item.item_type == item_type => Ok(Json(CatalogItemView::of(&item))),
        _ => Err(item_not_found(item_type, &id)),
    }
}

/// Soft-deletes an item; its pending tasks are cancelled and its processing ones asked to stop.
#[utoipa::path(delete, path = "/catalog/v1/item/{type}/{inventory_id}", tag = "catalog",
    params(
        ("type" = String, Path, description = "standalone, series, season or episode"),
        ("inventory_id" = String, Path, description = "The item's inventory id"),
    ),
    responses(
        (status = 200, body = DeletedItemView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn delete_item(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((item_type, inventory_id)): ApiPath<(String, String)>,
) -> Result<Json<DeletedItemView>, ApiError> {
    let (item_type, id) = item_path(&item_type, &inventory_id)?;
    match state.store.get_item(&tenant, &id, false).await? {
        Some(item) if item.item.item_type == item_type => {}
        _ => return Err(item_not_found(item_type, &id)),
    }
    let deleted = state.store.delete_item(&tenant, &id).await?;
    Ok(Json(DeletedItemView {
        item: CatalogItemView::of(&deleted.item),
        cancelled_tasks: deleted
            .cancelled_tasks
            .iter()
            .map(|t| t.to_string())
            .collect(),
    }))
}
