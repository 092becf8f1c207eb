//! Which store a node keeps its tasks in: a sled directory (embedded, one process) or a
//! PostgreSQL database (`postgres://`, shared by every node of a deployment).
//!
//! The `store` setting (`--store` / `TASKD_STORE` / `store` in the TOML) names either; the older
//! `data_dir` still names a sled directory. The PostgreSQL schema and pool size come from the
//! `[postgres]` table, so one TOML file serves every node.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use task_store_postgres::{DEFAULT_SCHEMA, PostgresOptions, PostgresStore};

use crate::error::TaskdError;

/// `[postgres]`: how a node uses a `postgres://` store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresEntry {
    /// The schema every table lives in (default `task_store`); nodes of one deployment must
    /// name the same one.
    pub schema: Option<String>,
    /// Pooled connections of this node (default 10); each node also holds one connection that
    /// listens for the other nodes' changes.
    pub max_connections: Option<u32>,
}

/// A resolved `store` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSetting {
    /// sled in this directory (single process).
    Sled {
        /// The directory.
        dir: PathBuf,
    },
    /// PostgreSQL.
    Postgres(PostgresSetting),
}

/// Where and how to open a PostgreSQL store.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSetting {
    /// The connection URL as given (it may hold a password: never print it, see
    /// [`PostgresSetting::redacted`]).
    pub url: String,
    /// The schema.
    pub schema: String,
    /// Pooled connections, if set.
    pub max_connections: Option<u32>,
}

impl std::fmt::Debug for PostgresSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSetting")
            .field("url", &self.redacted())
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl PostgresSetting {
    /// The URL with its password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// Opens the store (creating or migrating its schema).
    pub async fn open(&self, retention: Option<Duration>) -> Result<PostgresStore, TaskdError> {
        let mut options = PostgresOptions::new(&self.url)
            .map_err(|e| setting("store", format!("{}: {e}", self.redacted())))?
            .with_schema(self.schema.clone());
        if let Some(max) = self.max_connections {
            options = options.with_max_connections(max);
        }
        if let Some(age) = retention {
            options = options.with_retention(age);
        }
        PostgresStore::open_with(options)
            .await
            .map_err(|e| TaskdError::Setting {
                field: "store".into(),
                reason: format!(
                    "cannot open PostgreSQL {} (schema {}): {e}",
                    self.redacted(),
                    self.schema
                ),
            })
    }
}

impl StoreSetting {
    /// Reads a `store` value: a `postgres://` or `postgresql://` URL, or a sled directory.
    /// `origin` names where the value came from (for messages); `postgres` is the `[postgres]`
    /// table.
    pub fn parse(value: &str, origin: &str, postgres: &PostgresEntry) -> Result<Self, TaskdError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(setting(
                origin,
                "is empty: give a directory or a postgres:// URL",
            ));
        }
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            // Checked now, so a bad URL is refused before anything starts.
            PostgresOptions::new(trimmed)
                .map_err(|e| setting(origin, format!("{}: {e}", redact(trimmed))))?;
            if let Some(0) = postgres.max_connections {
                return Err(setting("postgres.max_connections", "must be at least 1"));
            }
            return Ok(StoreSetting::Postgres(PostgresSetting {
                url: trimmed.to_owned(),
                schema: postgres
                    .schema
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()),
                max_connections: postgres.max_connections,
            }));
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            return Err(setting(
                origin,
                format!(
                    "{scheme}:// is not a store this build knows: give a sled directory or a postgres:// URL"
                ),
            ));
        }
        Ok(StoreSetting::Sled {
            dir: PathBuf::from(value),
        })
    }

    /// Whether several processes may share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreSetting::Postgres(_))
    }

    /// What to print in logs: the directory, or the URL without its password and the schema.
    pub fn describe(&self) -> String {
        match self {
            StoreSetting::Sled { dir } => format!("sled {}", dir.display()),
            StoreSetting::Postgres(pg) => {
                format!("postgres {} schema {}", pg.redacted(), pg.schema)
            }
        }
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

fn setting(field: &str, reason: impl ToString) -> TaskdError {
    TaskdError::Setting {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_sled_and_a_url_is_postgres() {
        let none = PostgresEntry::default();
        assert_eq!(
            StoreSetting::parse("/var/lib/taskd", "store", &none).unwrap(),
            StoreSetting::Sled {
                dir: PathBuf::from("/var/lib/taskd")
            }
        );
        let entry = PostgresEntry {
            schema: Some("media".into()),
            max_connections: Some(4),
        };
        let StoreSetting::Postgres(pg) =
            StoreSetting::parse("postgres://u:s3cret@db:5432/tasks", "store", &entry).unwrap()
        else {
            panic!("a postgres:// URL is a PostgreSQL store");
        };
        assert_eq!(pg.schema, "media");
        assert_eq!(pg.max_connections, Some(4));
        assert!(!pg.redacted().contains("s3cret"), "{}", pg.redacted());
        assert!(!format!("{pg:?}").contains("s3cret"));
        let StoreSetting::Postgres(pg) =
            StoreSetting::parse("postgresql://db/tasks", "store", &none).unwrap()
        else {
            panic!("postgresql:// too");
        };
        assert_eq!(pg.schema, DEFAULT_SCHEMA);
    }

    #[test]
    fn bad_values_name_the_setting_and_the_input() {
        let none = PostgresEntry::default();
        let err = StoreSetting::parse("mysql://db/x", "--store", &none).unwrap_err();
        assert!(err.to_string().contains("--store"), "{err}");
        assert!(err.to_string().contains("mysql://"), "{err}");
        let err = StoreSetting::parse("  ", "store", &none).unwrap_err();
        assert!(err.to_string().contains("store"), "{err}");
        let zero = PostgresEntry {
            max_connections: Some(0),
            ..PostgresEntry::default()
        };
        let err = StoreSetting::parse("postgres://db/x", "store", &zero).unwrap_err();
        assert!(
            err.to_string().contains("postgres.max_connections"),
            "{err}"
        );
        let err = StoreSetting::parse("postgres://u:pw@db:notaport/x", "store", &none).unwrap_err();
        assert!(!err.to_string().contains(":pw@"), "{err}");
    }
}
