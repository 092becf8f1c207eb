//! `taskd submit`: one task, or a CSV/JSONL file of them sent in batches with a progress bar.
//!
//! CSV files have a header row naming `inventory_id`, `product`, `version` and optionally
//! `priority`; JSONL files have one `{"inventory_id", "product", "version", "priority"?}` per
//! line. The format follows the extension (`.csv`, else JSONL).

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::TaskdError;

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
    let mut body = json!({"inventory_id": inventory_id, "product": product, "version": version});
    if let Some(priority) = priority {
        body["priority"] = json!(priority);
    }
    let task = client.json(reqwest::Method::POST, "/task", &body).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&task).unwrap_or_default()
    );
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
        let answer = client
            .json(
                reqwest::Method::POST,
                "/tasks/batch",
                &json!({"tasks": batch}),
            )
            .await?;
        totals.created += answer["created"].as_u64().unwrap_or(0);
        totals.existing += answer["existing"].as_u64().unwrap_or(0);
        totals.refused += answer["refused"].as_u64().unwrap_or(0);
        for result in answer["results"].as_array().into_iter().flatten() {
            let index = n * chunk.max(1) + result["index"].as_u64().unwrap_or(0) as usize;
            match result["task"]["task_id"].as_str() {
                Some(id) if ids => bar.suspend(|| println!("{id}")),
                Some(_) => {}
                None => bar.suspend(|| {
                    let (status, detail) = (&result["status"], &result["detail"]);
                    eprintln!("entry {}: HTTP {status} {detail}", index + 1);
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
