//! The core of the media task engine: typed tasks, their state machine, the error taxonomy and
//! the storage traits every backend implements. It knows nothing of sled, HTTP, S3 or ffmpeg.
//!
//! - [`ids`]: validated identifiers ([`TaskId`](ids::TaskId), [`ProductName`](ids::ProductName)...).
//! - [`task`]: the task record, its [`Status`](task::Status), [`Step`](task::Step)s and checkpoints.
//! - [`machine`]: the pure transition function; stores persist what it returns.
//! - [`error`]: [`TaskError`](error::TaskError), the failures users see, with stable codes.
//! - [`hierarchy`]: the catalog's `parent_id` rule (an episode in a season, a season in a
//!   series) and listing by parent.
//! - [`store`]: the [`TaskStore`](store::TaskStore), [`CatalogStore`](store::CatalogStore) and
//!   [`ResultStore`](store::ResultStore) traits.
//! - [`stats`]: the status counts and per-minute activity every store keeps with its writes.
//! - [`telemetry`]: every metric the engine records (through the `metrics` facade), off until
//!   enabled.
//! - [`fair`]: the claim order across tenants and per-product limits, shared by the stores.
//! - [`memory`]: the in-memory reference store.
//! - `testing` (feature `testing`): the conformance suite every backend runs.
//!
//! ```
//! use std::time::Duration;
//! use task_core::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::default();
//! let key = TaskKey {
//!     tenant: TenantId::new("acme")?,
//!     inventory_id: InventoryId::new("movie-42")?,
//!     product: ProductName::new("adbreaks")?,
//!     version: Version::new("1.0.1")?,
//! };
//! let created = store.create_task(NewTask { key, priority: Priority::High }).await?;
//! assert!(created.created);
//!
//! let task = store.claim_one(WorkerId::new("worker-1")?, Duration::from_secs(30)).await?.unwrap();
//! let task = store.apply(task.id, task.epoch, &[TaskEvent::StepStarted { step: Step::S3Check }]).await?;
//! assert_eq!(task.status(), Status::Processing);
//! assert_eq!(task.current_step(), Some(Step::S3Check));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod catalog;
pub mod error;
pub mod fair;
pub mod hierarchy;
pub mod ids;
pub mod machine;
pub mod memory;
pub mod results;
pub mod stats;
pub mod store;
pub mod task;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod webhooks;

/// The types most users need, in one import.
pub mod prelude {
    pub use crate::catalog::{CatalogItem, DeletedItem, ItemType, ItemUpsert};
    pub use crate::error::TaskError;
    pub use crate::hierarchy::CatalogStoreExt;
    pub use crate::ids::{
        InventoryId, Priority, ProductName, TaskId, TenantId, ValidationError, Version, WorkerId,
    };
    pub use crate::machine::{Authority, TaskEvent, TransitionError};
    pub use crate::memory::MemoryStore;
    pub use crate::results::AnalysisResult;
    pub use crate::store::{
        ApplyRequest, CatalogStore, ClaimRequest, CreateOutcome, NewTask, Page, PageRequest,
        ResultStore, Store, StoreError, TaskChange, TaskFilter, TaskStore, TaskStoreExt,
    };
    pub use crate::task::{
        Checkpoint, HistoryEntry, Lease, Status, Step, Task, TaskKey, TaskState,
    };
    pub use crate::time::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};
    pub use crate::webhooks::{
        AttemptOutcome, Delivery, DeliveryId, DeliveryState, Webhook, WebhookEvent, WebhookId,
        WebhookStore,
    };
}
