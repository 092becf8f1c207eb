//! `/tasks/catalog-item/...`: tasks addressed by their natural key, and every task of an item.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use task_core::ids::{InventoryId, Priority, ProductName, TenantId, Version};
use task_core::store::{NewTask, PageRequest, TaskFilter};
use task_core::task::{Task, TaskKey};

use crate::body::{ApiPath, Fields, JsonBody, check, path_param};
use crate::error::{ApiError, MessageBody, ValidationErrorBody};
use crate::routes::tasks::{cancel, create_one};
use crate::state::{ApiState, Tenant, not_in_catalog};
use crate::views::{ItemTasksView, TaskView};
use task_api::bodies::PriorityBody;

type KeyPath = ApiPath<(String, String, String)>;

/// Parses the natural key from the path; with `enabled`, the product must be enabled.
fn key_of(
    state: &ApiState,
    tenant: &TenantId,
    (inventory_id, product, version): (String, String, String),
    enabled: bool,
    errors: &mut Vec<crate::error::FieldError>,
) -> Option<TaskKey> {
    let inventory_id = path_param::<InventoryId>("inventory_id", &inventory_id, errors);
    let product = path_param::<ProductName>("product", &product, errors);
    let version = path_param::<Version>("version", &version, errors);
    if let (Some(product), true) = (&product, enabled) {
        state.check_product(
            product,
            version.as_ref(),
            &["path".into(), "product".into()],
            &["path".into(), "version".into()],
            errors,
        );
    }
    Some(TaskKey {
        tenant: tenant.clone(),
        inventory_id: inventory_id?,
        product: product?,
        version: version?,
    })
}

fn parsed(key: Option<TaskKey>) -> Result<TaskKey, ApiError> {
    key.ok_or_else(|| ApiError::Internal("task key lost".into()))
}

/// Creates the task of this key (201), or returns its active one (200).
#[utoipa::path(post, path = "/tasks/catalog-item/{inventory_id}/product/{product}/version/{version}",
    tag = "tasks by key",
    params(
        ("inventory_id" = String, Path, description = "The catalog item"),
        ("product" = String, Path, description = "An enabled product"),
        ("version" = String, Path, description = "The product version"),
    ),
    request_body(content = PriorityBody, description = "Optional; an empty body means low priority"),
    responses(
        (status = 201, body = TaskView), (status = 200, body = TaskView),
        (status = 401, body = MessageBody),
        (status = 404, description = "The item is not in the catalog: ingest it first", body = MessageBody),
        (status = 413, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn post_by_key(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(path): KeyPath,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let key = key_of(&state, &tenant, path, true, &mut errors);
    let mut priority = None;
    if let Some(mut fields) = Fields::of(&body, vec!["body".into()], &mut errors) {
        fields.deny_unknown(&["priority"]);
        priority = fields.parse::<Priority>("priority", false);
    }
    check(errors)?;
    let new = NewTask {
        key: parsed(key)?,
        priority: priority.unwrap_or_default(),
    };
    create_one(&state, new).await
}

async fn latest(state: &ApiState, key: &TaskKey) -> Result<Task, ApiError> {
    state.store.latest_task(key).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "No task for item {:?}, product {}, version {}",
            key.inventory_id.as_str(),
            key.product,
            key.version
        ))
    })
}

/// The most recent task of this key (active or ended).
#[utoipa::path(get, path = "/tasks/catalog-item/{inventory_id}/product/{product}/version/{version}",
    tag = "tasks by key",
    params(
        ("inventory_id" = String, Path, description = "The catalog item"),
        ("product" = String, Path, description = "The product"),
        ("version" = String, Path, description = "The product version"),
    ),
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn get_by_key(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(path): KeyPath,
) -> Result<Json<TaskView>, ApiError> {
    let mut errors = Vec::new();
    let key = key_of(&state, &tenant, path, false, &mut errors);
    check(errors)?;
    let task = latest(&state, &parsed(key)?).await?;
    Ok(Json(TaskView::of(&task, &state.config.base_path)))
}

/// Cancels the most recent task of this key; 409 if it has ended.
#[utoipa::path(delete, path = "/tasks/catalog-item/{inventory_id}/product/{product}/version/{version}",
    tag = "tasks by key",
    params(
        ("inventory_id" = String, Path, description = "The catalog item"),
        ("product" = String, Path, description = "The product"),
        ("version" = String, Path, description = "The product version"),
    ),
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 409, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn delete_by_key(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(path): KeyPath,
) -> Result<Json<TaskView>, ApiError> {
    let mut errors = Vec::new();
    let key = key_of(&state, &tenant, path, false, &mut errors);
    check(errors)?;
    let task = latest(&state, &parsed(key)?).await?;
    cancel(&state, &tenant, task.id).await
}

/// Every task of a catalog item, oldest first (also of a soft-deleted item).
#[utoipa::path(get, path = "/tasks/catalog-item/{inventory_id}", tag = "tasks by key",
    params(("inventory_id" = String, Path, description = "The catalog item")),
    responses(
        (status = 200, body = ItemTasksView),
        (status = 401, body = MessageBody),
        (status = 404, description = "Neither in the catalog nor with tasks", body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn item_tasks(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(inventory_id): ApiPath<String>,
) -> Result<Json<ItemTasksView>, ApiError> {
    let mut errors = Vec::new();
    let id = path_param::<InventoryId>("inventory_id", &inventory_id, &mut errors);
    check(errors)?;
    let id = id.ok_or_else(|| ApiError::Internal("inventory id lost".into()))?;
    let filter = TaskFilter {
        inventory_id: Some(id.clone()),
        ..TaskFilter::default()
    };
    let mut request = PageRequest::first(1000);
    let mut tasks = Vec::new();
    loop {
        let page = state.store.list_tasks(&tenant, &filter, &request).await?;
        tasks.extend(
            page.items
                .iter()
                .map(|t| TaskView::of(t, &state.config.base_path)),
        );
        match page.next {
            Some(next) => request.after = Some(next),
            None => break,
        }
    }
    if tasks.is_empty() && state.store.get_item(&tenant, &id, true).await?.is_none() {
        return Err(not_in_catalog(&id));
    }
    Ok(Json(ItemTasksView {
        inventory_id: id.to_string(),
        tasks,
    }))
}
