//! Mapping sqlx and PostgreSQL failures to [`StoreError`], naming the schema, the operation
//! and its input.

use std::fmt::Display;
use std::sync::Arc;

use task_core::store::StoreError;

/// The backend name used in [`StoreError::Backend`].
pub(crate) const BACKEND: &str = "postgres";

/// Why a [`PostgresStore`](crate::PostgresStore) cannot be opened. Converted into
/// [`StoreError`] by `open`; the message names the schema and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database URL does not parse.
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(String),
    /// The schema name is not one the store accepts.
    #[error("invalid schema name {name:?}: {reason}")]
    InvalidSchema {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The schema was written by a newer build of the store.
    #[error(
        "schema {schema} has format version {found}, newer than version {supported} that this build \
         supports: upgrade task-store-postgres (never downgrade a database)"
    )]
    NewerSchema {
        /// The schema.
        schema: String,
        /// The version found in its `schema_version` table.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
}

impl From<OpenError> for StoreError {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::InvalidUrl(_) => StoreError::Invalid {
                field: "database_url",
                reason: err.to_string(),
            },
            OpenError::InvalidSchema { .. } => StoreError::Invalid {
                field: "schema",
                reason: err.to_string(),
            },
            OpenError::NewerSchema { ref schema, .. } => StoreError::Corrupt {
                location: format!("schema {schema}"),
                key: "schema_version".into(),
                reason: err.to_string(),
            },
        }
    }
}

/// Where errors happen: the schema, carried into every message.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The store's schema.
    pub schema: Arc<str>,
}

/// SQLSTATE codes after which the same call may succeed: serialization failures, deadlocks,
/// lock timeouts, an administrator's shutdown, too many connections, out of resources.
const RETRYABLE_STATES: [&str; 9] = [
    "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53000", "53100", "53300",
];

impl Ctx {
    /// A failure of `operation` on `input` (a task id, a key...).
    pub fn db(&self, operation: &'static str, input: impl Display, err: sqlx::Error) -> StoreError {
        let schema = &self.schema;
        match &err {
            sqlx::Error::Database(db) => {
                let state = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let detail = match db.constraint() {
                    Some(constraint) => format!("{db} (SQLSTATE {state}, constraint {constraint})"),
                    None => format!("{db} (SQLSTATE {state})"),
                };
                let message = format!("{input} in schema {schema}: {detail}");
                match state.as_str() {
                    // A string PostgreSQL cannot hold (a NUL character in JSON or text), or a
                    // value too large or too deep for it.
                    "22P05" | "22021" | "54000" | "54001" | "22P02" => StoreError::Invalid {
                        field: "value",
                        reason: message,
                    },
                    "23505" | "23503" | "23514" => StoreError::Conflict(message),
                    s if RETRYABLE_STATES.contains(&s) || s.starts_with("08") => {
                        backend(operation, message, true)
                    }
                    _ => backend(operation, message, false),
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => backend(
                operation,
                format!("{input} in schema {schema}: {err}"),
                true,
            ),
            _ => backend(
                operation,
                format!("{input} in schema {schema}: {err}"),
                false,
            ),
        }
    }

    /// A stored JSON document of `table` at `key` that does not decode.
    pub fn corrupt(&self, table: &str, key: impl Display, reason: impl Display) -> StoreError {
        StoreError::Corrupt {
            location: format!("{}.{table}", self.schema),
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }
}

fn backend(operation: &'static str, message: String, retryable: bool) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        operation,
        message,
        retryable,
    }
}

/// A value the store cannot encode (never expected: task-core's types serialize).
pub(crate) fn encode_error(what: &str, err: serde_json::Error) -> StoreError {
    StoreError::Invalid {
        field: "value",
        reason: format!("{what} does not serialize to JSON: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_retryable_and_name_the_input() {
        let ctx = Ctx {
            schema: "s1".into(),
        };
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        let err = ctx.db("claiming tasks", "worker w1", io);
        assert!(err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(text.contains("worker w1") && text.contains("s1"), "{text}");
        assert!(ctx.db("x", "y", sqlx::Error::PoolTimedOut).is_retryable());
        let closed = ctx.db("x", "y", sqlx::Error::PoolClosed);
        assert!(!closed.is_retryable());
    }

    #[test]
    fn a_newer_schema_names_both_versions() {
        let err: StoreError = OpenError::NewerSchema {
            schema: "prod".into(),
            found: 7,
            supported: 1,
        }
        .into();
        let text = err.to_string();
        assert!(
            text.contains("version 7") && text.contains("version 1"),
            "{text}"
        );
        assert!(!err.is_retryable());
    }
}
