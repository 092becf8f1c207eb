//! The embedded, crash-safe task store of the media task engine, on sled 0.34.
//!
//! [`SledStore`] implements [`TaskStore`](task_core::store::TaskStore),
//! [`CatalogStore`](task_core::store::CatalogStore) and
//! [`ResultStore`](task_core::store::ResultStore) and passes task-core's conformance suite.
//!
//! # Durability contract
//!
//! With [`Durability::Strict`] (the default):
//! - A call that returned `Ok` is on disk: a `kill -9` or a power cut right after it loses
//!   nothing it acknowledged. Calls that change nothing (a create that found the active task, a
//!   repeated cancel) also wait for the disk, so what they return is durable too.
//! - A half-written update is never visible, before or after a crash, and an acknowledged
//!   transition is never applied twice (the state machine refuses a repeated event, fenced by
//!   the lease epoch).
//!
//! # The write path
//!
//! One committer thread owns every write. A store call sends its operation (create, claim,
//! apply, apply of many, cancel, requeue, catalog, result and cache writes) over a channel and
//! awaits the answer; an apply of many is one operation whose entries each succeed or are
//! undone on their own. The committer takes everything queued (a *group*), runs the
//! operations in arrival order against the committed state plus the group's pending writes
//! (each operation sees the ones before it; one that fails is undone and leaves nothing
//! behind), and encodes the group's writes as one checksummed *journal frame*. A flusher
//! thread appends every frame committed since its last flush to a write-ahead journal
//! (`journal/` in the database directory) with one write and one `fdatasync`, then applies
//! each durable group to sled, and only then do the callers return and publish their change
//! notifications. While one fsync runs the committer already builds the next groups (see
//! [`CommitStats`]: writes per commit and per flush), so throughput grows with concurrency
//! while each caller still waits for its own data.
//!
//! The journal exists because sled 0.34's own `Db::flush` ends in `sync_file_range`, which
//! neither flushes the disk's volatile write cache nor commits file metadata: on a disk with a
//! write-back cache (the usual case, virtual disks included) a power cut could lose a group
//! that sled had "flushed". `fdatasync` does both. sled is flushed, and its files fsynced, only
//! at a *checkpoint*, taken by a checkpointer thread when a journal segment is full
//! ([`SledOptions::with_journal_segment_bytes`], 32 MiB by default) while writes go on; the
//! segments it covers are then deleted.
//!
//! sled never holds a group before its frame is durable, and every group writes its frame
//! number last (under the key `S`), so after any crash sled holds exactly the groups up to
//! that number, plus at most part of the next one. An open replays every frame after it in
//! order (each sets keys to absolute values, which also completes a partial group), then
//! checkpoints. A torn frame at the journal's end (a write whose fsync never returned, so
//! never acknowledged) is dropped; any other damage refuses the open with the segment's path
//! and offset. The crash test kills a writer 24 times mid-flight, with journal segments small
//! enough that the kills also land in checkpoints, and checks every acknowledged write.
//!
//! Task records are kept decoded by the committer (it is the only writer, so its cache is
//! always right) and encoded once per group; index keys that do not change are not rewritten.
//!
//! # Layout (format 4)
//!
//! Every persistent keyspace lives in the sled tree `data` under a one-byte key prefix: `T`
//! task records (the task, its ready-queue position and its whole history: a transition writes
//! one key), `A` active tasks by natural key (dedup), `L` latest task by natural key, `N` and
//! `I` per-tenant and per-item listings, `C` catalog items, `R` results, `K` the step cache,
//! `F` finished tasks by finish time (for [`SledOptions::with_retention`]), and for webhooks
//! `W` subscriptions by tenant, `D` deliveries by subscription (newest first), `O` the
//! outbox (pending deliveries by due time) and `E` ended deliveries by end time (for the
//! retention), written by the committer in the same batch as the status change that causes
//! them.
//! The ready queue (priority, tenant, ready-at, id: claims let tenants take turns, see
//! `task_core::fair`) and the lease-expiry index (expiry, id -> product: the running count
//! of each limited product) are kept in memory: they are functions of the active tasks' records, rebuilt on open from the `A`
//! index, so no operation scans all tasks and no transition pays for them on disk. The tree
//! `meta` holds the format marker; formats 1 and 2 (a tree per keyspace) are upgraded on open,
//! and format 3 (this layout without the journal) is marked 4, so that a build that would
//! ignore the journal refuses the database.
//!
//! sled 0.34 keeps an in-memory page-table entry for each of its pages (leaves of at most 16
//! keys), about 32 bytes per key whatever the value's size, and keeps the entries of pages
//! that deletions emptied: resident memory follows the most tasks the store ever held at
//! once, about 240 bytes per finished task kept. A retention
//! ([`SledOptions::with_retention`]) bounds that, and the listings and the disk: a store that
//! ran 1,000,000 tasks with one opens in the memory of the tasks it keeps.
//! [`SledStore::compact_into`] copies the live data into a fresh database, for a store that
//! once held many more tasks than it does now.
//!
//! Reads (`get_task`, `list_tasks`, `history`, catalog and result reads) go to sled directly
//! on the calling task. With strict durability they only ever see durable writes, and a call
//! that returned is visible to every later read. The flusher applies a group key by key, task
//! records before the index entries that point at them, so a read that races with it may see
//! part of a group, never an index entry without its record. It holds task records back from
//! sled until the next checkpoint, in memory, where reads find them first: a record rewritten
//! at every transition reaches sled about once per checkpoint instead of at every write.
//! `next_wakeup` reads the in-memory queues, which move at commit.
//!
//! With [`Durability::Buffered`], calls return once committed, and reads see committed writes
//! at once (from the same overlay the committer reads). The journal is written and fsynced on
//! a timer, and groups reach sled only after that, as in strict mode: a crash may lose the
//! writes of the last interval (whole groups only, never a part of one). If a flush ever
//! fails, the store refuses every later write: reopen it.
//!
//! Opening a database requeues the tasks whose lease expired while it was closed; tasks waiting
//! for a retry keep their retry time. sled 0.34 replays, on the first open after a run,
//! everything that run wrote; [`SledStore::close`] pays that at shutdown instead, so the next
//! open is as quick as any. A second process opening the same directory gets a
//! [`StoreError::Backend`] naming the path. Values carry a
//! format version; a value written by a newer format, or a corrupted one, is reported as
//! [`StoreError::Corrupt`] with the path, keyspace and key (an active task's record is read on
//! open, so a corrupt one refuses the open rather than dropping the task from the queue).
//!
//! Reads are synchronous and short (microseconds); they run on the calling task. Waiting for the
//! committer and for the disk is asynchronous and never blocks the runtime.
//!
//! ```
//! use std::time::Duration;
//! use task_core::prelude::*;
//! use task_store_sled::SledStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path())?;
//! let key = TaskKey {
//!     tenant: TenantId::new("acme")?,
//!     inventory_id: InventoryId::new("movie-42")?,
//!     product: ProductName::new("adbreaks")?,
//!     version: Version::new("1.0.1")?,
//! };
//! let created = store.create_task(NewTask { key, priority: Priority::High }).await?;
//! let task = store.claim_one(WorkerId::new("worker-1")?, Duration::from_secs(30)).await?.unwrap();
//! assert_eq!(task.id, created.task.id);
//! let task = store.apply(task.id, task.epoch, &[TaskEvent::StepStarted { step: Step::S3Check }]).await?;
//! assert_eq!(task.current_step(), Some(Step::S3Check));
//! drop(store);
//!
//! // Everything acknowledged is there after a reopen.
//! let store = SledStore::open(dir.path())?;
//! let again = store.get_task(&task.key.tenant, task.id).await?.unwrap();
//! assert_eq!(again, task);
//! assert!(store.check_consistency()?.is_empty());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod catalog;
mod check;
mod claim;
mod close;
mod codec;
mod committer;
mod compact;
mod deferred;
mod durability;
mod error;
mod flusher;
#[doc(hidden)]
pub mod fuzzing;
mod group_commit;
mod journal;
mod keys;
mod layout;
mod migrate;
mod open;
mod ops;
mod overlay;
mod prune;
mod rebuild;
mod record;
mod recovery;
mod stage;
mod stats;
mod tasks;
mod webhooks;

use std::path::Path;
use std::sync::Arc;

use task_core::store::{StoreError, TaskChange};
use task_core::task::Task;
use tokio::sync::broadcast;

pub use check::RawEntry;
pub use compact::Compacted;
pub use durability::DurabilityObserver;
pub use group_commit::{CommitStats, Durability};
pub use open::SledOptions;

use committer::{Committer, Done, Op};
use error::{BACKEND, Ctx};
use group_commit::GroupCommit;
use layout::Trees;

/// A task store in a sled database. Cloning gives another handle to the same database; the
/// database closes (after a last flush) when the last handle is dropped.
#[derive(Clone)]
pub struct SledStore {
    shell: Arc<recovery::Shell>,
}

pub(crate) struct Inner {
    /// Dropped first: its thread finishes the queued calls before the last flush.
    committer: Committer,
    ctx: Ctx,
    /// The database directory.
    dir: std::path::PathBuf,
    trees: Arc<Trees>,
    commit: Arc<GroupCommit>,
    changes: broadcast::Sender<TaskChange>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.shell.ctx.path)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the database in directory `path`, strict durability, system clock.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        open::open(path.as_ref(), SledOptions::default())
    }

    /// Opens the database in `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<Self, StoreError> {
        open::open(path.as_ref(), options)
    }

    /// The group-commit counters: writes acknowledged and flushes done, since the open (or
    /// since the store reopened itself after an outage; zeros while it reopens).
    pub fn commit_stats(&self) -> CommitStats {
        self.live()
            .map(|inner| inner.commit.stats())
            .unwrap_or_default()
    }

    /// Bytes the database takes on disk, as sled reports them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let inner = self.live()?;
        inner
            .trees
            .db
            .size_on_disk()
            .map_err(|e| inner.ctx.backend("measuring the size", e))
    }

    /// The number of finished tasks the retention ([`SledOptions::with_retention`]) has deleted
    /// since the store was opened, updated once each round's deletions are durable and
    /// readable: wait on it instead of polling.
    pub fn pruned(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shell.handles.pruned.subscribe()
    }

    /// The number of checkpoints completed since the store was opened (strict durability: a
    /// checkpoint writes the task records held in memory into sled, flushes it and deletes the
    /// journal segments it covers), updated as each completes: wait on it instead of polling.
    pub fn checkpoints(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shell.handles.checkpoints.subscribe()
    }

    /// Why the store refuses writes (a full disk it is recovering from), updated as that
    /// changes: None while it takes writes. Wait on it instead of polling
    /// [`TaskStore::outage`](task_core::store::TaskStore::outage).
    pub fn outages(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shell.outages()
    }

    /// The database directory.
    pub fn path(&self) -> &str {
        &self.shell.ctx.path
    }
}

impl Inner {
    /// Has the committer run `op`, then waits until its group is durable (per the durability
    /// mode).
    async fn write(&self, op: Op) -> Result<Done, StoreError> {
        self.committer.submit(op).await
    }

    fn notify<'a>(&self, tasks: impl IntoIterator<Item = &'a Task>) {
        for task in tasks {
            // No subscriber is fine: nobody is waiting.
            let _ = self.changes.send(TaskChange::of(task));
        }
    }
}

/// The error for a committer answer that does not match the operation (a bug).
fn unexpected(done: &Done) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        operation: "committing",
        message: format!("unexpected answer from the committer: {done:?}"),
        retryable: false,
    }
}
