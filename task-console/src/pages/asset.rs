//! An asset: its catalog item, its tasks by product and version, and the adbreak candidates of
//! its results on a timeline of its duration.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use maud::{Markup, html};
use serde::Deserialize;
use task_core::catalog::ItemType;
use task_core::ids::{InventoryId, ProductName, Version};
use task_core::store::{PageRequest, TaskFilter};
use task_core::task::Task;

use crate::error::ConsoleError;
use crate::pages::layout::{Nav, page, time};
use crate::pages::tasks::task_table;
use crate::session::Session;
use crate::state::ConsoleState;

/// The most tasks of one item the page reads; the task list (filtered by the item) has all.
const MAX_TASKS: usize = 500;
/// The most children (a season's episodes, a series' seasons) the page lists: one page.
const MAX_CHILDREN: usize = 200;

/// The parts of a stored result the timeline draws: adbreaks' candidates in seconds.
#[derive(Debug, Deserialize)]
struct Breaks {
    duration_secs: f64,
    candidates: Vec<Candidate>,
}

#[derive(Debug, Deserialize)]
struct Candidate {
    time: f64,
    #[serde(default)]
    score: f64,
}

fn clock(secs: f64) -> String {
    let whole = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", whole / 3600, whole / 60 % 60, whole % 60)
}

/// The candidates as ticks on a line as long as the asset, taller for higher scores.
fn timeline(id: &str, breaks: &Breaks) -> Markup {
    let (left, width, base) = (16.0, 968.0, 70.0);
    let duration = breaks.duration_secs.max(f64::EPSILON);
    let best = breaks
        .candidates
        .iter()
        .map(|c| c.score)
        .fold(0.0, f64::max);
    let x = |secs: f64| left + (secs / duration).clamp(0.0, 1.0) * width;
    let title_id = format!("{id}-title");
    let mut by_time: Vec<&Candidate> = breaks.candidates.iter().collect();
    by_time.sort_by(|a, b| a.time.total_cmp(&b.time));
    html! {
        figure.chart.breaks {
            figcaption id=(title_id) {
                (breaks.candidates.len()) " adbreak candidates over " (clock(breaks.duration_secs))
            }
            svg viewBox="0 0 1000 100" role="img" aria-labelledby=(title_id) {
                line.axis-line x1=(left) x2=(left + width) y1=(base) y2=(base) {}
                @for quarter in 0..=4 {
                    @let secs = duration * f64::from(quarter) / 4.0;
                    line.grid x1=(x(secs)) x2=(x(secs)) y1=(base) y2=(base + 6.0) {}
                    text.axis x=(x(secs)) y="92" text-anchor=(match quarter { 0 => "start", 4 => "end", _ => "middle" }) { (clock(secs)) }
                }
                @for candidate in &by_time {
                    @let height = if best > 0.0 { 12.0 + 48.0 * candidate.score / best } else { 30.0 };
                    rect.s-break x=(x(candidate.time) - 1.5) width="3" y=(base - height) height=(height) {
                        title { (clock(candidate.time)) ", score " (format!("{:.2}", candidate.score)) }
                    }
                }
            }
            details {
                summary { "Candidates as a table" }
                div.table-scroll {
                    table {
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Seconds" } th scope="col" { "Score" } } }
                        tbody {
                            @for candidate in &by_time {
                                tr {
                                    th scope="row" { (clock(candidate.time)) }
                                    td { (format!("{:.2}", candidate.time)) }
                                    td { (format!("{:.2}", candidate.score)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn item_tasks(
    state: &ConsoleState,
    session: &Session,
    inventory_id: &InventoryId,
) -> Result<(Vec<Task>, bool), ConsoleError> {
    let filter = TaskFilter {
        inventory_id: Some(inventory_id.clone()),
        ..TaskFilter::default()
    };
    let mut tasks = Vec::new();
    let mut request = PageRequest::first(100);
    loop {
        let found = state
            .store
            .list_tasks(&session.tenant, &filter, &request)
            .await?;
        tasks.extend(found.items);
        match found.next {
            Some(next) if tasks.len() < MAX_TASKS => request.after = Some(next),
            Some(_) => return Ok((tasks, true)),
            None => return Ok((tasks, false)),
        }
    }
}

/// `GET /assets/{inventory_id}`.
pub(crate) async fn show(
    State(state): State<ConsoleState>,
    session: Session,
    Path(raw): Path<String>,
) -> Result<Markup, ConsoleError> {
    let not_found = || ConsoleError::NotFound(format!("Catalog item {raw:?}"));
    let inventory_id = InventoryId::new(raw.clone()).map_err(|_| not_found())?;
    let item = state
        .store
        .get_item(&session.tenant, &inventory_id, true)
        .await?
        .ok_or_else(not_found)?;
    let (tasks, truncated) = item_tasks(&state, &session, &inventory_id).await?;
    let mut groups: BTreeMap<(ProductName, Version), Vec<Task>> = BTreeMap::new();
    for task in tasks {
        groups
            .entry((task.key.product.clone(), task.key.version.clone()))
            .or_default()
            .push(task);
    }
    let mut sections = Vec::new();
    for ((product, version), tasks) in &groups {
        let result = state
            .store
            .get_result(&session.tenant, product, &inventory_id, Some(version))
            .await?;
        let breaks = result
            .as_ref()
            .and_then(|r| serde_json::from_value::<Breaks>(r.data.clone()).ok());
        sections.push((product, version, tasks, result, breaks));
    }
    let children = match item.item.item_type {
        ItemType::Series | ItemType::Season => {
            let first = PageRequest::first(MAX_CHILDREN);
            Some(
                state
                    .store
                    .list_children(&session.tenant, &inventory_id, false, &first)
                    .await?,
            )
        }
        ItemType::Episode | ItemType::Standalone => None,
    };
    let asset =
        |id: &InventoryId| state.at(&format!("/assets/{}", task_api::views::encode(id.as_str())));
    let all_tasks = state.at(&format!(
        "/tasks?inventory_id={}",
        task_api::views::encode(inventory_id.as_str())
    ));
    let body = html! {
        h1 { "Asset " span.mono { (inventory_id) } }
        section aria-labelledby="item-title" {
            h2 id="item-title" { "Catalog item" }
            dl.facts {
                dt { "Title" } dd { (item.item.title) }
                dt { "Type" } dd { (item.item.item_type.as_str()) }
                dt { "Asset URL" } dd.mono { (item.item.asset_url) }
                dt { "Tags" } dd { @if item.item.tags.is_empty() { "–" } @else { (item.item.tags.join(", ")) } }
                @if let Some(parent) = &item.item.parent_id {
                    dt { "Parent" } dd.mono { a href=(asset(parent)) { (parent) } }
                }
                dt { "Created" } dd { (time(item.created_at)) }
                dt { "Updated" } dd { (time(item.updated_at)) }
                @if let Some(deleted) = item.deleted_at { dt { "Deleted" } dd { (time(deleted)) } }
            }
        }
        @if let Some(children) = &children {
            section aria-labelledby="children-title" {
                h2 id="children-title" {
                    @if item.item.item_type == ItemType::Series { "Seasons" } @else { "Episodes" }
                }
                @if children.items.is_empty() {
                    p.empty { "None in the catalog." }
                } @else {
                    ul.children {
                        @for child in &children.items {
                            li { a.mono href=(asset(&child.item.inventory_id)) { (child.item.inventory_id) } " " (child.item.title) }
                        }
                    }
                    @if children.next.is_some() {
                        p { "Only the first " (MAX_CHILDREN) " are listed." }
                    }
                }
            }
        }
        @if sections.is_empty() {
            p.empty role="status" { "No tasks for this item yet." }
        }
        @for (i, (product, version, tasks, result, breaks)) in sections.iter().enumerate() {
            section aria-labelledby=(format!("group-{i}")) {
                h2 id=(format!("group-{i}")) { (product) " " (version) }
                @if let Some(breaks) = breaks {
                    (timeline(&format!("breaks-{i}"), breaks))
                } @else if let Some(result) = result {
                    p { "Result stored " (time(result.updated_at)) "." }
                } @else {
                    p.empty { "No result yet." }
                }
                (task_table(&state, &format!("Tasks of {product} {version}, oldest first"), tasks))
            }
        }
        @if truncated {
            p { "Only the first " (MAX_TASKS) " tasks are shown. " a href=(all_tasks) { "All tasks of this item" } }
        }
    };
    Ok(page(&state, Some(&session), Nav::None, "Asset", body))
}
