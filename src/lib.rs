//! The media task engine in one dependency: re-exports of its crates.
//!
//! - [`core`]: the task model, state machine, error taxonomy and storage traits.
//! - [`sled`]: the embedded, crash-safe default store.
//! - [`runner`]: the engine that executes tasks.
#![deny(missing_docs)]

pub use task_core as core;
pub use task_runner as runner;
pub use task_store_sled as sled;
