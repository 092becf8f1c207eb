//! An asset: its catalog item, its tasks by product and version, and the latest result of each
//! (adbreak candidates, shots, stills, fingerprint, intro and credits; see [`super::results`]).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use maud::{Markup, html};
use task_core::catalog::ItemType;
use task_core::ids::{InventoryId, ProductName, Version};
use task_core::store::{PageRequest, TaskFilter};
use task_core::task::{Step, Task};

use crate::error::ConsoleError;
use crate::pages::layout::{Nav, page, time};
use crate::pages::results;
use crate::pages::tasks::task_table;
use crate::session::Session;
use crate::state::ConsoleState;

/// The most tasks of one item the page reads; the task list (filtered by the item) has all.
const MAX_TASKS: usize = 500;
/// The most children (a season's episodes, a series' seasons) the page lists: one page.
const MAX_CHILDREN: usize = 200;

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

/// The asset's duration as the probe step of one of `tasks` measured it (`duration_secs`).
fn probed(tasks: &[Task]) -> Option<f64> {
    tasks.iter().rev().find_map(|task| {
        task.checkpoint(Step::Probe)?
            .output
            .get("duration_secs")?
            .as_f64()
    })
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
        sections.push((product, version, tasks, result, probed(tasks)));
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
    let asset_href = |id: &str| state.at(&format!("/assets/{}", task_api::views::encode(id)));
    let asset = |id: &InventoryId| asset_href(id.as_str());
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
        @for (i, (product, version, tasks, result, probed)) in sections.iter().enumerate() {
            section aria-labelledby=(format!("group-{i}")) {
                h2 id=(format!("group-{i}")) { (product) " " (version) }
                @if let Some(result) = result {
                    p { "Result stored " (time(result.updated_at)) "." }
                    @if let Some(view) = results::view(&format!("result-{i}"), product.as_str(), &result.data, *probed, &asset_href) {
                        (view)
                    }
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
