//! Embedded, versioned migrations, run on open under a transaction-scoped advisory lock.
//!
//! The schema holds a `schema_version` table with one row per applied migration. Opening a
//! store takes `pg_advisory_xact_lock` on a key derived from the schema name (so stores
//! opening the same schema at once wait for each other, and other schemas do not), creates
//! the schema if needed, applies the missing migrations in order and commits: a failed
//! migration leaves nothing behind. A schema whose version is newer than this build's is
//! refused with both versions named.

use sqlx::{Executor, PgPool};
use task_core::store::StoreError;

use crate::error::{Ctx, OpenError};

/// One step of the schema.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tasks, history, catalog items, results, step cache, change counter",
        sql: include_str!("../migrations/0001_tasks.sql"),
    },
    Migration {
        version: 2,
        description: "fair claims across tenants, per-product limits across processes",
        sql: include_str!("../migrations/0002_fair_claims.sql"),
    },
    Migration {
        version: 3,
        description: "webhook subscriptions and their outbox of deliveries",
        sql: include_str!("../migrations/0003_webhooks.sql"),
    },
    Migration {
        version: 4,
        description: "autovacuum of tasks after a bounded number of dead rows",
        sql: include_str!("../migrations/0004_autovacuum.sql"),
    },
    Migration {
        version: 5,
        description: "status counts and per-minute activity, kept with every task write",
        sql: include_str!("../migrations/0005_stats.sql"),
    },
    Migration {
        version: 6,
        description: "an index of the tasks that wait for other tasks",
        sql: include_str!("../migrations/0006_waiting.sql"),
    },
    Migration {
        version: 7,
        description: "catalog items' parents, indexed for listing an item's children",
        sql: include_str!("../migrations/0007_catalog_parents.sql"),
    },
    Migration {
        version: 8,
        description: "an index of the ended webhook deliveries, for their retention",
        sql: include_str!("../migrations/0008_delivery_retention.sql"),
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 8;

/// Brings `schema` to [`SCHEMA_VERSION`] through `pool` (whose `search_path` is `schema`).
pub(crate) async fn migrate(ctx: &Ctx, pool: &PgPool) -> Result<(), StoreError> {
    let schema = &*ctx.schema;
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| ctx.db("migrating the schema", "begin", e))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("task-store-postgres migrate {schema}"))
        .execute(&mut *tx)
        .await
        .map_err(|e| ctx.db("migrating the schema", "the migration lock", e))?;
    // The name was checked ([a-z0-9_]) before it gets here; quoted all the same.
    // Strings without arguments run as simple queries: several statements at once.
    let create = format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    );
    (&mut *tx)
        .execute(create.as_str())
        .await
        .map_err(|e| ctx.db("migrating the schema", "creating the schema", e))?;
    let found: i32 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM schema_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| ctx.db("migrating the schema", "reading schema_version", e))?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            schema: schema.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    // Collected first: an iterator adapter held across the awaits makes the future !Send.
    let missing: Vec<&Migration> = MIGRATIONS.iter().filter(|m| m.version > found).collect();
    for migration in missing {
        tracing::info!(schema, version = migration.version, "applying migration");
        (&mut *tx)
            .execute(migration.sql)
            .await
            .map_err(|e| ctx.db("migrating the schema", migration.description, e))?;
        sqlx::query("INSERT INTO schema_version (version, description) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *tx)
            .await
            .map_err(|e| ctx.db("migrating the schema", "recording the migration", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| ctx.db("migrating the schema", "commit", e))
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
