//! The client subcommands: ingest, status, watch, cancel, results (`submit` is in submit.rs),
//! over the typed client of `task-client`.

use std::time::Duration;

use serde::Serialize;
use task_client::api::bodies::ItemBody;
use task_client::api::views::TaskView;
use task_client::{Client, ResultQuery};

use crate::error::TaskdError;

/// Prints an answer as the service sent it (pretty JSON).
pub fn print(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("cannot print the answer: {err}"),
    }
}

/// What `taskd ingest` was asked to store.
pub struct Ingest<'a> {
    /// The inventory id.
    pub id: &'a str,
    /// Where the video is.
    pub asset_url: &'a str,
    /// standalone, series, season or episode.
    pub item_type: &'a str,
    /// Title (default: the id).
    pub title: Option<&'a str>,
    /// Tags.
    pub tags: &'a [String],
    /// The parent item's inventory id.
    pub parent: Option<&'a str>,
}

/// `taskd ingest`: upserts a catalog item.
pub async fn ingest(client: &Client, item: &Ingest<'_>) -> Result<(), TaskdError> {
    let mut body = ItemBody::new(
        item.id,
        item.item_type,
        item.title.unwrap_or(item.id),
        item.asset_url,
    );
    if let Some(parent) = item.parent {
        body = body.with_parent(parent);
    }
    body.tags = Some(item.tags.to_vec());
    let (item, _) = client.put_item(&body).await?;
    print(&item);
    Ok(())
}

/// `taskd status`: a task, optionally long-polling for a change.
pub async fn status(client: &Client, task_id: &str, wait: Option<f64>) -> Result<(), TaskdError> {
    let task = match wait {
        Some(secs) => {
            let wait = Duration::try_from_secs_f64(secs).map_err(|e| TaskdError::Api {
                status: 0,
                detail: format!("--wait {secs}: {e}"),
            })?;
            client.poll_task(task_id, wait, None).await?
        }
        None => client.get_task(task_id).await?,
    };
    print(&task);
    Ok(())
}

/// One line per event: time, task, status, step, attempt, error.
fn line(task: &TaskView) -> String {
    let mut out = format!("{}  {}  {:<10}", task.updated_at, task.task_id, task.status);
    if let Some(step) = &task.step {
        out.push_str(&format!(" step={step}"));
    }
    out.push_str(&format!(" attempt={}", task.attempt));
    if task.cancel_requested {
        out.push_str(" cancel_requested");
    }
    if let (Some(code), Some(error)) = (&task.error_code, &task.error) {
        out.push_str(&format!(" error_code={code} error={error:?}"));
    }
    out
}

/// `taskd watch`: follows tasks live over server-sent events until each ends. Returns whether
/// every task ended `done`.
pub async fn watch(client: &Client, task_ids: &[String]) -> Result<bool, TaskdError> {
    let mut followers = Vec::new();
    for id in task_ids {
        let client = client.clone();
        let id = id.clone();
        followers.push(tokio::spawn(async move {
            let mut events = client.events(&id).await?;
            let mut done = false;
            while let Some(task) = events.next().await? {
                println!("{}", line(&task));
                done = task.status == "done";
            }
            Ok::<bool, TaskdError>(done)
        }));
    }
    let mut all_done = true;
    for follower in followers {
        let done = follower.await.map_err(|e| TaskdError::Api {
            status: 0,
            detail: e.to_string(),
        })??;
        all_done &= done;
    }
    Ok(all_done)
}

/// `taskd cancel`.
pub async fn cancel(client: &Client, task_id: &str) -> Result<(), TaskdError> {
    print(&client.cancel_task(task_id).await?);
    Ok(())
}

/// `taskd results`.
pub async fn results(
    client: &Client,
    product: &str,
    inventory_id: &str,
    query: &[(String, String)],
) -> Result<(), TaskdError> {
    let mut wanted = ResultQuery::default();
    for (name, value) in query {
        if name == "version" {
            wanted.version = Some(value.clone());
        } else {
            wanted.filters.push((name.clone(), value.clone()));
        }
    }
    print(&client.results(product, inventory_id, &wanted).await?);
    Ok(())
}
