//! `taskd submit`: one task, or a CSV/JSONL file of them sent in batches with a progress bar.
//!
//! CSV files have a header row naming `inventory_id`, `product`, `version` and optionally
//! `priority`; JSONL files have one `{"inventory_id", "product", "version", "priority"?}` per
//! line. The format follows the extension (`.csv`, else JSONL).

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::error::TaskdError;
use task_client::Client;
use task_client::api::bodies::NewTaskBody;

/// Reads the entries of a batch file.
pub fn read_entries(path: &Path) -> Result<Vec<Value>, TaskdError> {
    let input = |line: usize, message: String| TaskdError::Input {
        path: path.to_owned(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| TaskdError::io(format!("read {}", path.display()), e))?;
    let mut entries = Vec::new();
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| input(1, e.to_string()))?
            .clone();
        for name in ["inventory_id", "product", "version"] {
            if !headers.iter().any(|h| h == name) {
                return Err(input(1, format!("the header has no {name} column")));
            }
        }
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| input(i + 2, e.to_string()))?;
            let mut entry = serde_json::Map::new();
            for (name, value) in headers.iter().zip(record.iter()) {
                if !value.is_empty() {
                    entry.insert(name.to_owned(), Value::String(value.to_owned()));
                }
            }
            entries.push(Value::Object(entry));
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: Value =
                serde_json::from_str(line).map_err(|e| input(i + 1, e.to_string()))?;
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Submits one task and prints it.
pub async fn one(
    client: &Client,
    inventory_id: &str,
    product: &str,
    version: &str,
    priority: Option<&str>,
) -> Result<(), TaskdError> {
    let mut body = NewTaskBody::new(inventory_id, product, version);
    body.priority = priority.map(str::to_owned);
    let (task, _) = client.create_task(&body).await?;
    crate::commands::print(&task);
    Ok(())
}

/// Totals of a batch submission.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// New tasks.
    pub created: u64,
    /// Entries that found an active task.
    pub existing: u64,
    /// Entries refused.
    pub refused: u64,
}

/// Submits every entry of `path` in batches of `chunk`, with a progress bar; prints each
/// refused entry, then the totals. With `ids`, prints the task ids, one per line.
pub async fn file(
    client: &Client,
    path: &Path,
    chunk: usize,
    ids: bool,
) -> Result<Totals, TaskdError> {
    let entries = read_entries(path)?;
    let bar = ProgressBar::new(entries.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut totals = Totals::default();
    for (n, batch) in entries.chunks(chunk.max(1)).enumerate() {
        // Entries go as read: the service names each invalid one in its result.
        let answer = client.create_tasks(batch).await?;
        totals.created += answer.created as u64;
        totals.existing += answer.existing as u64;
        totals.refused += answer.refused as u64;
        for result in &answer.results {
            let index = n * chunk.max(1) + result.index;
            match &result.task {
                Some(task) if ids => bar.suspend(|| println!("{}", task.task_id)),
                Some(_) => {}
                None => bar.suspend(|| {
                    let detail = result.detail.clone().unwrap_or_default();
                    eprintln!("entry {}: HTTP {} {detail}", index + 1, result.status);
                }),
            }
        }
        bar.inc(batch.len() as u64);
        bar.set_message(format!(
            "({} created, {} existing, {} refused)",
            totals.created, totals.existing, totals.refused
        ));
    }
    bar.finish();
    eprintln!(
        "{} created, {} existing, {} refused",
        totals.created, totals.existing, totals.refused
    );
    Ok(totals)
}
