//! The crate's own errors, and how object-store failures map onto the task taxonomy.

use task_core::error::TaskError;

/// What can go wrong in the media layer before a task error is decided.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// An asset URL this deployment cannot use. It displays as its reason alone: whoever
    /// reports it names the URL in front ([`TaskError::InvalidAssetUrl`] and the HTTP layer's
    /// 422 both say `Invalid asset URL "...": <reason>`), so the prefix is never repeated.
    #[error("{reason}")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_access_is_permanent_and_says_to_check_permissions() {
        for err in [
            object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "403 Forbidden".into(),
            },
            object_store::Error::Unauthenticated {
                path: "k".into(),
                source: "401".into(),
            },
        ] {
            let mapped = storage_error("s3://b/k", err);
            assert_eq!(mapped.code(), "asset_access_denied");
            assert!(!mapped.is_retryable());
            assert!(mapped.to_string().contains("verify"), "{mapped}");
        }
        let missing = object_store::Error::NotFound {
            path: "k".into(),
            source: "404".into(),
        };
        assert_eq!(storage_error("s3://b/k", missing).code(), "asset_not_found");
        let flaky = object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        };
        assert!(storage_error("s3://b/k", flaky).is_retryable());
    }
}
