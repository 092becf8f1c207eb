//! The wire types of the media task engine's Task API: what `task-http` serialises and what
//! `task-client` reads back, in one place so that the two never drift.
//!
//! ```
//! use task_api::views::TaskView;
//!
//! let body = r#"{"task_id": "0190b5d2-7c3e-7000-8000-000000000001", "inventory_id": "movie-42",
//!   "product": "adbreaks", "version": "1.0.1", "priority": "high", "status": "pending",
//!   "step": null, "attempt": 0, "cancel_requested": false, "error": null, "error_code": null,
//!   "last_error": null, "error_detail": null, "probe": null,
//!   "created_at": "2026-11-30T12:00:00.000Z", "updated_at": "2026-11-30T12:00:00.000Z",
//!   "started_at": null, "finished_at": null, "_links": {}}"#;
//! let task: TaskView = serde_json::from_str(body)?;
//! assert_eq!(task.status, "pending");
//! # Ok::<(), serde_json::Error>(())
//! ```
#![deny(missing_docs)]

pub mod bodies;
pub mod errors;
pub mod fingerprint;
pub mod views;
pub mod webhooks;
