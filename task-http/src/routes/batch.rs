//! `POST /tasks/batch`: many creations in one call and one commit, with a result per entry.

use std::collections::HashMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::Value;
use task_core::ids::InventoryId;

use crate::body::{Fields, JsonBody, check};
use crate::error::{ApiError, FieldError, MessageBody, ValidationErrorBody};
use crate::routes::tasks::read_new_task;
use crate::state::{ApiState, Tenant, not_in_catalog};
use crate::views::TaskView;
use task_api::bodies::BatchBody;
use task_api::views::{BatchEntryResult, BatchView};

/// Creates many tasks. A malformed body is a 422 for the whole call; an invalid entry, or one
/// whose item is not in the catalog, is refused alone and the valid entries are created in one
/// commit. Entries with the same key as an earlier entry get the same task.
#[utoipa::path(post, path = "/tasks/batch", tag = "tasks",
    request_body = BatchBody,
    responses(
        (status = 200, description = "One result per entry", body = BatchView),
        (status = 401, body = MessageBody), (status = 413, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn post_batch(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<Json<BatchView>, ApiError> {
    let mut errors = Vec::new();
    let mut entries: &[Value] = &[];
    if let Some(mut fields) = Fields::of(&body, vec!["body".into()], &mut errors) {
        fields.deny_unknown(&["tasks"]);
        match fields.raw("tasks") {
            Some(Value::Array(list)) if list.len() > state.config.max_batch => {
                let msg = format!(
                    "At most {} tasks per batch, got {}",
                    state.config.max_batch,
                    list.len()
                );
                fields.error("tasks", msg, "too_long");
            }
            Some(Value::Array(list)) => entries = list,
            Some(_) => fields.error("tasks", "Input should be a valid list", "list_type"),
            None => fields.error("tasks", "Field required", "missing"),
        }
    }
    check(errors)?;

    let mut results: Vec<Option<BatchEntryResult>> = Vec::with_capacity(entries.len());
    let mut valid = Vec::new();
    let mut in_catalog: HashMap<InventoryId, bool> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let mut entry_errors: Vec<FieldError> = Vec::new();
        let loc = vec!["body".into(), "tasks".into(), index.into()];
        let new = read_new_task(&state, &tenant, entry, loc, &mut entry_errors);
        match new {
            Some(new) if entry_errors.is_empty() => {
                let known = match in_catalog.get(&new.key.inventory_id) {
                    Some(known) => *known,
                    None => {
                        let found = state
                            .store
                            .get_item(&tenant, &new.key.inventory_id, false)
                            .await?;
                        in_catalog.insert(new.key.inventory_id.clone(), found.is_some());
                        found.is_some()
                    }
                };
                if known {
                    results.push(None);
                    valid.push((index, new));
                } else {
                    let detail = not_in_catalog(&new.key.inventory_id).to_string();
                    results.push(Some(refused(index, 404, Value::String(detail))));
                }
            }
            _ => {
                let detail = serde_json::to_value(&entry_errors)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                results.push(Some(refused(index, 422, detail)));
            }
        }
    }

    let (indexes, batch): (Vec<usize>, Vec<_>) = valid.into_iter().unzip();
    let outcomes = if batch.is_empty() {
        Vec::new()
    } else {
        state.store.create_tasks(batch).await?
    };
    let (mut created, mut existing) = (0, 0);
    for (index, outcome) in indexes.into_iter().zip(outcomes) {
        let status = if outcome.created {
            task_core::telemetry::tasks_created(&outcome.task.key.product, 1);
            created += 1;
            201
        } else {
            existing += 1;
            200
        };
        results[index] = Some(BatchEntryResult {
            index,
            status,
            task: Some(TaskView::of(&outcome.task, &state.config.base_path)),
            detail: None,
        });
    }
    let results: Vec<BatchEntryResult> = results.into_iter().flatten().collect();
    let refused = results.len() - created - existing;
    Ok(Json(BatchView {
        created,
        existing,
        refused,
        results,
    }))
}

fn refused(index: usize, status: u16, detail: Value) -> BatchEntryResult {
    BatchEntryResult {
        index,
        status,
        task: None,
        detail: Some(detail),
    }
}
