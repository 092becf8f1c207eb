//! The client subcommands: ingest, status, watch, cancel, results. (`submit` is in submit.rs.)

use serde_json::{Value, json};

use crate::client::Client;
use crate::error::TaskdError;

/// Percent-encodes a path segment.
pub fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// `taskd ingest`: upserts a catalog item.
pub async fn ingest(
    client: &Client,
    id: &str,
    asset_url: &str,
    item_type: &str,
    title: Option<&str>,
    tags: &[String],
) -> Result<(), TaskdError> {
    let body = json!({"id": id, "type": item_type, "title": title.unwrap_or(id), "asset_url": asset_url, "tags": tags});
    let item = client
        .json(reqwest::Method::PUT, "/catalog/v1/item", &body)
        .await?;
    print(&item);
    Ok(())
}

/// `taskd status`: a task, optionally long-polling for a change.
pub async fn status(client: &Client, task_id: &str, wait: Option<f64>) -> Result<(), TaskdError> {
    let path = match wait {
        Some(secs) => format!("/task/{}?wait={secs}", encode(task_id)),
        None => format!("/task/{}", encode(task_id)),
    };
    print(&client.get(&path).await?);
    Ok(())
}

/// One line per event: time, task, status, step, attempt, error.
fn line(task: &Value) -> String {
    let mut out = format!(
        "{}  {}  {:<10}",
        task["updated_at"].as_str().unwrap_or("-"),
        task["task_id"].as_str().unwrap_or("-"),
        task["status"].as_str().unwrap_or("-"),
    );
    if let Some(step) = task["step"].as_str() {
        out.push_str(&format!(" step={step}"));
    }
    out.push_str(&format!(" attempt={}", task["attempt"]));
    if task["cancel_requested"] == true {
        out.push_str(" cancel_requested");
    }
    if let (Some(code), Some(error)) = (task["error_code"].as_str(), task["error"].as_str()) {
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
            let mut events = client.events(&encode(&id)).await?;
            let mut last = Value::Null;
            while let Some(task) = events.next().await? {
                println!("{}", line(&task));
                last = task;
            }
            Ok::<bool, TaskdError>(last["status"] == "done")
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
    let (url, builder) = client.request(
        reqwest::Method::DELETE,
        &format!("/task/{}", encode(task_id)),
    );
    print(&client.send(&url, builder).await?);
    Ok(())
}

/// `taskd results`.
pub async fn results(
    client: &Client,
    product: &str,
    inventory_id: &str,
    query: &[(String, String)],
) -> Result<(), TaskdError> {
    let mut path = format!("/results/{}/{}", encode(product), encode(inventory_id));
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if !pairs.is_empty() {
        path = format!("{path}?{}", pairs.join("&"));
    }
    print(&client.get(&path).await?);
    Ok(())
}
