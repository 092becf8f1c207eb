//! The JSON bodies the API returns, built from the store's records on the server and read back
//! by clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use task_core::catalog::CatalogItem;
use task_core::results::AnalysisResult;
use task_core::task::{HistoryEntry, Task};
use task_core::time::Timestamp;
use utoipa::ToSchema;

/// RFC 3339 in UTC with milliseconds, e.g. `2025-01-31T12:00:00.123Z`.
pub fn rfc3339(at: Timestamp) -> String {
    humantime::format_rfc3339_millis(at.to_system_time()).to_string()
}

/// A hypermedia link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Link {
    /// The target, relative to the server root.
    pub href: String,
    /// The HTTP method to use.
    pub method: String,
}

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// The task's id (a UUIDv7).
    pub task_id: String,
    /// The catalog item analysed.
    pub inventory_id: String,
    /// The product.
    pub product: String,
    /// The product version.
    pub version: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    /// `pending`, `processing`, `done`, `failed` or `cancelled`.
    pub status: String,
    /// The running step while processing (`s3_check`, `probe`, `length_gate`, `analyze`), else null.
    pub step: Option<String>,
    /// How many times the task was started (0 before the first start).
    pub attempt: u32,
    /// A cancel was asked for while processing; the task turns `cancelled` when its step stops.
    pub cancel_requested: bool,
    /// While `pending`, the tasks it waits for (its step started or found them, e.g. a
    /// `markers` task waiting for its siblings' fingerprints): it holds no worker and runs
    /// again once all of them have ended. Empty otherwise.
    #[serde(default)]
    pub waiting_for: Vec<String>,
    /// Why the task failed (when `failed`), else null.
    pub error: Option<String>,
    /// The stable code of the failure (when `failed`), else null.
    pub error_code: Option<String>,
    /// The error of the last failed attempt, also while waiting for a retry.
    pub last_error: Option<String>,
    /// The failure with its data (when `failed`), else null: `code` and the error's fields,
    /// e.g. `duration_secs` and `minimum_secs` of `asset_too_short`.
    #[schema(value_type = Option<Object>)]
    pub error_detail: Option<serde_json::Value>,
    /// What the probe step found, once it has run: the prober, the container, the duration,
    /// the streams (codec, size, rate, channels) and the bytes read; else null.
    #[schema(value_type = Option<Object>)]
    pub probe: Option<serde_json::Value>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Time of the last change (RFC 3339, UTC).
    pub updated_at: String,
    /// First start time, if started.
    pub started_at: Option<String>,
    /// End time, if ended.
    pub finished_at: Option<String>,
    /// `self` always; `cancel` while active; `result` when done; `history` and `events` always.
    #[serde(rename = "_links")]
    pub links: BTreeMap<String, Link>,
}

impl TaskView {
    /// The view of `task`, with links under `base`.
    pub fn of(task: &Task, base: &str) -> Self {
        let status = task.status();
        let this = format!("{base}/task/{}", task.id);
        let mut links = BTreeMap::new();
        links.insert("self".to_owned(), link(&this, "GET"));
        links.insert(
            "history".to_owned(),
            link(&format!("{this}/history"), "GET"),
        );
        links.insert("events".to_owned(), link(&format!("{this}/events"), "GET"));
        if status.is_active() {
            links.insert("cancel".to_owned(), link(&this, "DELETE"));
        }
        if status == task_core::task::Status::Done {
            let href = format!(
                "{base}/results/{}/{}?version={}",
                task.key.product,
                encode(task.key.inventory_id.as_str()),
                encode(task.key.version.as_str())
            );
            links.insert("result".to_owned(), link(&href, "GET"));
        }
        let error = task.error();
        Self {
            task_id: task.id.to_string(),
            inventory_id: task.key.inventory_id.to_string(),
            product: task.key.product.to_string(),
            version: task.key.version.to_string(),
            priority: task.priority.to_string(),
            status: status.to_string(),
            step: task.current_step().map(|s| s.to_string()),
            attempt: task.attempt,
            cancel_requested: task.cancel_requested(),
            waiting_for: task.waiting_for().iter().map(ToString::to_string).collect(),
            error: error.map(|e| e.to_string()),
            error_code: error.map(|e| e.code().to_owned()),
            last_error: task.last_error.as_ref().map(|e| e.to_string()),
            error_detail: error.and_then(|e| serde_json::to_value(e).ok()),
            probe: task
                .checkpoint(task_core::task::Step::Probe)
                .map(|checkpoint| checkpoint.output.clone()),
            created_at: rfc3339(task.created_at),
            updated_at: rfc3339(task.updated_at),
            started_at: task.started_at.map(rfc3339),
            finished_at: task.finished_at.map(rfc3339),
            links,
        }
    }
}

fn link(href: &str, method: &str) -> Link {
    Link {
        href: href.to_owned(),
        method: method.to_owned(),
    }
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A catalog item as the API shows it: the fields sent at ingest (unknown ones kept as given)
/// and the times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CatalogItemView {
    /// The inventory id.
    pub id: String,
    /// `standalone`, `series`, `season` or `episode`.
    #[serde(rename = "type")]
    pub item_type: String,
    /// Title.
    pub title: String,
    /// Where the video is.
    pub asset_url: String,
    /// Free tags.
    pub tags: Vec<String>,
    /// The inventory id of its parent (an episode's season, a season's series), or null.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// First ingest time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Soft-delete time, or null.
    pub deleted_at: Option<String>,
    /// Other fields sent at ingest, returned as given.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

impl CatalogItemView {
    /// The view of `item`.
    pub fn of(item: &CatalogItem) -> Self {
        Self {
            id: item.item.inventory_id.to_string(),
            item_type: item.item.item_type.to_string(),
            title: item.item.title.clone(),
            asset_url: item.item.asset_url.clone(),
            tags: item.item.tags.clone(),
            parent_id: item.item.parent_id.as_ref().map(|p| p.to_string()),
            created_at: rfc3339(item.created_at),
            updated_at: rfc3339(item.updated_at),
            deleted_at: item.deleted_at.map(rfc3339),
            extra: item
                .item
                .extra
                .iter()
                // An extra field named like one of the view's (a `parent_id` kept as given
                // before the field existed) would repeat its key in the JSON.
                .filter(|(name, _)| !Self::FIELDS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }

    /// The names of the view's own fields.
    pub const FIELDS: [&str; 9] = [
        "id",
        "type",
        "title",
        "asset_url",
        "tags",
        "parent_id",
        "created_at",
        "updated_at",
        "deleted_at",
    ];
}

/// One page of catalog items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CatalogPage {
    /// The items, ordered by id.
    pub items: Vec<CatalogItemView>,
    /// This page's number, from 1.
    pub page_num: u64,
    /// The page size asked for.
    pub page_size: u64,
    /// Whether a next page exists.
    pub has_next: bool,
}

/// The answer to a catalog delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeletedItemView {
    /// The item, now soft-deleted.
    pub item: CatalogItemView,
    /// The ids of its active tasks that were cancelled (or asked to stop).
    pub cancelled_tasks: Vec<String>,
}

/// Every task of one catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ItemTasksView {
    /// The item.
    pub inventory_id: String,
    /// Its tasks, oldest first.
    pub tasks: Vec<TaskView>,
}

/// One transition of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntryView {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// What happened (`created`, `claimed`, `step_started`, `step_succeeded`, `failed`...).
    pub event: String,
    /// Status before, null at creation.
    pub from: Option<String>,
    /// Status after.
    pub to: String,
    /// The step concerned, if any.
    pub step: Option<String>,
    /// The attempt after the transition.
    pub attempt: u32,
    /// The error message, for failures.
    pub error: Option<String>,
    /// The error code, for failures.
    pub error_code: Option<String>,
    /// Extra detail (worker, retry time...).
    pub detail: Option<String>,
}

impl HistoryEntryView {
    /// The view of `entry`.
    pub fn of(entry: &HistoryEntry) -> Self {
        Self {
            at: rfc3339(entry.at),
            event: entry.event.clone(),
            from: entry.from.map(|s| s.to_string()),
            to: entry.to.to_string(),
            step: entry.step.map(|s| s.to_string()),
            attempt: entry.attempt,
            error: entry.error.as_ref().map(|e| e.to_string()),
            error_code: entry.error.as_ref().map(|e| e.code().to_owned()),
            detail: entry.detail.clone(),
        }
    }
}

/// The audit trail of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// The task.
    pub task_id: String,
    /// Every transition, oldest first.
    pub history: Vec<HistoryEntryView>,
}

/// A stored analysis result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultView {
    /// Always `success`.
    pub status: String,
    /// When the result was written (RFC 3339, UTC).
    pub updated: String,
    /// The product version that produced it.
    pub version_id: String,
    /// The catalog item.
    pub inventory_id: String,
    /// The product.
    #[serde(rename = "type")]
    pub product: String,
    /// The product's data (for `adbreaks`: `{"adbreak": [{"rank", "candidates"}]}`, filtered;
    /// for `scenes`: `{"duration_secs", "threshold", "shots": [[start, end]], "cuts": [{"time",
    /// "score"}]}`; for `thumbnails`: `{"duration_secs", "shots", "stills": [{"time_secs", "shot":
    /// [start, end], "key", "url", "width", "height", "mean_luma"}]}`; for `fingerprint`:
    /// `{"algorithm", "item_secs", "duration_secs", "items", "fingerprint"}` (base64 of
    /// little-endian 32-bit Chromaprint items); for `markers`: `{"intro": [start, end] | null,
    /// "credits": [start, end] | null, "intro_shared_with", "credits_shared_with",
    /// "fingerprint_version", "siblings_compared", "siblings_left_out"}`).
    #[schema(value_type = Object)]
    pub data: Value,
}

impl ResultView {
    /// The view of `result` with presented `data`.
    pub fn of(result: &AnalysisResult, data: Value) -> Self {
        Self {
            status: "success".to_owned(),
            updated: rfc3339(result.updated_at),
            version_id: result.version.to_string(),
            inventory_id: result.inventory_id.to_string(),
            product: result.product.to_string(),
            data,
        }
    }
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok`, `ready`, `draining` or `unavailable`.
    pub status: String,
    /// Why the service is not ready (`unavailable` only), e.g. the store's disk is full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The result of one entry of `POST /tasks/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchEntryResult {
    /// The entry's position in `tasks`, from 0.
    pub index: usize,
    /// What `POST /task` would have answered: 201 created, 200 existing active task, 404 item not
    /// in the catalog, 422 invalid entry.
    pub status: u16,
    /// The task, for 200 and 201.
    pub task: Option<TaskView>,
    /// Why the entry was refused: a message (404) or a list of field errors (422).
    pub detail: Option<Value>,
}

/// The answer to `POST /tasks/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    /// Entries that created a task.
    pub created: usize,
    /// Entries that found an active task with the same key.
    pub existing: usize,
    /// Entries refused.
    pub refused: usize,
    /// One result per entry, in order.
    pub results: Vec<BatchEntryResult>,
}
