//! The media task engine in one dependency: re-exports of its crates.
//!
//! - [`core`]: the task model, state machine, error taxonomy and storage traits.
//! - [`sled`]: the embedded, crash-safe default store.
//! - [`runner`]: the engine that executes tasks.
//! - [`media`]: the media steps (S3 check, probers, length gate, adbreaks).
#![deny(missing_docs)]

pub use task_core as core;
pub use task_media as media;
pub use task_runner as runner;
pub use task_store_sled as sled;
