//! `GET /task/{task_id}/events`: the task as server-sent events, one per change, until it ends.
//!
//! The tasks come from [`follow_task`], which subscribes to the store's change notifications
//! before reading the task, so no change between the first read and the subscription is missed. Each event is named `task`,
//! carries the task body as JSON and an increasing `id`; the first event is the task as it is.
//! The stream closes after the event that shows the task ended (or when the service drains).

use std::convert::Infallible;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};

use crate::body::ApiPath;
use crate::error::{ApiError, MessageBody, ValidationErrorBody};
use crate::follow::follow_task;
use crate::routes::tasks::parse_task_id;
use crate::state::{ApiState, Tenant};
use crate::views::TaskView;

/// Follows a task: an event named `task` with the task body now, then one per change, until
/// the task ends; then the stream closes.
#[utoipa::path(get, path = "/task/{task_id}/events", tag = "tasks",
    params(("task_id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Server-sent events named `task`, data: the task body (TaskView)",
            content_type = "text/event-stream", body = String),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn task_events(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(task_id): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = parse_task_id(&task_id)?;
    let tasks = follow_task(state.store.clone(), tenant, id, state.drain.clone())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Task {id} not found")))?;
    let keep_alive = state.config.keep_alive;
    let base = state.config.base_path.clone();
    let stream = tasks.enumerate().filter_map(move |(seq, task)| {
        let view = TaskView::of(&task, &base);
        let event = Event::default().event("task").id((seq + 1).to_string());
        futures::future::ready(match event.json_data(&view) {
            Ok(event) => Some(Ok(event)),
            Err(e) => {
                tracing::error!(error = %e, "task event cannot be serialized");
                None
            }
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)))
}
