//! Mapping sled and codec failures to [`StoreError`], naming the database path, tree and key.

use std::sync::Arc;

use task_core::store::StoreError;

use crate::keys::printable;

/// The backend name used in [`StoreError::Backend`].
pub(crate) const BACKEND: &str = "sled";

/// Where errors happen: the database path, carried into every error message.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The database directory, as given to `open`.
    pub path: Arc<str>,
}

impl Ctx {
    /// A sled error during `operation`.
    pub fn backend(&self, operation: &'static str, err: sled::Error) -> StoreError {
        match err {
            sled::Error::Io(io) => StoreError::Backend {
                backend: BACKEND,
                operation,
                retryable: matches!(
                    io.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                ),
                message: format!("I/O error on database {}: {io}", self.path),
            },
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                location: self.path.to_string(),
                key: "-".into(),
                reason: format!("sled detected corruption at {at:?}"),
            },
            other => StoreError::Backend {
                backend: BACKEND,
                operation,
                retryable: false,
                message: format!("database {}: {other}", self.path),
            },
        }
    }

    /// An I/O error on a file of the store (the journal, or sled's files at a checkpoint).
    pub fn io(
        &self,
        operation: &'static str,
        file: &std::path::Path,
        err: std::io::Error,
    ) -> StoreError {
        StoreError::Backend {
            backend: BACKEND,
            operation,
            retryable: false,
            message: format!(
                "I/O error on {} (database {}): {err}",
                file.display(),
                self.path
            ),
        }
    }

    /// A file of the store (a journal segment) whose content cannot be read.
    pub fn corrupt_file(&self, file: &std::path::Path, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            location: file.display().to_string(),
            key: "-".into(),
            reason: reason.into(),
        }
    }

    /// A stored value in `tree` at `key` that cannot be read.
    pub fn corrupt(&self, tree: &str, key: &[u8], reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            location: format!("{} (tree {tree})", self.path),
            key: printable(key),
            reason: reason.into(),
        }
    }
}

/// A failure before the store could be used (opening, locking, format check).
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// Another process holds sled's lock on the directory.
    #[error(
        "the database at {path} is in use by another process (sled allows one process per database): {detail}"
    )]
    Locked {
        /// The database directory.
        path: String,
        /// sled's own message.
        detail: String,
    },
    /// The db was written by a newer format of this crate.
    #[error(
        "the database at {path} has format version {found}, newer than {supported} supported here"
    )]
    NewerFormat {
        /// The database directory.
        path: String,
        /// The version found in the meta tree.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
}

impl From<OpenError> for StoreError {
    fn from(err: OpenError) -> Self {
        match &err {
            OpenError::Locked { .. } => StoreError::Backend {
                backend: BACKEND,
                operation: "opening the database",
                retryable: false,
                message: err.to_string(),
            },
            OpenError::NewerFormat { path, .. } => StoreError::Corrupt {
                location: format!("{path} (tree meta)"),
                key: "format".into(),
                reason: err.to_string(),
            },
        }
    }
}
