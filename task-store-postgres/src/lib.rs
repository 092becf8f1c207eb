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
//! and the step cache have their own tables, and so do webhook subscriptions and their
//! deliveries (`webhooks`, `webhook_deliveries`: the statement that writes a task change also
//! inserts the deliveries it causes, and dispatchers take due ones `FOR UPDATE SKIP LOCKED`).
//! Times are task-core milliseconds from the
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
//! Expired leases are requeued first (selected by lease expiry time, never by age, with
//! `FOR UPDATE SKIP LOCKED`, moved by task-core's `LeaseExpired`, which puts a task back at
//! the ready time it was claimed at: a dead worker's task does not wait behind the backlog),
//! committed on their own when there are any. Then one transaction:
//!
//! - **Per-product limits across processes.** `pg_advisory_xact_lock` of each product the
//!   request limits, in key order; then, in the same transaction, one statement counts each
//!   product's rows processing with an unexpired lease, and the claim statement takes at
//!   most the rest of its limit (a full product is skipped like an excluded one). Two claims
//!   of the same product (in any process) run one after the other, the second seeing the
//!   first's commit, so they cannot both take the last slot.
//! - **Fair across tenants.** One statement per priority in the requested order, until the
//!   claim is full (`sql/fair_ready.sql`): a recursive CTE skip-scans the tenants with pending
//!   tasks of the priority (one index probe per tenant, however long its queue); each
//!   tenant's first ready task and its last turn (`tenant_turns`) give the turn order (least
//!   recently served first, then oldest head); a `LATERAL` subquery locks up to `n` ready
//!   rows of each of the first `n` tenants with `FOR UPDATE SKIP LOCKED`, in
//!   (ready_at, id) order; `row_number()` over that small set gives each row its round (1st
//!   of each tenant, 2nd of each...), and the result is ordered by (round, turn), each
//!   limited product capped at its room, `LIMIT n`. Within a tenant the order stays FIFO by
//!   ready time, then creation (task ids are UUIDv7). The rows locked but not returned (at
//!   most `n` x min(tenants, `n`)) are released at commit.
//! - Each claimed row is transitioned by [`ClaimRequest::transition`](task_core::store::ClaimRequest::transition)
//!   (a task past its attempt limit comes back failed: written, announced, not returned), and
//!   one `UPDATE ... FROM unnest(...)` writes them back with their history rows before the
//!   commit; just before, the tenants served get a new turn in `tenant_turns` (rows locked
//!   in tenant order, after the product locks and before the change counter, as in every
//!   claim, so claims may wait for each other but never in a cycle).
//!
//! The partial index `tasks_ready_tenant (priority_rank, tenant, ready_at, id) WHERE status =
//! 'pending'` serves the skip scan and the per-tenant scans; `tasks_running_product
//! (product, lease_expires_at) WHERE status = 'processing'` the running counts. With
//! 100,000 ready tasks of one tenant, 100 of each of 10 others, 20 processing and 100,000
//! done, a claim of 16 with one product excluded and one limited to 2 more
//! (`sql/explain_claim.sql`, abridged; the statement is planned with its parameters each
//! time, as an unnamed statement):
//!
//! ```text
//!  Limit (actual rows=16 loops=1)
//!    CTE tenants
//!      ->  Recursive Union (actual rows=12 loops=1)
//!            ->  Limit (actual rows=1 loops=1)
//!                  ->  Index Only Scan using tasks_ready_tenant on tasks (actual rows=1 loops=1)
//!                        Index Cond: (priority_rank = '1'::smallint)
//!            ->  WorkTable Scan on tenants (actual rows=1 loops=12)
//!                  SubPlan 1
//!                    ->  Limit (actual rows=1 loops=11)
//!                          ->  Index Only Scan using tasks_ready_tenant on tasks t (actual rows=1 loops=11)
//!                                Index Cond: ((priority_rank = '1'::smallint) AND (tenant > tenants.tenant))
//!    CTE locked
//!      ->  Nested Loop (actual rows=160 loops=1)
//!            ->  WindowAgg (actual rows=10 loops=1)
//!                  ->  Subquery Scan on heads (actual rows=10 loops=1)
//!                        ->  Limit (actual rows=10 loops=1)
//!                              ->  Sort (actual rows=10 loops=1)
//!                                    Sort Key: (COALESCE(tt.served, '0'::bigint)), t_1.ready_at, t_1.id
//!                                    ->  Nested Loop (actual rows=10 loops=1)
//!                                          ->  Hash Right Join (actual rows=12 loops=1)
//!                                                Hash Cond: (tt.tenant = tn.tenant)
//!                                                ->  Seq Scan on tenant_turns tt (actual rows=0 loops=1)
//!                                                ->  Hash (actual rows=12 loops=1)
//!                                                      ->  CTE Scan on tenants tn (actual rows=12 loops=1)
//!                                          ->  Limit (actual rows=1 loops=12)
//!                                                ->  Index Scan using tasks_ready_tenant on tasks t_1 (actual rows=1 loops=12)
//!                                                      Index Cond: ((priority_rank = '1'::smallint) AND (tenant = tn.tenant) AND (ready_at <= '1700000150000'::bigint))
//!                                                      Filter: (product <> ALL ('{nudity}'::text[]))
//!            ->  Subquery Scan on c (actual rows=16 loops=10)
//!                  ->  Limit (actual rows=16 loops=10)
//!                        ->  LockRows (actual rows=16 loops=10)
//!                              ->  Index Scan using tasks_ready_tenant on tasks t_2 (actual rows=16 loops=10)
//!                                    Index Cond: ((priority_rank = '1'::smallint) AND (tenant = heads.tenant) AND (ready_at <= '1700000150000'::bigint))
//!                                    Filter: ((product <> ALL ('{nudity}'::text[])) AND (status = 'pending'::text))
//!    ->  Sort (actual rows=16 loops=1)
//!          Sort Key: r.round, r.turn
//!          ->  Merge Left Join (actual rows=82 loops=1)
//!                Merge Cond: (r.product = l.product)
//!                Filter: ((l.room IS NULL) OR ((row_number() OVER (?)) <= l.room))
//!                ->  WindowAgg (actual rows=160 loops=1)      -- nth of its product
//!                      ->  WindowAgg (actual rows=160 loops=1)  -- round within its tenant
//!                            ->  CTE Scan on locked l_1 (actual rows=160 loops=1)
//!  Planning Time: 1.246 ms
//!  Execution Time: 1.530 ms
//! ```
//!
//! and the count of running tasks before it, an index-only scan of `tasks_running_product`
//! (`Index Cond: ((product = p.p) AND (lease_expires_at > ...))`, 0.06 ms).
//!
//! Every access is an index probe or a bounded index range; nothing reads a tenant's whole
//! queue. The statement of schema version 1 (one index scan in (priority, ready-at, seq)
//! order, no fairness nor limits) runs in 0.15 ms on the same data. Tasks of excluded or
//! full products and tasks waiting for a retry ahead in a tenant's queue are stepped over one
//! by one. (`tasks_ready (priority_rank, ready_at, seq)` still serves `next_wakeup`.)
//!
//! **Dead index entries, and autovacuum of `tasks`.** No task write is a HOT update (each
//! changes indexed columns), so a claimed task leaves its old entry in `tasks_ready_tenant`
//! until a vacuum removes it, and claims walk over those entries: with 200,000 of them the fair
//! statement took 51.5 ms on the first claim (which marks them dead) and 4.5 ms on the next
//! ones, with 10,000 1.3 ms and 0.40 ms, against 0.32 ms after `VACUUM`
//! (`sql/explain_dead_entries.sql`). PostgreSQL's autovacuum defaults wait for 50 + 20% of
//! a table's rows to be dead: 200,000 in a table of 1,000,000 finished tasks. Schema version 4
//! (`migrations/0004_autovacuum.sql`) sets `autovacuum_vacuum_scale_factor = 0.01` and
//! `autovacuum_vacuum_threshold = 1000` on `tasks`, so autovacuum comes after 1,000 + 1% of
//! the rows (11,000 at 1,000,000): the dead entries a claim can meet stay in the thousands,
//! at the price of more frequent (cost-limited, background) vacuums of a busy table.
//! `task_history` keeps the defaults: only retention deletes from it, and nothing scans over
//! a deleted task's entries. Autovacuum must be on (the server default) for this to act.
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
//! [`PostgresStore::listener_application_name`] in `pg_stat_activity`. A runner's steps hold
//! none while they run: `tests/pool.rs` hangs 50 steps at once on a pool of 5 and checks that
//! creates, reads and heartbeats go through, leases keep moving forward, and no transaction
//! stays open.
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
//! batches of 1000; [`PostgresStore::prune_ended_deliveries_before`] deletes, the same way, the
//! webhook deliveries that ended before the cut-off (delivered ones by `delivered_at`, failed
//! ones by their last attempt; pending ones never, whatever their age), through a partial index
//! of the ended deliveries (schema version 8, `migrations/0008_delivery_retention.sql`).
//! [`PostgresOptions::with_retention`] runs both about once a second with one cut-off, so the
//! retention also bounds the webhook outbox.
#![deny(missing_docs)]

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};
use task_core::store::{StoreError, TaskChange};
use task_core::time::SharedClock;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

mod background;
mod catalog;
mod claim;
mod claim_sql;
mod create;
mod error;
mod listen;
mod migrate;
mod options;
mod prune;
mod rows;
mod stats;
mod tasks;
mod webhooks;
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
    /// The change position up to which this instance's claims have woken every waiting task
    /// whose awaited tasks ended (0: not yet looked; the first claim looks at them all).
    pub waits_checked_to: std::sync::atomic::AtomicI64,
    /// Dropped with the store: ends the change feed and the retention.
    _stop: watch::Sender<()>,
}

impl Shared {
    /// Records that every wait ended at or before change position `upto` was seen (after the
    /// transaction that woke them committed).
    pub fn waits_checked(&self, upto: Option<i64>) {
        if let Some(upto) = upto {
            self.waits_checked_to
                .fetch_max(upto, std::sync::atomic::Ordering::Relaxed);
        }
    }

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
                let began = std::time::Instant::now();
                tx.commit()
                    .await
                    .map_err(|e| self.ctx.db(operation, input, e))?;
                task_core::telemetry::store_commit(began.elapsed());
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
            waits_checked_to: std::sync::atomic::AtomicI64::new(0),
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
        stats::spawn(&store, stopped.clone());
        if let Some(age) = options.retention {
            prune::spawn(&store, age, stopped);
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
