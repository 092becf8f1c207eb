//! `/task` and `/task/{task_id}`: create, read (with long-poll), cancel, history.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::Value;
use task_core::ids::{InventoryId, Priority, ProductName, TaskId, TenantId, Version};
use task_core::store::{NewTask, StoreError};
use task_core::task::{Status, Task, TaskKey};
use tokio::sync::broadcast::error::RecvError;

use crate::body::{ApiPath, Fields, JsonBody, RawQuery, check, path_param};
use crate::error::{ApiError, FieldError, LocItem, MessageBody, ValidationErrorBody};
use crate::state::{ApiState, Tenant};
use crate::views::{HistoryEntryView, HistoryView, TaskView};
pub use task_api::bodies::NewTaskBody;

/// The fields of a task creation body; others are refused (`extra_forbidden`) so that a typo
/// such as `priorty` is not silently ignored.
pub(crate) const TASK_FIELDS: [&str; 4] = ["inventory_id", "product", "version", "priority"];

/// Reads `(inventory_id, product, version, priority)` from the object at `loc`, checking the
/// product is enabled. Errors go to `errors`.
pub(crate) fn read_new_task(
    state: &ApiState,
    tenant: &TenantId,
    value: &Value,
    loc: Vec<LocItem>,
    errors: &mut Vec<FieldError>,
) -> Option<NewTask> {
    let mut fields = Fields::of(value, loc.clone(), errors)?;
    fields.deny_unknown(&TASK_FIELDS);
    let inventory_id: Option<InventoryId> = fields.parse("inventory_id", true);
    let product: Option<ProductName> = fields.parse("product", true);
    let version: Option<Version> = fields.parse("version", true);
    let priority: Option<Priority> = fields.parse("priority", false);
    let at = |name: &str| {
        let mut l = loc.clone();
        l.push(name.into());
        l
    };
    if let Some(product) = &product {
        state.check_product(
            product,
            version.as_ref(),
            &at("product"),
            &at("version"),
            errors,
        );
    }
    let key = TaskKey {
        tenant: tenant.clone(),
        inventory_id: inventory_id?,
        product: product?,
        version: version?,
    };
    Some(NewTask {
        key,
        priority: priority.unwrap_or_default(),
    })
}

/// Creates one task after the checks; 201 when new, 200 with the active task of the same key.
pub(crate) async fn create_one(
    state: &ApiState,
    new: NewTask,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    state
        .require_item(&new.key.tenant, &new.key.inventory_id)
        .await?;
    let outcome = state.store.create_task(new).await?;
    let status = if outcome.created {
        task_core::telemetry::tasks_created(&outcome.task.key.product, 1);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(TaskView::of(&outcome.task, &state.config.base_path)),
    ))
}

/// Creates a task, or returns the active one for the same (inventory id, product, version).
#[utoipa::path(post, path = "/task", tag = "tasks",
    request_body = NewTaskBody,
    responses(
        (status = 201, description = "Created", body = TaskView),
        (status = 200, description = "An active task with the same key exists", body = TaskView),
        (status = 401, body = MessageBody),
        (status = 404, description = "The item is not in the catalog: ingest it first", body = MessageBody),
        (status = 413, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn post_task(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let new = read_new_task(&state, &tenant, &body, vec!["body".into()], &mut errors);
    check(errors)?;
    let new = new.ok_or_else(|| ApiError::Internal("task body lost".into()))?;
    create_one(&state, new).await
}

pub(crate) fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    let mut errors = Vec::new();
    let id = path_param::<TaskId>("task_id", raw, &mut errors);
    check(errors)?;
    id.ok_or_else(|| ApiError::Internal("task id lost".into()))
}

pub(crate) async fn load_task(
    state: &ApiState,
    tenant: &TenantId,
    id: TaskId,
) -> Result<Task, ApiError> {
    state
        .store
        .get_task(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Task {id} not found")))
}

/// A task. With `wait=SECONDS`, answers as soon as the status is no longer `status` (default:
/// the status it has when the request arrives), or after the wait (capped by the service's
/// `max_wait`, 60 s by default) with the task as it is.
#[utoipa::path(get, path = "/task/{task_id}", tag = "tasks",
    params(
        ("task_id" = String, Path, description = "The task id"),
        ("wait" = Option<f64>, Query, description = "Long-poll: seconds to wait for a status change"),
        ("status" = Option<String>, Query, description = "Long-poll: answer once the status is no longer this one"),
    ),
    responses(
        (status = 200, body = TaskView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn get_task(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(task_id): ApiPath<String>,
    query: RawQuery,
) -> Result<Json<TaskView>, ApiError> {
    let id = parse_task_id(&task_id)?;
    let mut errors = Vec::new();
    let wait = query.get("wait", &mut errors, |raw| match raw.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err((
            format!("Input should be a non-negative number of seconds, got {raw:?}"),
            "float_parsing",
        )),
    });
    let status = query.get("status", &mut errors, |raw| {
        raw.parse::<Status>().map_err(|e| (e.to_string(), "enum"))
    });
    check(errors)?;
    let Some(wait) = wait else {
        let task = load_task(&state, &tenant, id).await?;
        return Ok(Json(TaskView::of(&task, &state.config.base_path)));
    };
    // Capped before the conversion: a huge wait (1e20) is the longest wait, not a panic.
    let wait = Duration::try_from_secs_f64(wait.min(state.config.max_wait.as_secs_f64()))
        .unwrap_or(state.config.max_wait);
    let task = long_poll(&state, &tenant, id, status, wait).await?;
    Ok(Json(TaskView::of(&task, &state.config.base_path)))
}

/// Waits (on the store's change notifications) until the task's status differs from `status`.
async fn long_poll(
    state: &ApiState,
    tenant: &TenantId,
    id: TaskId,
    status: Option<Status>,
    wait: Duration,
) -> Result<Task, ApiError> {
    let mut changes = state.store.subscribe();
    let mut task = load_task(state, tenant, id).await?;
    let target = status.unwrap_or(task.status());
    let deadline = tokio::time::Instant::now() + wait;
    while task.status() == target {
        let next = tokio::select! {
            next = tokio::time::timeout_at(deadline, changes.recv()) => next,
            () = state.drain.cancelled() => break,
        };
        match next {
            Err(_elapsed) => break,
            Ok(Ok(change)) if change.task_id != id => continue,
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {
                task = load_task(state, tenant, id).await?;
            }
            Ok(Err(RecvError::Closed)) => break,
        }
    }
    Ok(task)
}

/// Cancels a task: a pending one ends `cancelled` at once; a processing one is marked
/// `cancel_requested` and ends `cancelled` when its running step has stopped.
#[utoipa::path(delete, path = "/task/{task_id}", tag = "tasks",
    params(("task_id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Cancelled, or cancel requested", body = TaskView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 409, description = "The task has already ended", body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn delete_task(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<TaskView>, ApiError> {
    let id = parse_task_id(&task_id)?;
    cancel(&state, &tenant, id).await
}

/// Cancels task `id`, with the contract's answers: 404 unknown, 409 finished.
pub(crate) async fn cancel(
    state: &ApiState,
    tenant: &TenantId,
    id: TaskId,
) -> Result<Json<TaskView>, ApiError> {
    match state.store.request_cancel(tenant, id).await {
        Ok(task) => {
            // A pending task ends here; a processing one ends (and is counted) in its runner.
            task_core::telemetry::task_finished(&task);
            Ok(Json(TaskView::of(&task, &state.config.base_path)))
        }
        Err(StoreError::NotFound { .. }) => Err(ApiError::NotFound(format!("Task {id} not found"))),
        Err(StoreError::Conflict(_)) => {
            let task = load_task(state, tenant, id).await?;
            Err(ApiError::Conflict(format!(
                "Task {id} has already ended ({}) and cannot be cancelled",
                task.status()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// The audit trail of a task: every transition with its time, step, attempt and error.
#[utoipa::path(get, path = "/task/{task_id}/history", tag = "tasks",
    params(("task_id" = String, Path, description = "The task id")),
    responses(
        (status = 200, body = HistoryView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn get_history(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Json<HistoryView>, ApiError> {
    let id = parse_task_id(&task_id)?;
    load_task(&state, &tenant, id).await?;
    let history = state.store.history(&tenant, id).await?;
    Ok(Json(HistoryView {
        task_id: id.to_string(),
        history: history.iter().map(HistoryEntryView::of).collect(),
    }))
}
