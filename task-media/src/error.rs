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
///
/// The task error says what failed in a few words ("S3 request failed: Connection refused",
/// "S3 request failed: 503 Slow Down"): object_store's own message names the endpoint URL and
/// the client's retry internals ("after 1 retries, max_retries: ..."), which users of the Task
/// API have no business seeing. That full message goes to the log (`warn`), with the URL.
pub fn storage_error(url: &str, err: object_store::Error) -> TaskError {
    let store = match &err {
        object_store::Error::Generic { store, .. } => *store,
        _ => "S3",
    };
    let message = format!("{store} request failed: {}", root_cause(&err));
    tracing::warn!(url, error = %err, "object store request failed");
    match err {
        object_store::Error::NotFound { .. } => TaskError::AssetNotFound {
            url: url.to_owned(),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => TaskError::AssetAccessDenied {
            url: url.to_owned(),
            message,
        },
        object_store::Error::InvalidPath { .. } => TaskError::InvalidAssetUrl {
            url: url.to_owned(),
            reason: err.to_string(),
        },
        _ => TaskError::StorageUnavailable {
            url: url.to_owned(),
            message,
        },
    }
}

/// The longest message kept from a store's error (an S3 error body can be a page of XML).
const MAX_CAUSE_CHARS: usize = 160;

/// The innermost cause of `err` (the OS or HTTP error), without the request line object_store
/// puts in front ("Error performing GET <url> in 12ms, after 1 retries, ... - "), and with any
/// URL or socket address that is left replaced by `<endpoint>`.
pub(crate) fn root_cause(err: &object_store::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    let text = match text.find("Error performing ") {
        Some(at) => text[at..]
            .split_once(" - ")
            .map_or(text.as_str(), |(_, rest)| rest),
        None => text.as_str(),
    };
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|word| {
            let bare = word.trim_matches(|c: char| "()[]<>,;'\"".contains(c));
            if bare.contains("://") || bare.parse::<std::net::SocketAddr>().is_ok() {
                "<endpoint>"
            } else {
                word
            }
        })
        .collect();
    let mut text = words.join(" ");
    if text.chars().count() > MAX_CAUSE_CHARS {
        text = text.chars().take(MAX_CAUSE_CHARS).collect::<String>() + "...";
    }
    if text.is_empty() {
        "no detail".into()
    } else {
        text
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

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn task_errors_keep_the_cause_and_drop_endpoints_and_retry_internals() {
        let dead = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Layer(
                "Error performing HEAD http://10.1.2.3:9000/b/k in 101ms, after 1 retries, \
                 max_retries: 1, retry_timeout: 10s  - HTTP error: error sending request",
                Some(Box::new(Layer(
                    "error sending request for url (http://10.1.2.3:9000/b/k)",
                    Some(Box::new(Layer("Connection refused (os error 111)", None))),
                ))),
            )),
        };
        let mapped = storage_error("s3://b/k", dead);
        assert_eq!(
            mapped.to_string(),
            "Storage unavailable while reading s3://b/k: S3 request failed: Connection refused (os error 111)"
        );
        let throttled = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Layer(
                "Error performing GET https://s3.internal:9000/b/k in 3ms - Server returned \
                 non-2xx status code: 503 Slow Down: from 10.1.2.3:9000",
                None,
            )),
        };
        let shown = storage_error("s3://b/k", throttled).to_string();
        assert_eq!(
            shown,
            "Storage unavailable while reading s3://b/k: S3 request failed: Server returned \
             non-2xx status code: 503 Slow Down: from <endpoint>"
        );
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: Box::new(Layer(
                "Error performing GET http://10.1.2.3:9000/b/k in 3ms - Server returned \
                 non-2xx status code: 403 Forbidden: SignatureDoesNotMatch",
                None,
            )),
        };
        let shown = storage_error("s3://b/k", denied).to_string();
        assert!(!shown.contains("10.1.2.3"), "{shown}");
        assert!(shown.ends_with("(S3 request failed: Server returned non-2xx status code: 403 Forbidden: SignatureDoesNotMatch)"), "{shown}");
    }
}
