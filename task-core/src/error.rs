//! The error taxonomy of task failures: what a user sees on a failed task.

use serde::{Deserialize, Serialize};

use crate::task::Step;

/// Why a task (or one attempt of it) failed.
///
/// Each variant has a stable [`code`](TaskError::code) and says by type whether it is worth retrying
/// ([`is_retryable`](TaskError::is_retryable)); anything not marked retryable is permanent.
/// The `Display` of the first three variants is exactly the message of the Task API contract.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum TaskError {
    /// The object (or its bucket) does not exist.
    #[error("Asset not found in the provided S3 location.")]
    AssetNotFound {
        /// The asset URL that was checked.
        url: String,
    },
    /// The object store refused access to the asset.
    #[error(
        "Access denied to the asset at {url}: verify that the engine's credentials may read it ({message})"
    )]
    AssetAccessDenied {
        /// The asset URL that was checked.
        url: String,
        /// The store's own message.
        message: String,
    },
    /// The asset URL of the catalog item cannot be used by this deployment.
    #[error("Invalid asset URL {url:?}: {reason}")]
    InvalidAssetUrl {
        /// The URL as stored on the item.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The prober could not read the asset as a video.
    #[error("Probe failed with error = {message}")]
    ProbeFailed {
        /// The prober's own concise message.
        message: String,
    },
    /// The asset is shorter than the product's minimum duration.
    #[error("Asset shorter than the minimum required length.")]
    AssetTooShort {
        /// The measured duration, in seconds.
        duration_secs: f64,
        /// The product's minimum, in seconds.
        minimum_secs: f64,
    },
    /// The object changed in storage since an earlier step looked at it.
    #[error("Asset at {url} changed during processing: {detail}")]
    AssetChanged {
        /// The asset URL.
        url: String,
        /// What differs (size, ETag).
        detail: String,
    },
    /// The object store or another dependency failed in a way that may pass (network, throttling, 5xx).
    #[error("Storage unavailable while reading {url}: {message}")]
    StorageUnavailable {
        /// What was being read.
        url: String,
        /// The underlying error.
        message: String,
    },
    /// The analyzer ran and failed on this asset.
    #[error("Analysis failed: {message}")]
    AnalysisFailed {
        /// The analyzer's message.
        message: String,
    },
    /// A step failed in a way that may pass on another attempt (a crashed tool, a full disk...).
    #[error("Step {step} failed transiently: {message}")]
    Transient {
        /// The step that failed.
        step: Step,
        /// The underlying error.
        message: String,
    },
    /// A step ran longer than its product's timeout.
    #[error("Step {step} timed out after {timeout_ms} ms")]
    StepTimeout {
        /// The step that timed out.
        step: Step,
        /// The configured timeout.
        timeout_ms: u64,
    },
    /// The worker running the task stopped (crash, lost lease) before the task ended.
    #[error("The worker running the task was lost: {detail}")]
    WorkerLost {
        /// What was observed.
        detail: String,
    },
    /// Every allowed attempt failed with a retryable error.
    #[error("Gave up after {attempts} attempts; last error: {last}")]
    AttemptsExhausted {
        /// How many attempts ran.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<TaskError>,
    },
    /// The task was cancelled on request.
    #[error("Task was cancelled on request")]
    Cancelled,
    /// A bug or an unexpected state inside the engine.
    #[error("Internal error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
}

impl TaskError {
    /// The stable, machine-readable code (`asset_not_found`, `probe_failed`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            TaskError::AssetNotFound { .. } => "asset_not_found",
            TaskError::AssetAccessDenied { .. } => "asset_access_denied",
            TaskError::InvalidAssetUrl { .. } => "invalid_asset_url",
            TaskError::ProbeFailed { .. } => "probe_failed",
            TaskError::AssetTooShort { .. } => "asset_too_short",
            TaskError::AssetChanged { .. } => "asset_changed",
            TaskError::StorageUnavailable { .. } => "storage_unavailable",
            TaskError::AnalysisFailed { .. } => "analysis_failed",
            TaskError::Transient { .. } => "transient",
            TaskError::StepTimeout { .. } => "step_timeout",
            TaskError::WorkerLost { .. } => "worker_lost",
            TaskError::AttemptsExhausted { .. } => "attempts_exhausted",
            TaskError::Cancelled => "cancelled",
            TaskError::Internal { .. } => "internal",
        }
    }

    /// Whether another attempt may succeed. Permanent unless the type says otherwise.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TaskError::StorageUnavailable { .. }
                | TaskError::Transient { .. }
                | TaskError::StepTimeout { .. }
                | TaskError::WorkerLost { .. }
        )
    }

    /// Every code, for documentation and exhaustive tests.
    pub const CODES: [&'static str; 14] = [
        "asset_not_found",
        "asset_access_denied",
        "invalid_asset_url",
        "probe_failed",
        "asset_too_short",
        "asset_changed",
        "storage_unavailable",
        "analysis_failed",
        "transient",
        "step_timeout",
        "worker_lost",
        "attempts_exhausted",
        "cancelled",
        "internal",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_messages_are_exact() {
        let not_found = TaskError::AssetNotFound {
            url: "s3://b/k".into(),
        };
        assert_eq!(
            not_found.to_string(),
            "Asset not found in the provided S3 location."
        );
        assert_eq!(not_found.code(), "asset_not_found");
        let probe = TaskError::ProbeFailed {
            message: "Invalid data found when processing input".into(),
        };
        assert_eq!(
            probe.to_string(),
            "Probe failed with error = Invalid data found when processing input"
        );
        let short = TaskError::AssetTooShort {
            duration_secs: 540.0,
            minimum_secs: 600.0,
        };
        assert_eq!(
            short.to_string(),
            "Asset shorter than the minimum required length."
        );
        for permanent in [not_found, probe, short] {
            assert!(!permanent.is_retryable(), "{permanent:?}");
        }
    }

    #[test]
    fn exhausted_names_the_last_error_and_is_permanent() {
        let last = TaskError::StepTimeout {
            step: Step::Analyze,
            timeout_ms: 5000,
        };
        assert!(last.is_retryable());
        let exhausted = TaskError::AttemptsExhausted {
            attempts: 3,
            last: Box::new(last),
        };
        assert!(!exhausted.is_retryable());
        assert_eq!(exhausted.code(), "attempts_exhausted");
        assert_eq!(
            exhausted.to_string(),
            "Gave up after 3 attempts; last error: Step analyze timed out after 5000 ms"
        );
    }

    #[test]
    fn serialized_form_carries_the_code() {
        let err = TaskError::AssetTooShort {
            duration_secs: 1.5,
            minimum_secs: 600.0,
        };
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["code"], "asset_too_short");
        assert_eq!(json["minimum_secs"], 600.0);
        let back: TaskError = serde_json::from_value(json).unwrap();
        assert_eq!(back, err);
    }

    #[test]
    fn codes_are_unique_and_listed() {
        let mut codes = TaskError::CODES.to_vec();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), TaskError::CODES.len());
        assert!(TaskError::CODES.contains(&TaskError::Cancelled.code()));
    }
}
