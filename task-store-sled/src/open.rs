//! Opening a database: sled's lock, the format check (upgrading formats 1 and 2), the
//! in-memory queues rebuilt from the active tasks, and recovery of expired leases.

use std::path::Path;
use std::sync::{Arc, Mutex};

use task_core::store::StoreError;
use task_core::task::Task;
use task_core::time::{SharedClock, SystemClock};

use crate::committer::{Committer, Parts};
use crate::deferred::Deferred;
use crate::error::{Ctx, OpenError};
use crate::group_commit::{Durability, GroupCommit};
use crate::journal::{self, JOURNAL_DIR, JournalWriter, SEQ_KEY, checkpoint_sled};
use crate::layout::{Queues, Trees, tree};
use crate::overlay::Overlay;
use crate::recovery::{Handles, Replay};
use crate::stage::{Stage, TaskCache};
use crate::{Inner, SledStore, migrate, rebuild};

/// The schema version written in the meta tree. Version 3 keeps every keyspace in one tree
/// (see `layout`) and each task's history in its record; version 4 adds the journal (see
/// `journal`), which a build that reads 3 would ignore, losing acknowledged writes: so an
/// older build refuses a version-4 database. Versions 1 and 2 (a tree per keyspace) are
/// upgraded on open, and 3 is marked 4.
pub(crate) const SCHEMA_VERSION: u32 = 4;
/// The version whose layout [`SCHEMA_VERSION`] shares: it needs no copy, only a new marker.
const SAME_LAYOUT: u32 = 3;
const FORMAT_KEY: &[u8] = b"format";

/// How to open a [`SledStore`].
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// Strict (default) or buffered durability.
    pub durability: Durability,
    /// Where "now" comes from (the system clock by default).
    pub clock: SharedClock,
    /// sled's page cache size in bytes (64 MiB by default); bounds the resident memory.
    pub cache_capacity: u64,
    /// Finished tasks older than this are deleted (None, the default: kept forever).
    pub retention: Option<std::time::Duration>,
    /// A journal segment holding this many bytes is closed and a checkpoint taken (32 MiB by
    /// default). Smaller segments replay faster after a crash and flush sled more often.
    pub journal_segment_bytes: u64,
    /// Told what becomes durable (a test seam for power-cut simulations; None by default).
    pub(crate) observer: Option<crate::durability::Observer>,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Strict,
            clock: Arc::new(SystemClock),
            cache_capacity: 64 * 1024 * 1024,
            retention: None,
            journal_segment_bytes: journal::DEFAULT_SEGMENT_BYTES,
            observer: None,
        }
    }
}

impl SledOptions {
    /// These options with `durability`.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// These options with `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// These options with a retention: tasks that finished more than `retention` ago are
    /// deleted with their history (see [`SledStore::prune_finished_before`]), and webhook
    /// deliveries that ended more than `retention` ago (see
    /// [`SledStore::prune_ended_deliveries_before`]), about once a second. This bounds the listings, the disk and resident memory, which in sled 0.34
    /// follows the most tasks the store ever held at once (about 240 bytes per finished task).
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// These options with journal segments of `bytes` (at least 4 KiB). A checkpoint is taken
    /// each time a segment is full, so this also bounds what a crash replays and, with strict
    /// durability, the task records held in memory until the next checkpoint (about one
    /// segment's worth).
    pub fn with_journal_segment_bytes(mut self, bytes: u64) -> Self {
        self.journal_segment_bytes = bytes.max(4096);
        self
    }

    /// These options with an observer of what becomes durable: the seam of the power-cut
    /// tests, which keep an image of the disk as a power cut would leave it.
    pub fn with_durability_observer(
        mut self,
        observer: std::sync::Arc<dyn crate::DurabilityObserver>,
    ) -> Self {
        self.observer = Some(crate::durability::Observer(observer));
        self
    }

    /// These options with a page cache of `bytes`.
    pub fn with_cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }
}

fn open_tree(db: &sled::Db, ctx: &Ctx, name: &str) -> Result<sled::Tree, StoreError> {
    db.open_tree(name)
        .map_err(|e| ctx.backend("opening a tree", e))
}

/// Checks the schema version, upgrading an older database and marking a fresh one.
fn check_format(
    ctx: &Ctx,
    dir: &Path,
    db: &sled::Db,
    meta: &sled::Tree,
    data: &sled::Tree,
) -> Result<(), StoreError> {
    let stored = meta
        .get(FORMAT_KEY)
        .map_err(|e| ctx.backend("reading the format", e))?;
    let Some(bytes) = stored else {
        if !data.is_empty() || !migrate::legacy_is_empty(ctx, db)? {
            return Err(ctx.corrupt(
                tree::META,
                FORMAT_KEY,
                "the format marker is missing from a non-empty database",
            ));
        }
        meta.insert(FORMAT_KEY, &SCHEMA_VERSION.to_be_bytes()[..])
            .map_err(|e| ctx.backend("writing the format", e))?;
        return Ok(());
    };
    let raw: [u8; 4] = bytes
        .as_ref()
        .try_into()
        .map_err(|_| ctx.corrupt(tree::META, FORMAT_KEY, "the format marker is not 4 bytes"))?;
    match u32::from_be_bytes(raw) {
        SCHEMA_VERSION => migrate::drop_legacy(ctx, db),
        SAME_LAYOUT => {
            migrate::drop_legacy(ctx, db)?;
            meta.insert(FORMAT_KEY, &SCHEMA_VERSION.to_be_bytes()[..])
                .map_err(|e| ctx.backend("writing the format", e))?;
            checkpoint_sled(ctx, db, dir, "writing the format")
        }
        found @ 1..SAME_LAYOUT => {
            tracing::info!(path = %ctx.path, from = found, to = SCHEMA_VERSION, "upgrading the database format");
            migrate::upgrade(ctx, db, meta, data, (FORMAT_KEY, SCHEMA_VERSION), dir)
        }
        found => Err(OpenError::NewerFormat {
            path: ctx.path.to_string(),
            found,
            supported: SCHEMA_VERSION,
        }
        .into()),
    }
}

fn thread_error(operation: &'static str, err: std::io::Error) -> StoreError {
    StoreError::Backend {
        backend: crate::error::BACKEND,
        operation,
        message: err.to_string(),
        retryable: false,
    }
}

/// Replays the journal frames sled does not hold yet (see `journal`), or all of them (see
/// [`Replay`]). Returns the sequence number of the last frame sled now holds.
fn replay_journal(ctx: &Ctx, dir: &Path, trees: &Trees, replay: Replay) -> Result<u64, StoreError> {
    let in_sled = match trees
        .data
        .get(SEQ_KEY)
        .map_err(|e| ctx.backend("reading the journal position", e))?
    {
        None => 0,
        Some(bytes) => u64::from_be_bytes(bytes.as_ref().try_into().map_err(|_| {
            ctx.corrupt(tree::DATA, SEQ_KEY, "the journal position is not 8 bytes")
        })?),
    };
    let journal_dir = dir.join(JOURNAL_DIR);
    let (applied, until) = match replay {
        Replay::AfterSled => (in_sled, None),
        // Frames set keys to absolute values and are applied in order, so replaying frames
        // sled already holds ends in the same state, and rewrites what a failed fsync may
        // have left only in the page cache.
        Replay::Everything { before } => {
            let first = journal::first_seq(&journal_dir)
                .map_err(|e| ctx.io("listing the journal", &journal_dir, e))?;
            let applied = first.map_or(in_sled, |first| in_sled.min(first.saturating_sub(1)));
            (applied, before)
        }
    };
    let replayed = journal::replay(ctx, &journal_dir, applied, until, |writes| {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        trees
            .data
            .apply_batch(batch)
            .map_err(|e| ctx.backend("replaying the journal", e))
    })?;
    if let Some(offset) = replayed.torn_at {
        // Only the last flush can be torn, and it was never acknowledged.
        tracing::warn!(
            path = %ctx.path,
            offset,
            "dropped an incomplete frame at the end of the journal (a write cut by a crash or a failed flush, never acknowledged)"
        );
    }
    if replayed.frames > 0 {
        tracing::info!(path = %ctx.path, frames = replayed.frames, "replayed the journal");
    }
    Ok(replayed.last_seq.max(in_sled))
}

/// Requeues the tasks whose lease expired while the store was closed, then makes sled hold
/// everything durably and empties the journal, before any call is served. Returns the tasks
/// requeued and the next journal sequence number.
fn recover(
    ctx: &Ctx,
    dir: &Path,
    trees: &Trees,
    clock: &SharedClock,
    last_seq: u64,
) -> Result<(Vec<Task>, u64), StoreError> {
    let mut cache = TaskCache::default();
    let mut stage = Stage::new(ctx, trees, &mut cache);
    let requeued = stage.requeue_expired(clock.now())?;
    let next_seq = match stage.commit(last_seq + 1)? {
        Some(group) => {
            group.apply_atomically(ctx, trees)?;
            last_seq + 2
        }
        None => last_seq + 1,
    };
    // Also makes a new database's format marker durable.
    checkpoint_sled(ctx, &trees.db, dir, "flushing after recovery")?;
    journal::clear(ctx, &dir.join(JOURNAL_DIR))?;
    Ok((requeued, next_seq))
}

/// How long `open` keeps trying while sled's lock is held. sled's own background threads can
/// hold a just-dropped handle of this process for a moment (a close followed at once by a
/// reopen); another process holding it is reported once this has passed.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

pub(crate) fn open_db(
    path: &Path,
    options: &SledOptions,
    ctx: &Ctx,
) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(OpenError::Locked {
                        path: ctx.path.to_string(),
                        detail: io.to_string(),
                    }
                    .into());
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            Err(other) => return Err(ctx.backend("opening the database", other)),
        }
    }
}

/// Opens (creating if needed) the database at `path`.
pub(crate) fn open(path: &Path, options: SledOptions) -> Result<SledStore, StoreError> {
    let handles = Handles::default();
    let inner = open_inner(path, &options, &handles, Replay::AfterSled)?;
    Ok(SledStore::from_parts(path, options, handles, inner))
}

/// Opens one instance of the database at `path`: what a [`SledStore`] runs on until an
/// outage makes it reopen (see `recovery`).
pub(crate) fn open_inner(
    path: &Path,
    options: &SledOptions,
    handles: &Handles,
    replay: Replay,
) -> Result<Inner, StoreError> {
    let ctx = Ctx {
        path: path.display().to_string().into(),
    };
    let db = open_db(path, options, &ctx)?;
    let meta = open_tree(&db, &ctx, tree::META)?;
    let data = open_tree(&db, &ctx, tree::DATA)?;
    check_format(&ctx, path, &db, &meta, &data)?;
    let trees = Trees {
        meta,
        data,
        queues: Mutex::new(Queues::default()),
        overlay: Mutex::new(Overlay::default()),
        reads_pending: options.durability != Durability::Strict,
        deferred: Deferred::default(),
        wakeup: Mutex::new(None),
        db: db.clone(),
    };
    let last_seq = replay_journal(&ctx, path, &trees, replay)?;
    crate::stats::ensure_counts(&ctx, &trees)?;
    crate::webhooks::ensure_ended_index(&ctx, &trees)?;
    let queues = rebuild::rebuild_queues(&ctx, &trees)?;
    trees.publish_wakeup(&queues);
    *trees.lock_queues() = queues;
    let trees = Arc::new(trees);
    let (requeued, first_seq) = recover(&ctx, path, &trees, &options.clock, last_seq)?;
    if !requeued.is_empty() {
        tracing::info!(
            path = %ctx.path,
            requeued = requeued.len(),
            "requeued tasks whose lease expired while the store was closed"
        );
    }
    let pruned = handles.pruned.clone();
    let journal = JournalWriter::create(
        path.join(JOURNAL_DIR),
        options.journal_segment_bytes,
        options.observer.clone(),
    )
    .map_err(|e| ctx.io("creating the journal", &path.join(JOURNAL_DIR), e))?;
    if let Some(observer) = &options.observer {
        observer.0.opened(path);
    }
    let commit = GroupCommit::start(
        ctx.clone(),
        trees.clone(),
        journal,
        path.to_path_buf(),
        options.durability,
        handles.checkpoints.clone(),
    )
    .map(Arc::new)
    .map_err(|e| thread_error("starting the flusher thread", e))?;
    let committer = Committer::start(Parts {
        ctx: ctx.clone(),
        trees: trees.clone(),
        clock: options.clock.clone(),
        commit: commit.clone(),
        retention: options.retention,
        pruned: pruned.clone(),
        first_seq,
    })
    .map_err(|e| thread_error("starting the committer thread", e))?;
    Ok(Inner {
        committer,
        ctx,
        dir: path.to_path_buf(),
        trees,
        commit,
        changes: handles.changes.clone(),
    })
}
