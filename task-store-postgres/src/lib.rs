//! PostgreSQL backend of the media task engine: [`PostgresStore`] implements task-core's
//! [`TaskStore`](task_core::store::TaskStore), [`CatalogStore`](task_core::store::CatalogStore)
//! and [`ResultStore`](task_core::store::ResultStore), and passes task-core's conformance
//! suite against a real server (`tests/conformance.rs`). Several processes may share one
//! database: claims, fencing, dedup and the change feed hold across them.
//!
//! ```no_run
//! use std::time::Duration;
//! use task_core::prelude::*;
//! use task_store_postgres::{PostgresOptions, PostgresStore};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = PostgresOptions::new("postgres://postgres@127.0.0.1:5432/test")?
//!     .with_schema("media_tasks")
//!     .with_max_connections(10);
//! let store = PostgresStore::open_with(options).await?; // creates or migrates the schema
//! let key = TaskKey {
//!     tenant: TenantId::new("acme")?,
//!     inventory_id: InventoryId::new("movie-42")?,
//!     product: ProductName::new("adbreaks")?,
//!     version: Version::new("1.0.1")?,
//! };
//! store.create_task(NewTask { key, priority: Priority::High }).await?;
//! let mut changes = store.subscribe(); // also sees the changes of other processes
//! if let Some(task) = store.claim_one(WorkerId::new("worker-1")?, Duration::from_secs(30)).await? {
//!     store.apply(task.id, task.epoch, &[TaskEvent::StepStarted { step: Step::S3Check }]).await?;
//! }
//! let _ = changes.recv().await?;
//! # Ok(()) }
//! ```
//!
//! # Why sqlx
//! sqlx is async on tokio (the engine's runtime), pure Rust (no libpq to install), has a
//! connection pool and a LISTEN/NOTIFY client ([`PgListener`](sqlx::postgres::PgListener))
//! built in, and binds Rust vectors as PostgreSQL arrays, which the `unnest` batch writes
//! need. The PostgreSQL-backed Rust queues we compared (underway, apalis-postgres) use it
//! too. Only runtime-checked [`sqlx::query()`] calls are used, never the `query!` macros: building
//! needs no database, and default features are off (no TLS, no migrate or macros crates).
//!
//! # Layout
//! Every table lives in one schema ([`PostgresOptions::with_schema`]; the connections'
//! `search_path`), so independent stores can share a database. A task is a row of indexed
//! columns (`status`, `priority_rank`, `ready_at`, `seq`, `lease_epoch`, `lease_expires_at`,
//! `cancel_requested`, the natural key, times) plus its full serialized
//! [`Task`](task_core::task::Task) as JSONB (`doc`); history entries, catalog items, results
//! and the step cache have their own tables. Times are task-core milliseconds from the
//! store's clock (never the server's `now()`), so tests drive time with a manual clock.
//! The migrations are embedded and versioned (`schema_version`), applied on open under
//! `pg_advisory_xact_lock`; a schema written by a newer build is refused
//! ([`OpenError::NewerSchema`], naming both versions).
//!
//! # One state machine: task-core's
//! Every change is computed in Rust by task-core ([`created`](task_core::machine::created),
//! [`transition_all`](task_core::machine::transition_all),
//! [`ClaimRequest::transition`](task_core::store::ClaimRequest::transition)) on the row read
//! under its lock, and the resulting task is written whole, columns and document together.
//! SQL never decides a transition: the rules (attempt limits, checkpoints, cancel while
//! processing, fencing) exist once, in the pure function every store and its tests share, so
//! this store cannot drift from the memory and sled stores. The price is one round trip to
//! read the locked rows before the write, inside the same transaction.
//!
//! # Claims
//! One transaction: expired leases are requeued first (selected by lease expiry time, never
//! by age, with `FOR UPDATE SKIP LOCKED`, moved by task-core's `LeaseExpired`), then a CTE
//! locks up to `max` ready rows, `ORDER BY priority_rank, ready_at, seq LIMIT n FOR UPDATE
//! SKIP LOCKED`; each is transitioned by [`ClaimRequest::transition`](task_core::store::ClaimRequest::transition)
//! (a task past its attempt limit comes back failed: written, announced, not returned), and
//! one `UPDATE ... FROM unnest(...)` writes them back with their history rows before the
//! commit. A row another claimer holds is skipped, never waited for. Another priority order
//! runs the same statement once per priority, in that order. The partial index
//! `tasks_ready (priority_rank, ready_at, seq) WHERE status = 'pending'` serves both; with
//! 200,000 tasks of which 100,000 pending, the generic plan of a claim of 16
//! (`sql/explain_claim.sql`) is:
//!
//! ```text
//!  Sort (actual rows=16 loops=1)
//!    Sort Key: ready.priority_rank, ready.ready_at, ready.seq
//!    Sort Method: quicksort  Memory: 26kB
//!    CTE ready
//!      ->  Limit (actual rows=16 loops=1)
//!            ->  LockRows (actual rows=16 loops=1)
//!                  ->  Index Scan using tasks_ready on tasks (actual rows=16 loops=1)
//!                        Index Cond: (ready_at <= $1)
//!                        Filter: ((status = 'pending'::text) AND (product <> ALL ($2)))
//!    ->  CTE Scan on ready (actual rows=16 loops=1)
//!  Execution Time: 0.087 ms
//! ```
//!
//! The index is read in claim order and stops after `n` rows; tasks of excluded products and
//! tasks waiting for a retry ahead in the index are stepped over one by one.
//!
//! # Fenced writes
//! `apply`, `apply_many` and the [`TaskStoreExt`](task_core::store::TaskStoreExt) helpers
//! (`extend_lease`, `finish`...) lock their rows (`SELECT ... FOR UPDATE`, in id order) and run
//! the transition with `Authority::Lease(epoch)`, which refuses a stale epoch
//! ([`TransitionError::LeaseLost`](task_core::machine::TransitionError::LeaseLost)) and an
//! expired lease ([`TransitionError::LeaseExpired`](task_core::machine::TransitionError::LeaseExpired)):
//! nothing is written and the error is the memory store's, so
//! [`is_lease_lost`](task_core::store::StoreError::is_lease_lost) works. The write-back
//! also compares the `seq` each row was read at.
//!
//! # Dedup
//! A partial unique index over the natural key of active tasks, and `INSERT ... ON CONFLICT
//! DO NOTHING`, then a read of the active task of each key that conflicted; never
//! check-then-insert. A batch dedups within itself and against stored tasks.
//!
//! # Changes
//! [`subscribe`](task_core::store::TaskStore::subscribe) is a tokio broadcast. A store
//! broadcasts its own changes at commit, like the memory store. Every write also bumps a
//! one-row change counter by the rows it writes (holding that row's lock until commit, so
//! change positions commit in order) and sends one `pg_notify` per commit on the schema's
//! channel with the store instance's id as payload. A listener task on a dedicated
//! connection wakes a syncer on another instance's notification; the syncer reads the tasks
//! whose change position passed its watermark and that another instance wrote, and
//! broadcasts them (a task changed twice between two reads is reported once, in its latest
//! state). It also runs every poll interval (1 s by default,
//! [`PostgresOptions::with_poll_interval`]) and after the listener reconnects (its
//! connection killed, the server restarted), so a lost notification delays a change by at
//! most the poll interval and loses nothing. Notifying transactions serialize at commit in
//! PostgreSQL (which is why River and Oban throttle NOTIFY); here writes already serialize
//! on the counter row from their write statement to their commit, so one notify per commit
//! adds no new point of contention.
//!
//! # Connections
//! No connection or transaction is held between calls: each call takes a pooled connection
//! (10 by default, [`PostgresOptions::with_max_connections`]) for one transaction. A failed
//! transaction is rolled back at once (a dropped sqlx transaction only queues its rollback,
//! which would keep its row locks). The change listener holds one more connection, named
//! [`PostgresStore::listener_application_name`] in `pg_stat_activity`.
//!
//! # Errors
//! Connection failures, pool timeouts, serialization failures, deadlocks and an
//! administrator's shutdown are retryable [`StoreError::Backend`] errors
//! ([`is_retryable`](StoreError::is_retryable)); values PostgreSQL cannot hold (a NUL
//! character in a JSON string or a key) are [`StoreError::Invalid`]; constraint violations
//! are [`StoreError::Conflict`]; an unreadable document is [`StoreError::Corrupt`]. Every
//! message names the operation, its input (task id, key, worker) and the schema.
//!
//! # Retention
//! [`PostgresStore::prune_finished_before`] deletes finished tasks and their history in
//! batches of 1000; [`PostgresOptions::with_retention`] runs it about once a second.
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
            .map_err(|e| ctx.db("connecting", describe(&connect), e))?;
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
