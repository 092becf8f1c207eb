//! The task list: filters, a page of tasks, and the cursor to the next page.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use task_core::ids::Priority;
use task_core::store::PageRequest;
use task_core::task::{Status, Task};

use crate::error::ConsoleError;
use crate::filter::FilterForm;
use crate::pages::layout::{Nav, page, status_badge, time, token_field};
use crate::session::Session;
use crate::state::ConsoleState;

/// Tasks per page.
const PAGE_SIZE: usize = 50;

/// The list's query: the filter and the cursor.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ListQuery {
    #[serde(flatten)]
    filter: FilterForm,
    /// The `next` cursor of the page before.
    after: String,
}

fn select(id: &str, label: &str, current: &str, options: &[&str]) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(id) {
                option value="" selected[current.is_empty()] { "any" }
                @for option in options {
                    option value=(option) selected[*option == current] { (option) }
                }
            }
        }
    }
}

fn text(id: &str, label: &str, current: &str, kind: &str) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) name=(id) type=(kind) value=(current);
        }
    }
}

/// The filter form (GET, so that a filtered list is a link).
pub(crate) fn filter_form(state: &ConsoleState, filter: &FilterForm) -> Markup {
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let products: Vec<&str> = state.config.products.keys().map(|p| p.as_str()).collect();
    let priorities: Vec<&str> = Priority::ALL.iter().map(|p| p.as_str()).collect();
    html! {
        form.filters method="get" action=(state.at("/tasks")) aria-label="Filter tasks" {
            (select("status", "Status", &filter.status, &statuses))
            (select("product", "Product", &filter.product, &products))
            (text("version", "Version", &filter.version, "text"))
            (select("priority", "Priority", &filter.priority, &priorities))
            (text("inventory_id", "Inventory id", &filter.inventory_id, "text"))
            (text("from", "Created from (UTC)", &filter.from, "datetime-local"))
            (text("before", "Created before (UTC)", &filter.before, "datetime-local"))
            div.actions {
                button type="submit" { "Filter" }
                a href=(state.at("/tasks")) { "Clear" }
            }
        }
    }
}

/// A table of tasks, with links to each task and its asset.
pub(crate) fn task_table(state: &ConsoleState, caption: &str, tasks: &[Task]) -> Markup {
    html! {
        div.table-scroll {
            table {
                caption { (caption) }
                thead {
                    tr {
                        th scope="col" { "Task" }
                        th scope="col" { "Status" }
                        th scope="col" { "Inventory id" }
                        th scope="col" { "Product" }
                        th scope="col" { "Version" }
                        th scope="col" { "Priority" }
                        th scope="col" { "Step" }
                        th scope="col" { "Attempt" }
                        th scope="col" { "Created (UTC)" }
                    }
                }
                tbody {
                    @for task in tasks {
                        tr {
                            th scope="row" {
                                a.mono href=(state.at(&format!("/tasks/{}", task.id))) { (short_id(task)) }
                            }
                            td { (status_badge(task.status().as_str())) }
                            td { a href=(asset_href(state, task.key.inventory_id.as_str())) { (task.key.inventory_id) } }
                            td { (task.key.product) }
                            td { (task.key.version) }
                            td { (task.priority) }
                            td { (task.current_step().map(|s| s.as_str()).unwrap_or("–")) }
                            td { (task.attempt) }
                            td { (time(task.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// The link to an asset's page.
pub(crate) fn asset_href(state: &ConsoleState, inventory_id: &str) -> String {
    state.at(&format!(
        "/assets/{}",
        task_api::views::encode(inventory_id)
    ))
}

/// The id's last 12 characters: unique enough to tell tasks apart in a list, the link has all.
fn short_id(task: &Task) -> String {
    let id = task.id.to_string();
    format!("…{}", &id[id.len().saturating_sub(12)..])
}

/// `GET /tasks`.
pub(crate) async fn list(
    State(state): State<ConsoleState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Markup, ConsoleError> {
    let filter = query.filter.to_filter()?;
    let request = PageRequest {
        after: Some(query.after.clone()).filter(|a| !a.is_empty()),
        limit: PAGE_SIZE,
    };
    let found = state
        .store
        .list_tasks(&session.tenant, &filter, &request)
        .await?;
    let more = found.next.as_ref().map(|next| {
        let filters = query.filter.query();
        let sep = if filters.is_empty() { "" } else { "&" };
        state.at(&format!(
            "/tasks?{filters}{sep}after={}",
            task_api::views::encode(next)
        ))
    });
    let body = html! {
        h1 { "Tasks" }
        (filter_form(&state, &query.filter))
        @if found.items.is_empty() && more.is_none() {
            p.empty role="status" { "No tasks match." @if !query.filter.is_empty() { " Change or clear the filter." } }
        } @else {
            @if found.items.is_empty() {
                p.empty role="status" { "No tasks on this stretch; more may follow." }
            } @else {
                (task_table(&state, "Tasks, oldest first", &found.items))
            }
        }
        nav.pager aria-label="Pages" {
            @if request.after.is_some() { a href=(state.at(&format!("/tasks?{}", query.filter.query()))) { "First page" } }
            @if let Some(more) = &more { a rel="next" href=(more) { "More tasks" } }
        }
        section.bulk aria-labelledby="bulk-title" {
            h2 id="bulk-title" { "Cancel every matching task" }
            p { "Asks to cancel every pending or processing task that matches the filter above. You see how many before anything happens." }
            form method="post" action=(state.at("/tasks/cancel")) {
                (token_field(&state, &session))
                (query.filter.hidden_fields())
                button.danger type="submit" { "Cancel matching tasks…" }
            }
        }
    };
    Ok(page(&state, Some(&session), Nav::Tasks, "Tasks", body))
}
