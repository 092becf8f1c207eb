//! PostgreSQL backend of the media task engine: [`PostgresStore`] implements task-core's
//! [`TaskStore`](task_core::store::TaskStore), [`CatalogStore`](task_core::store::CatalogStore)
//! and [`ResultStore`](task_core::store::ResultStore), and passes task-core's conformance
//! suite.
//!
//! Every table lives in one schema ([`PostgresOptions::with_schema`]), created and migrated
//! on open; each task is a row of indexed columns plus its full JSONB document.
#![deny(missing_docs)]

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};
use task_core::store::{StoreError, TaskChange};
use task_core::time::SharedClock;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

mod catalog;
mod claim;
mod create;
mod error;
mod listen;
mod migrate;
mod options;
mod prune;
mod rows;
mod tasks;
mod write;

pub use error::OpenError;
pub use migrate::SCHEMA_VERSION;
pub use options::{DEFAULT_SCHEMA, PostgresOptions};

use error::Ctx;

/// What every handle of a store shares.
pub(crate) struct Shared {
    pub pool: PgPool,
    pub ctx: Ctx,
    /// This store instance, written as each row's `writer` and sent as the notification
    /// payload, so that its own listener skips its own changes.
    pub instance: Uuid,
    /// The notification channel of the schema.
    pub channel: String,
    pub clock: SharedClock,
    pub changes: broadcast::Sender<TaskChange>,
    /// Dropped with the store: ends the change feed and the retention.
    _stop: watch::Sender<()>,
}

impl Shared {
    /// Broadcasts committed changes to this store's subscribers.
    pub fn notify<'a>(&self, tasks: impl IntoIterator<Item = &'a task_core::task::Task>) {
        for task in tasks {
            // No subscriber is fine: nobody is waiting.
            let _ = self.changes.send(TaskChange::of(task));
        }
    }

    /// Begins a transaction for `operation`.
    pub async fn begin(&self, operation: &'static str) -> Result<Tx, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(|e| self.ctx.db(operation, "beginning a transaction", e))
    }

    /// Ends `tx` after its work gave `result`: commits on success, rolls back at once on
    /// failure. (A dropped sqlx transaction only queues its rollback until the connection is
    /// next used, which would keep its row locks held meanwhile and make claims skip them.)
    pub async fn finish<T>(
        &self,
        tx: Tx,
        result: Result<T, StoreError>,
        operation: &'static str,
        input: impl std::fmt::Display,
    ) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                tx.commit()
                    .await
                    .map_err(|e| self.ctx.db(operation, input, e))?;
                Ok(value)
            }
            Err(err) => {
                if let Err(rollback) = tx.rollback().await {
                    // The server ends the transaction when the connection closes.
                    tracing::warn!(error = %rollback, operation, "rollback failed");
                }
                Err(err)
            }
        }
    }
}

/// A transaction on a pooled connection.
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// A task store in a PostgreSQL schema. Cloning gives another handle to the same store; every
/// handle shares one connection pool and one change feed.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.shared.ctx.schema)
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

/// The prefix of the `application_name` of every connection of the store.
const APPLICATION: &str = "task-store-postgres";

impl PostgresStore {
    /// Opens the store at `url` in schema [`DEFAULT_SCHEMA`] with default options.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(PostgresOptions::new(url)?).await
    }

    /// Opens the store: connects, creates or migrates the schema (refusing one written by a
    /// newer build), and starts the change feed. Must be called inside a tokio runtime.
    #[tracing::instrument(skip_all, fields(schema = %options.schema))]
    pub async fn open_with(options: PostgresOptions) -> Result<Self, StoreError> {
        options.check_schema()?;
        let schema = options.schema.clone();
        let ctx = Ctx {
            schema: schema.as_str().into(),
        };
        let instance = Uuid::now_v7();
        let connect = options
            .connect
            .clone()
            .options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(
                connect
                    .clone()
                    .application_name(&format!("{APPLICATION}/{instance}")),
            )
            .await
            .map_err(|e| ctx.db("connecting", format_args!("{:?}", describe(&connect)), e))?;
        migrate::migrate(&ctx, &pool).await?;
        let watermark: i64 = sqlx::query_scalar("SELECT seq FROM change_counter")
            .fetch_one(&pool)
            .await
            .map_err(|e| ctx.db("opening", "the change counter", e))?;
        let (changes, _) = broadcast::channel(4096);
        let (stop, stopped) = watch::channel(());
        let channel = format!("task_changes_{schema}");
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            ctx: ctx.clone(),
            instance,
            channel: channel.clone(),
            clock: options.clock.clone(),
            changes: changes.clone(),
            _stop: stop,
        });
        listen::spawn(
            listen::Feed {
                ctx,
                pool,
                listen_options: connect.application_name(&listener_name(instance)),
                channel,
                instance,
                changes,
                poll: options.poll_interval,
                watermark,
            },
            stopped.clone(),
        );
        let store = Self { shared };
        if let Some(age) = options.retention {
            prune::spawn(store.clone(), age, stopped);
        }
        Ok(store)
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &str {
        &self.shared.ctx.schema
    }

    /// This store instance's id: written with each of its changes, and part of its listener's
    /// `application_name` (see [`PostgresStore::listener_application_name`]).
    pub fn instance_id(&self) -> Uuid {
        self.shared.instance
    }

    /// The `application_name` of the store's pooled connections, as `pg_stat_activity` shows
    /// it (`task-store-postgres/<instance id>`).
    pub fn application_name(&self) -> String {
        format!("{APPLICATION}/{}", self.shared.instance)
    }

    /// The `application_name` of the connection that LISTENs for this store's changes, as
    /// `pg_stat_activity` shows it (`task-store-postgres/listen/<instance id>`).
    pub fn listener_application_name(&self) -> String {
        listener_name(self.shared.instance)
    }

    /// The connection pool, for operational queries next to the store.
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }
}

fn listener_name(instance: Uuid) -> String {
    format!("{APPLICATION}/listen/{instance}")
}

/// The connection target, without credentials, for error messages.
fn describe(connect: &sqlx::postgres::PgConnectOptions) -> String {
    format!(
        "{}@{}:{}/{}",
        connect.get_username(),
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or("-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_can_be_spawned() {
        let options = PostgresOptions::new("postgres://u@127.0.0.1:1/db").expect("url");
        assert_send(&PostgresStore::open_with(options));
    }
}
