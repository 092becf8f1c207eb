//! A CSV catalog ingested into a running engine through `task-client`: every row put in the
//! catalog, a task per item submitted in one batch (`POST /tasks/batch`), each task followed
//! live over server-sent events until all have ended, then a summary with the failures by
//! error code.
//!
//! The engine runs in this process (sled in a temporary directory, the runner, the Task API
//! on a free loopback port); the client only speaks HTTP to it, as it would to `taskd`. The
//! catalog (`id,type,title,asset_url`) is written at startup beside clips made with ffmpeg:
//! three long enough for adbreaks' 10 s minimum, one too short, and one row whose file does
//! not exist. Needs ffmpeg.
//!
//! `cargo run --example batch_ingest`

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use futures::StreamExt;
use support::{Engine, Error, Product, make_clip};
use task_api::bodies::{ItemBody, NewTaskBody};
use task_client::Client;
use task_webhooks::UrlPolicy;

/// How the batch ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks done.
    pub done: usize,
    /// Failed tasks by error code.
    pub failed: BTreeMap<String, usize>,
    /// Cancelled tasks.
    pub cancelled: usize,
    /// Rows the catalog or the batch refused, with why.
    pub refused: Vec<String>,
}

/// Writes the sample catalog and its clips into `engine`'s media root; the CSV's path.
fn sample_catalog(engine: &Engine) -> Result<std::path::PathBuf, Error> {
    let rows = [
        ("episode-101", "episode", "Pilot", Some(12.0)),
        ("episode-102", "episode", "The Second One", Some(12.0)),
        ("feature-7", "standalone", "A Feature", Some(15.0)),
        ("teaser-3", "standalone", "Teaser", Some(3.0)),
        ("lost-upload", "standalone", "Never Uploaded", None),
    ];
    let path = engine.media.join("catalog.csv");
    let mut csv = csv::Writer::from_path(&path)?;
    csv.write_record(["id", "type", "title", "asset_url"])?;
    for (id, item_type, title, seconds) in rows {
        let file = format!("{id}.mp4");
        if let Some(seconds) = seconds {
            make_clip(&engine.media.join(&file), seconds, -20.0)?;
        }
        csv.write_record([id, item_type, title, &engine.file_url(&file)])?;
    }
    csv.flush()?;
    Ok(path)
}

/// Ingests the catalog at `csv`, submits an adbreaks task per item in one batch, and follows
/// them until all have ended.
pub async fn ingest(client: &Client, csv: &Path) -> Result<Summary, Error> {
    let mut summary = Summary::default();
    let mut reader = csv::Reader::from_path(csv)?;
    let mut tasks = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record?;
        let [id, item_type, title, asset_url] = [0, 1, 2, 3].map(|i| record.get(i).unwrap_or(""));
        let item = ItemBody::new(id, item_type, title, asset_url);
        match client.put_item(&item).await {
            Ok(_) => tasks.push(NewTaskBody::new(id, "adbreaks", "1.0")),
            Err(e) => summary.refused.push(format!("row {}: {e}", line + 2)),
        }
    }
    println!("ingested {} items", tasks.len());

    let batch = client.create_tasks(&tasks).await?;
    println!(
        "batch: {} created, {} already active, {} refused",
        batch.created, batch.existing, batch.refused
    );
    let mut names = HashMap::new();
    let mut streams = Vec::new();
    for entry in batch.results {
        let Some(task) = entry.task else {
            let id = &tasks[entry.index].inventory_id;
            summary.refused.push(format!("{id}: {:?}", entry.detail));
            continue;
        };
        names.insert(task.task_id.clone(), task.inventory_id.clone());
        streams.push(client.events(&task.task_id).await?.into_stream().boxed());
    }

    // Every task's events in one stream; each task's stream ends after its last status.
    let mut events = futures::stream::select_all(streams);
    let mut last = HashMap::new();
    while let Some(task) = events.next().await {
        let task = task?;
        // The step while it runs, the error code once it has failed.
        let detail = task.error_code.as_deref().or(task.step.as_deref());
        let detail = detail.unwrap_or("");
        println!("  {:<12} {:<10} {detail}", task.inventory_id, task.status);
        last.insert(task.task_id.clone(), task);
    }
    for (task_id, inventory_id) in &names {
        let task = last
            .get(task_id)
            .ok_or("a task's events ended without it")?;
        match (task.status.as_str(), &task.error_code) {
            ("done", _) => summary.done += 1,
            ("cancelled", _) => summary.cancelled += 1,
            ("failed", Some(code)) => *summary.failed.entry(code.clone()).or_default() += 1,
            (status, _) => return Err(format!("{inventory_id} ended {status}").into()),
        }
    }
    Ok(summary)
}

async fn run() -> Result<Summary, Error> {
    let engine = Engine::start(vec![Product::adbreaks(10)?], UrlPolicy::default()).await?;
    let csv = sample_catalog(&engine)?;
    println!(
        "catalog {}:\n{}",
        csv.display(),
        std::fs::read_to_string(&csv)?
    );
    let summary = ingest(&engine.client, &csv).await?;
    println!(
        "\nsummary: {} done, {} cancelled",
        summary.done, summary.cancelled
    );
    for (code, count) in &summary.failed {
        println!("  failed {code}: {count}");
    }
    for refusal in &summary.refused {
        println!("  refused {refusal}");
    }
    engine.stop().await?;
    Ok(summary)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_summary_counts_each_outcome() {
        let summary = run()
            .await
            .unwrap_or_else(|err| panic!("batch_ingest failed: {err}"));
        let failed = BTreeMap::from([
            ("asset_not_found".to_owned(), 1),
            ("asset_too_short".to_owned(), 1),
        ]);
        assert_eq!(
            summary,
            Summary {
                done: 3,
                failed,
                cancelled: 0,
                refused: vec![],
            }
        );
    }
}
