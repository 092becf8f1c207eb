//! One task: its facts, its error, its history as a timeline, the cancel button, and the live
//! stream the page's script follows to update itself in place.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::{Stream, StreamExt};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use task_api::views::{HistoryEntryView, TaskView};
use task_core::ids::TaskId;
use task_core::store::StoreError;
use task_core::task::Task;

use crate::error::ConsoleError;
use crate::pages::layout::{Nav, page, status_badge, token_field};
use crate::pages::tasks::asset_href;
use crate::session::Session;
use crate::state::{ConsoleState, Posted, WithToken};

/// The most awaited tasks the page describes (one read each).
const MAX_AWAITED: usize = 50;

/// What the live stream sends on each change: the task and its whole history.
#[derive(Debug, Serialize)]
struct Snapshot {
    task: TaskView,
    history: Vec<HistoryEntryView>,
}

/// The cancel form.
#[derive(Debug, Deserialize)]
pub(crate) struct CancelForm {
    csrf: String,
}

impl WithToken for CancelForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

fn parse_id(raw: &str) -> Result<TaskId, ConsoleError> {
    TaskId::parse(raw).map_err(|_| ConsoleError::NotFound(format!("Task {raw:?}")))
}

async fn load(state: &ConsoleState, session: &Session, raw: &str) -> Result<Task, ConsoleError> {
    let id = parse_id(raw)?;
    state
        .store
        .get_task(&session.tenant, id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("Task {id}")))
}

fn fact(label: &str, field: &str, value: Option<String>) -> Markup {
    html! {
        dt { (label) }
        dd data-field=(field) { (value.unwrap_or_else(|| "–".to_owned())) }
    }
}

/// A time of the task's view (RFC 3339), as the page shows it (the script does the same).
fn shown(at: &str) -> String {
    at.replace('T', " ")
}

/// The timeline's entries (the script builds the same markup from the stream).
fn timeline(history: &[HistoryEntryView]) -> Markup {
    html! {
        ol.timeline id="timeline" {
            @for entry in history {
                li data-to=(entry.to) {
                    time datetime=(entry.at) { (shown(&entry.at)) }
                    " "
                    strong.event { (entry.event) }
                    " "
                    span.transition { (entry.from.as_deref().unwrap_or("–")) " → " (entry.to) }
                    @if let Some(step) = &entry.step { " " span.step { "step " (step) } }
                    " " span.attempt { "attempt " (entry.attempt) }
                    @if let Some(code) = &entry.error_code { " " code { (code) } }
                    @if let Some(error) = &entry.error { p.detail { (error) } }
                    @else if let Some(detail) = &entry.detail { p.detail { (detail) } }
                }
            }
        }
    }
}

/// `GET /tasks/{id}`.
pub(crate) async fn show(
    State(state): State<ConsoleState>,
    session: Session,
    Path(raw): Path<String>,
) -> Result<Markup, ConsoleError> {
    let task = load(&state, &session, &raw).await?;
    let history = state.store.history(&session.tenant, task.id).await?;
    let history: Vec<HistoryEntryView> = history.iter().map(HistoryEntryView::of).collect();
    let mut awaited = Vec::new();
    for id in task.waiting_for().iter().take(MAX_AWAITED) {
        awaited.push((*id, state.store.get_task(&session.tenant, *id).await?));
    }
    let view = TaskView::of(&task, "");
    let active = task.status().is_active();
    let events = state.at(&format!("/tasks/{}/events", task.id));
    let probe = view
        .probe
        .as_ref()
        .and_then(|probe| serde_json::to_string_pretty(probe).ok());
    let body = html! {
        article.task data-events=(events) data-active=(active) {
            header.title {
                h1 { "Task " span.mono { (task.id) } }
                p { (status_badge(&view.status)) span.live role="status" aria-live="polite" id="live" {} }
            }
            div.columns {
                section aria-labelledby="facts-title" {
                    h2 id="facts-title" { "Now" }
                    dl.facts {
                        dt { "Inventory id" }
                        dd { a href=(asset_href(&state, &view.inventory_id)) { (view.inventory_id) } }
                        dt { "Product" } dd { (view.product) " " (view.version) }
                        dt { "Priority" } dd { (view.priority) }
                        (fact("Current step", "step", view.step.clone()))
                        (fact("Attempt", "attempt", Some(view.attempt.to_string())))
                        (fact("Cancel requested", "cancel_requested", Some(if view.cancel_requested { "yes" } else { "no" }.to_owned())))
                        (fact("Created", "created_at", Some(shown(&view.created_at))))
                        (fact("Started", "started_at", view.started_at.as_deref().map(shown)))
                        (fact("Finished", "finished_at", view.finished_at.as_deref().map(shown)))
                        (fact("Updated", "updated_at", Some(shown(&view.updated_at))))
                    }
                    form.cancel id="cancel" method="post" action=(state.at(&format!("/tasks/{}/cancel", task.id))) hidden[!active] {
                        (token_field(&state, &session))
                        button.danger type="submit" { "Cancel this task" }
                    }
                }
                section.error-box id="error" aria-labelledby="error-title" hidden[view.error.is_none() && view.last_error.is_none()] {
                    h2 id="error-title" { "Error" }
                    dl.facts {
                        (fact("Code", "error_code", view.error_code.clone()))
                        (fact("Message", "error", view.error.clone()))
                        (fact("Last attempt's error", "last_error", view.last_error.clone()))
                    }
                }
            }
            @if !awaited.is_empty() {
                section id="waiting" aria-labelledby="waiting-title" {
                    h2 id="waiting-title" { "Waiting for" }
                    p { "This task holds no worker until these tasks end:" }
                    ul.waiting {
                        @for (id, found) in &awaited {
                            li {
                                a.mono href=(state.at(&format!("/tasks/{id}"))) { (id) }
                                @if let Some(other) = found {
                                    " " (other.key.product) " " (other.key.version) " of "
                                    a.mono href=(asset_href(&state, other.key.inventory_id.as_str())) { (other.key.inventory_id) }
                                    @let status = other.status().to_string();
                                    " " span.badge data-status=(status) { (status) }
                                }
                            }
                        }
                    }
                    @if task.waiting_for().len() > awaited.len() {
                        p { "Only the first " (MAX_AWAITED) " are listed." }
                    }
                }
            }
            @if let Some(probe) = probe {
                section aria-labelledby="probe-title" {
                    h2 id="probe-title" { "Probe facts" }
                    pre.probe { (probe) }
                }
            }
            section aria-labelledby="history-title" {
                h2 id="history-title" { "History" }
                @if history.is_empty() { p.empty { "No history yet." } }
                (timeline(&history))
            }
        }
    };
    Ok(page(&state, Some(&session), Nav::Tasks, "Task", body))
}

/// `POST /tasks/{id}/cancel`: asks to cancel, then back to the task's page.
pub(crate) async fn cancel(
    State(state): State<ConsoleState>,
    Path(raw): Path<String>,
    posted: Posted<CancelForm>,
) -> Result<Response, ConsoleError> {
    let task = load(&state, &posted.session, &raw).await?;
    match state
        .store
        .request_cancel(&posted.session.tenant, task.id)
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {
            return Err(ConsoleError::Conflict(format!(
                "Task {} has already ended: there is nothing to cancel",
                task.id
            )));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %posted.session.tenant, task = %task.id, "console cancel");
    Ok(Redirect::to(&state.at(&format!("/tasks/{}", task.id))).into_response())
}

/// `GET /tasks/{id}/events`: a `snapshot` event (the task and its history) now and after each
/// change, until the task ends.
pub(crate) async fn events(
    State(state): State<ConsoleState>,
    session: Session,
    Path(raw): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    let id = parse_id(&raw)?;
    let tenant = session.tenant;
    let tasks = task_http::follow::follow_task(
        state.store.clone(),
        tenant.clone(),
        id,
        state.drain.clone(),
    )
    .await?
    .ok_or_else(|| ConsoleError::NotFound(format!("Task {id}")))?;
    let store = state.store.clone();
    let stream = tasks.enumerate().filter_map(move |(seq, task)| {
        let (store, tenant) = (store.clone(), tenant.clone());
        async move {
            let history = match store.history(&tenant, task.id).await {
                Ok(history) => history.iter().map(HistoryEntryView::of).collect(),
                Err(e) => {
                    tracing::warn!(task = %task.id, error = %e, "console stream: history unavailable");
                    Vec::new()
                }
            };
            let snapshot = Snapshot {
                task: TaskView::of(&task, ""),
                history,
            };
            Event::default()
                .event("snapshot")
                .id((seq + 1).to_string())
                .json_data(&snapshot)
                .ok()
                .map(Ok)
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
