//! The crate's own errors, and how object-store failures map onto the task taxonomy.

use task_core::error::TaskError;

/// What can go wrong in the media layer before a task error is decided.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// An asset URL this deployment cannot use.
    #[error("invalid asset URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A local tool (ffmpeg, ffprobe) could not be started.
    #[error(
        "cannot run {tool}: {message} (install ffmpeg, e.g. with scripts/install-test-deps.sh)"
    )]
    ToolMissing {
        /// The tool.
        tool: &'static str,
        /// The OS error.
        message: String,
    },
}

impl From<MediaError> for TaskError {
    fn from(err: MediaError) -> Self {
        match err {
            MediaError::InvalidUrl { url, reason } => TaskError::InvalidAssetUrl { url, reason },
            MediaError::ToolMissing { .. } => TaskError::Internal {
                message: err.to_string(),
            },
        }
    }
}

/// Maps an object-store error on `url` to the task taxonomy: missing objects and
/// buckets are `asset_not_found`, refused access is permanent, everything else (timeouts,
/// connection errors, throttling, 5xx) is retryable.
pub fn storage_error(url: &str, err: object_store::Error) -> TaskError {
    match err {
        object_store::Error::NotFound { .. } => TaskError::AssetNotFound {
            url: url.to_owned(),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => TaskError::AssetAccessDenied {
            url: url.to_owned(),
            message: err.to_string(),
        },
        object_store::Error::InvalidPath { .. } => TaskError::InvalidAssetUrl {
            url: url.to_owned(),
            reason: err.to_string(),
        },
        other => TaskError::StorageUnavailable {
            url: url.to_owned(),
            message: other.to_string(),
        },
    }
}
