//! Embedded, versioned migrations, run on open under a transaction-scoped advisory lock.
//!
//! The schema holds a `schema_version` table with one row per applied migration. Opening a
//! store takes `pg_advisory_xact_lock` on a key derived from the schema name (so stores
//! opening the same schema at once wait for each other, and other schemas do not), creates
//! the schema if needed, applies the missing migrations in order and commits: a failed
//! migration leaves nothing behind. A schema whose version is newer than this build's is
//! refused with both versions named.

use sqlx::{Connection, PgConnection};
use task_core::store::StoreError;

use crate::error::{Ctx, OpenError};

/// One step of the schema.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "tasks, history, catalog items, results, step cache, change counter",
    sql: include_str!("../migrations/0001_tasks.sql"),
}];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Brings `schema` to [`SCHEMA_VERSION`] on `conn` (whose `search_path` is `schema`).
pub(crate) async fn migrate(ctx: &Ctx, conn: &mut PgConnection) -> Result<(), StoreError> {
    let schema = &*ctx.schema;
    let fail = |what: &'static str| move |e| ctx.db("migrating the schema", what, e);
    let mut tx = conn.begin().await.map_err(fail("begin"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("task-store-postgres migrate {schema}"))
        .execute(&mut *tx)
        .await
        .map_err(fail("the migration lock"))?;
    // The name was checked ([a-z0-9_]) before it gets here; quoted all the same.
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .execute(&mut *tx)
    .await
    .map_err(fail("creating the schema"))?;
    let found: i32 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM schema_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(fail("reading schema_version"))?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            schema: schema.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tracing::info!(schema, version = migration.version, "applying migration");
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| ctx.db("migrating the schema", migration.description, e))?;
        sqlx::query("INSERT INTO schema_version (version, description) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *tx)
            .await
            .map_err(fail("recording the migration"))?;
    }
    tx.commit().await.map_err(fail("commit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_end_at_the_schema_version() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
