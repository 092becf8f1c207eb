//! Cancelling every task that matches a filter: a confirmation that says how many, then the
//! cancel itself, which reports how many it cancelled. One action cancels at most [`MAX_BULK`]
//! tasks; the confirmation says so when more match.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use task_core::ids::{TaskId, TenantId};
use task_core::store::{PageRequest, StoreError, TaskFilter};
use task_core::task::Status;

use crate::error::ConsoleError;
use crate::filter::FilterForm;
use crate::pages::layout::{Nav, page, token_field};
use crate::state::{ConsoleState, Posted, WithToken};

/// Tasks read per store call while collecting the matches.
const BATCH: usize = 500;
/// The most tasks one confirmation cancels: the cancel runs inside the request, one store call
/// per task, so a larger set is cancelled by repeating the action.
pub const MAX_BULK: usize = 10_000;

/// The posted filter and token.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkForm {
    csrf: String,
    #[serde(flatten)]
    filter: FilterForm,
}

impl WithToken for BulkForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

/// Up to [`MAX_BULK`] active (pending or processing) tasks of `tenant` that match `filter`,
/// and whether more match.
async fn active_matches(
    state: &ConsoleState,
    tenant: &TenantId,
    filter: &TaskFilter,
) -> Result<(Vec<TaskId>, bool), ConsoleError> {
    let mut ids = Vec::new();
    for status in active_statuses(filter) {
        let filter = TaskFilter {
            status: Some(status),
            ..filter.clone()
        };
        let mut request = PageRequest::first(BATCH);
        loop {
            let found = state.store.list_tasks(tenant, &filter, &request).await?;
            ids.extend(found.items.iter().map(|task| task.id));
            if ids.len() > MAX_BULK {
                ids.truncate(MAX_BULK);
                return Ok((ids, true));
            }
            match found.next {
                Some(next) => request.after = Some(next),
                None => break,
            }
        }
    }
    Ok((ids, false))
}

fn active_statuses(filter: &TaskFilter) -> Vec<Status> {
    match filter.status {
        Some(status) if status.is_active() => vec![status],
        Some(_) => Vec::new(),
        None => vec![Status::Pending, Status::Processing],
    }
}

/// How many active tasks match, from the store's counters, when the filter names nothing but
/// a status and a product (the counters' own keys).
async fn counted(
    state: &ConsoleState,
    tenant: &TenantId,
    filter: &TaskFilter,
) -> Result<Option<u64>, ConsoleError> {
    let countable = TaskFilter {
        status: filter.status,
        product: filter.product.clone(),
        ..TaskFilter::default()
    };
    if *filter != countable {
        return Ok(None);
    }
    let statuses = active_statuses(filter);
    let counts = state.store.status_counts(Some(tenant)).await?;
    Ok(Some(
        counts
            .iter()
            .filter(|c| statuses.contains(&c.status))
            .filter(|c| filter.product.as_ref().is_none_or(|p| *p == c.product))
            .map(|c| c.count)
            .sum(),
    ))
}

fn describe(filter: &FilterForm) -> Markup {
    html! {
        @if filter.is_empty() {
            p { "Filter: none (every task of your tenant)." }
        } @else {
            dl.facts {
                @for (name, value) in filter.pairs() {
                    dt { (name.replace('_', " ")) } dd { (value) }
                }
            }
        }
    }
}

/// `POST /tasks/cancel`: how many active tasks match, and the button that cancels them.
pub(crate) async fn confirm(
    State(state): State<ConsoleState>,
    posted: Posted<BulkForm>,
) -> Result<Markup, ConsoleError> {
    let Posted { session, form } = posted;
    let filter = form.filter.to_filter()?;
    let (ids, more) = active_matches(&state, &session.tenant, &filter).await?;
    let exact = match more {
        false => Some(ids.len() as u64),
        true => counted(&state, &session.tenant, &filter).await?,
    };
    let count = ids.len();
    let back = state.at(&format!("/tasks?{}", form.filter.query()));
    let body = html! {
        h1 { "Cancel matching tasks" }
        (describe(&form.filter))
        @if count == 0 {
            p.empty role="status" id="bulk-count" data-count="0" { "No pending or processing task matches this filter: there is nothing to cancel." }
            p { a href=(back) { "Back to the tasks" } }
        } @else {
            @match (more, exact) {
                (false, _) => p role="status" id="bulk-count" data-count=(count) {
                    strong { (count) } @if count == 1 { " pending or processing task matches" } @else { " pending or processing tasks match" }
                    " this filter. Cancelling stops processing tasks at their next check and ends pending ones at once."
                },
                (true, Some(total)) => p role="status" id="bulk-count" data-count=(total) {
                    strong { (total) } " pending or processing tasks match this filter. One action cancels at most "
                    (MAX_BULK) ": the first " (count) " now; repeat it for the rest."
                },
                (true, None) => p role="status" id="bulk-count" {
                    "More than " strong { (MAX_BULK) } " pending or processing tasks match this filter. One action cancels at most "
                    (MAX_BULK) ": the first " (count) " now; repeat it for the rest."
                },
            }
            form method="post" action=(state.at("/tasks/cancel/confirm")) {
                (token_field(&state, &session))
                (form.filter.hidden_fields())
                button.danger type="submit" { "Cancel " (count) @if count == 1 { " task" } @else { " tasks" } }
                " "
                a href=(back) { "Keep them" }
            }
        }
    };
    Ok(page(
        &state,
        Some(&session),
        Nav::Tasks,
        "Cancel matching tasks",
        body,
    ))
}

/// `POST /tasks/cancel/confirm`: cancels every active task that matches now.
pub(crate) async fn cancel(
    State(state): State<ConsoleState>,
    posted: Posted<BulkForm>,
) -> Result<Markup, ConsoleError> {
    let Posted { session, form } = posted;
    let filter = form.filter.to_filter()?;
    let (ids, more) = active_matches(&state, &session.tenant, &filter).await?;
    let mut cancelled = 0usize;
    let mut finished_meanwhile = 0usize;
    for id in &ids {
        match state.store.request_cancel(&session.tenant, *id).await {
            Ok(_) => cancelled += 1,
            // It ended (or was deleted) between the listing and the cancel.
            Err(
                StoreError::Conflict(_) | StoreError::NotFound { .. } | StoreError::Transition(_),
            ) => {
                finished_meanwhile += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(tenant = %session.tenant, cancelled, "console bulk cancel");
    let body = html! {
        h1 { "Tasks cancelled" }
        (describe(&form.filter))
        p role="status" id="bulk-cancelled" data-count=(cancelled) {
            "Asked to cancel " strong { (cancelled) } @if cancelled == 1 { " task." } @else { " tasks." }
            @if finished_meanwhile > 0 { " " (finished_meanwhile) " ended on their own before the cancel." }
        }
        @if more {
            p id="bulk-more" { "More tasks match than one action cancels (" (MAX_BULK) "): cancel matching tasks again for the rest." }
        }
        p { a href=(state.at(&format!("/tasks?{}", form.filter.query()))) { "See the tasks" } }
    };
    Ok(page(
        &state,
        Some(&session),
        Nav::Tasks,
        "Tasks cancelled",
        body,
    ))
}
