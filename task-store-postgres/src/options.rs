//! How to open a [`PostgresStore`](crate::PostgresStore): where, in which schema, with how
//! many connections, on which clock.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use task_core::time::{SharedClock, SystemClock};

use crate::error::OpenError;

/// Options of [`PostgresStore::open_with`](crate::PostgresStore::open_with).
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub(crate) connect: PgConnectOptions,
    pub(crate) schema: String,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) clock: SharedClock,
    pub(crate) poll_interval: Duration,
    pub(crate) retention: Option<Duration>,
}

/// The schema used when none is given.
pub const DEFAULT_SCHEMA: &str = "task_store";

impl PostgresOptions {
    /// Options for the database at `url` (`postgres://user@host:port/db`), in schema
    /// [`DEFAULT_SCHEMA`], with a pool of 10 connections, the system clock, a change poll every
    /// second and no retention.
    pub fn new(url: &str) -> Result<Self, OpenError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(OpenError::InvalidUrl(
                "the URL must start with postgres:// or postgresql://".into(),
            ));
        }
        let connect =
            PgConnectOptions::from_str(url).map_err(|e| OpenError::InvalidUrl(e.to_string()))?;
        Ok(Self {
            connect,
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_secs(1),
            retention: None,
        })
    }

    /// Options from already built connection options (host, credentials, TLS...).
    pub fn from_connect_options(connect: PgConnectOptions) -> Self {
        Self {
            connect,
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_secs(1),
            retention: None,
        }
    }

    /// Keeps every table in `schema` (`[a-z_][a-z0-9_]*`, at most 63 bytes), created on open.
    /// Stores in different schemas of one database are independent.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most pooled connections (at least 1; default 10). The change listener holds one
    /// more of its own.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a pooled connection before failing retryably (default 10 s).
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Reads "now" from `clock` (tests pass a manual clock). Every store on one database
    /// should read the same time.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How often the change listener looks for changes of other processes even without a
    /// notification (default 1 s): the bound on how late a change is seen if a notification
    /// is lost.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Deletes finished tasks (and their history), and webhook deliveries that ended
    /// (delivered or failed; pending ones never), once they are older than `age`, checking
    /// about once a second, in bounded batches.
    pub fn with_retention(mut self, age: Duration) -> Self {
        self.retention = Some(age);
        self
    }

    /// The schema the store will use.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Checks the schema name: it is interpolated (quoted) into DDL and `search_path`.
    pub(crate) fn check_schema(&self) -> Result<(), OpenError> {
        let name = &self.schema;
        let refuse = |reason| {
            Err(OpenError::InvalidSchema {
                name: name.clone(),
                reason,
            })
        };
        let Some(first) = name.chars().next() else {
            return refuse("must not be empty");
        };
        if name.len() > 63 {
            return refuse("must be at most 63 bytes");
        }
        if !(first.is_ascii_lowercase() || first == '_') {
            return refuse("must start with a lowercase ASCII letter or '_'");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return refuse("may only hold [a-z0-9_]");
        }
        if name.starts_with("pg_") {
            return refuse("names starting with pg_ are reserved by PostgreSQL");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        let base = PostgresOptions::new("postgres://postgres@127.0.0.1/test").expect("url");
        for good in ["tasks", "_t1", "a_b_9"] {
            assert!(
                base.clone().with_schema(good).check_schema().is_ok(),
                "{good}"
            );
        }
        for bad in ["", "Tasks", "9a", "a-b", "a\"b", "pg_x", &"a".repeat(64)] {
            assert!(
                base.clone().with_schema(bad).check_schema().is_err(),
                "{bad}"
            );
        }
        assert!(PostgresOptions::new("mysql://x").is_err());
    }
}
