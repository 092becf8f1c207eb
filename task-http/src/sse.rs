//! `GET /task/{task_id}/events`: the task as server-sent events, one per change, until it ends.
//!
//! The stream subscribes to the store's change notifications before reading the task, so no
//! change between the first read and the subscription is missed. Each event is named `task`,
//! carries the task body as JSON and an increasing `id`; the first event is the task as it is.
//! The stream closes after the event that shows the task ended (or when the service drains).

use std::convert::Infallible;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use task_core::ids::{TaskId, TenantId};
use task_core::task::Task;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::body::ApiPath;
use crate::error::{ApiError, MessageBody, ValidationErrorBody};
use crate::routes::tasks::{load_task, parse_task_id};
use crate::state::{ApiState, Tenant};
use crate::views::TaskView;

struct Follow {
    state: ApiState,
    tenant: TenantId,
    id: TaskId,
    changes: broadcast::Receiver<task_core::store::TaskChange>,
    last: Option<Task>,
    seq: u64,
    ended: bool,
}

impl Follow {
    /// The next event, or None when the stream is over.
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            if self.last.is_some() {
                let woke = tokio::select! {
                    woke = self.changes.recv() => woke,
                    () = self.state.drain.cancelled() => return None,
                };
                match woke {
                    Ok(change) if change.task_id != self.id => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
            let task = match load_task(&self.state, &self.tenant, self.id).await {
                Ok(task) => task,
                Err(e) => {
                    tracing::warn!(task = %self.id, error = %e, "event stream stopped");
                    return None;
                }
            };
            if self.last.as_ref() == Some(&task) {
                continue;
            }
            self.ended = !task.status().is_active();
            self.seq += 1;
            let view = TaskView::of(&task, &self.state.config.base_path);
            self.last = Some(task);
            let event = Event::default().event("task").id(self.seq.to_string());
            return match event.json_data(&view) {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::error!(error = %e, "task event cannot be serialized");
                    None
                }
            };
        }
    }
}

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
    let changes = state.store.subscribe();
    load_task(&state, &tenant, id).await?;
    let keep_alive = state.config.keep_alive;
    let follow = Follow {
        state,
        tenant,
        id,
        changes,
        last: None,
        seq: 0,
        ended: false,
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)))
}
