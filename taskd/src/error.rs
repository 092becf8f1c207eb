//! The daemon's and the client's errors.

use std::path::PathBuf;

/// What can go wrong in `taskd`.
#[derive(Debug, thiserror::Error)]
pub enum TaskdError {
    /// The configuration file cannot be read or parsed.
    #[error("config file {path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting is invalid.
    #[error("invalid setting {field}: {reason}")]
    Setting {
        /// The setting.
        field: String,
        /// Why.
        reason: String,
    },
    /// The store cannot be opened or used.
    #[error("store: {0}")]
    Store(#[from] task_core::store::StoreError),
    /// The runner refused its configuration.
    #[error("runner: {0}")]
    Runner(#[from] task_runner::RunnerError),
    /// Network or file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP request failed before an answer.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The service answered with an error.
    #[error("HTTP {status}: {detail}")]
    Api {
        /// The status code.
        status: u16,
        /// The `detail` of the answer, as text.
        detail: String,
    },
    /// An input file of `submit` is malformed.
    #[error("{path} line {line}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl TaskdError {
    /// An I/O error with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TaskdError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<task_client::ClientError> for TaskdError {
    fn from(err: task_client::ClientError) -> Self {
        match err {
            task_client::ClientError::Api { status, detail, .. } => TaskdError::Api {
                status,
                detail: detail.to_string(),
            },
            task_client::ClientError::Transport { url, source, .. } => {
                TaskdError::Http { url, source }
            }
            other => TaskdError::Api {
                status: 0,
                detail: other.to_string(),
            },
        }
    }
}
