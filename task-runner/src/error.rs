//! Errors of building or running a runner.

use task_core::ids::ProductName;
use task_core::store::StoreError;
use task_core::task::Step;

/// Why a runner could not be built or shut down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A step was plugged into the wrong slot of the pipeline.
    #[error("pipeline slot {slot} was given a step that reports {got}")]
    StepMismatch {
        /// The slot.
        slot: Step,
        /// What the step says it is.
        got: Step,
    },
    /// A product is configured but the pipeline has no analyzer for it.
    #[error("product {0} is enabled but the pipeline has no analyzer for it")]
    MissingAnalyzer(ProductName),
    /// A setting is out of range.
    #[error("invalid runner setting {field}: {reason}")]
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dispatcher task panicked or was aborted.
    #[error("runner dispatcher stopped abnormally: {0}")]
    Dispatcher(String),
    /// The task that batches the executors' writes panicked or was aborted.
    #[error("runner write batcher stopped abnormally: {0}")]
    WriteBatcher(String),
}
