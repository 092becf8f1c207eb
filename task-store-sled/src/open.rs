//! Opening a database: sled's lock, the trees, the format check and recovery of expired leases.

use std::path::Path;
use std::sync::Arc;

use task_core::store::StoreError;
use task_core::task::Task;
use task_core::time::{SharedClock, SystemClock};
use tokio::sync::broadcast;

use crate::committer::{Committer, Parts};
use crate::error::{Ctx, OpenError};
use crate::group_commit::{Durability, GroupCommit};
use crate::stage::{Stage, TaskCache};
use crate::{Inner, SledStore};

/// Tree names.
pub(crate) mod tree {
    /// Format marker and other metadata.
    pub const META: &str = "meta";
    /// Task records by id.
    pub const TASKS: &str = "tasks";
    /// Ready queue: (priority rank, ready-at, sequence, id) -> product.
    pub const READY: &str = "ready";
    /// Active tasks by natural key -> id.
    pub const ACTIVE: &str = "active";
    /// Most recent task by natural key -> id.
    pub const LATEST: &str = "latest";
    /// Leases by (expires-at, id).
    pub const LEASES: &str = "leases";
    /// Per-tenant listing: (tenant, id).
    pub const BY_TENANT: &str = "by_tenant";
    /// Per-item listing: (tenant, inventory id, id).
    pub const BY_ITEM: &str = "by_item";
    /// History: (id, sequence) -> entry.
    pub const HISTORY: &str = "history";
    /// Catalog items: (tenant, inventory id) -> item.
    pub const ITEMS: &str = "items";
    /// Results: (tenant, product, inventory id, version) -> result.
    pub const RESULTS: &str = "results";
    /// Cache of step outputs.
    pub const CACHE: &str = "cache";
    /// Every tree, in a stable order.
    pub const ALL: [&str; 12] = [
        META, TASKS, READY, ACTIVE, LATEST, LEASES, BY_TENANT, BY_ITEM, HISTORY, ITEMS, RESULTS,
        CACHE,
    ];
}

/// The trees the committer writes (every tree but `meta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tk {
    /// [`tree::TASKS`].
    Tasks,
    /// [`tree::READY`].
    Ready,
    /// [`tree::ACTIVE`].
    Active,
    /// [`tree::LATEST`].
    Latest,
    /// [`tree::LEASES`].
    Leases,
    /// [`tree::BY_TENANT`].
    ByTenant,
    /// [`tree::BY_ITEM`].
    ByItem,
    /// [`tree::HISTORY`].
    History,
    /// [`tree::ITEMS`].
    Items,
    /// [`tree::RESULTS`].
    Results,
    /// [`tree::CACHE`].
    Cache,
}

impl Tk {
    /// How many there are.
    pub const COUNT: usize = 11;
    /// All of them, in index order.
    pub const ALL: [Tk; Tk::COUNT] = [
        Tk::Tasks,
        Tk::Ready,
        Tk::Active,
        Tk::Latest,
        Tk::Leases,
        Tk::ByTenant,
        Tk::ByItem,
        Tk::History,
        Tk::Items,
        Tk::Results,
        Tk::Cache,
    ];

    /// The tree's name.
    pub fn name(self) -> &'static str {
        match self {
            Tk::Tasks => tree::TASKS,
            Tk::Ready => tree::READY,
            Tk::Active => tree::ACTIVE,
            Tk::Latest => tree::LATEST,
            Tk::Leases => tree::LEASES,
            Tk::ByTenant => tree::BY_TENANT,
            Tk::ByItem => tree::BY_ITEM,
            Tk::History => tree::HISTORY,
            Tk::Items => tree::ITEMS,
            Tk::Results => tree::RESULTS,
            Tk::Cache => tree::CACHE,
        }
    }

    /// What a failed scan of this tree was doing, for errors.
    pub fn scan_operation(self) -> &'static str {
        match self {
            Tk::Ready => "scanning the ready queue",
            Tk::Leases => "scanning leases",
            Tk::Active => "scanning active tasks",
            _ => "scanning",
        }
    }
}

/// The schema version written in the meta tree. Version 2 stores the history entries of one
/// call as one value; it reads version 1 databases (one entry per value) and marks them 2 on
/// open, so that an older build refuses them instead of misreading them.
pub(crate) const SCHEMA_VERSION: u32 = 2;
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
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Strict,
            clock: Arc::new(SystemClock),
            cache_capacity: 64 * 1024 * 1024,
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

    /// These options with a page cache of `bytes`.
    pub fn with_cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }
}

/// The open trees.
pub(crate) struct Trees {
    pub db: sled::Db,
    pub meta: sled::Tree,
    pub tasks: sled::Tree,
    pub ready: sled::Tree,
    pub active: sled::Tree,
    pub latest: sled::Tree,
    pub leases: sled::Tree,
    pub by_tenant: sled::Tree,
    pub by_item: sled::Tree,
    pub history: sled::Tree,
    pub items: sled::Tree,
    pub results: sled::Tree,
    pub cache: sled::Tree,
}

impl Trees {
    /// The tree called `name`.
    pub fn by_name(&self, name: &str) -> Option<&sled::Tree> {
        Some(match name {
            tree::META => &self.meta,
            tree::TASKS => &self.tasks,
            tree::READY => &self.ready,
            tree::ACTIVE => &self.active,
            tree::LATEST => &self.latest,
            tree::LEASES => &self.leases,
            tree::BY_TENANT => &self.by_tenant,
            tree::BY_ITEM => &self.by_item,
            tree::HISTORY => &self.history,
            tree::ITEMS => &self.items,
            tree::RESULTS => &self.results,
            tree::CACHE => &self.cache,
            _ => return None,
        })
    }

    /// The tree `tk`.
    pub fn get(&self, tk: Tk) -> &sled::Tree {
        match tk {
            Tk::Tasks => &self.tasks,
            Tk::Ready => &self.ready,
            Tk::Active => &self.active,
            Tk::Latest => &self.latest,
            Tk::Leases => &self.leases,
            Tk::ByTenant => &self.by_tenant,
            Tk::ByItem => &self.by_item,
            Tk::History => &self.history,
            Tk::Items => &self.items,
            Tk::Results => &self.results,
            Tk::Cache => &self.cache,
        }
    }
}

fn open_tree(db: &sled::Db, ctx: &Ctx, name: &str) -> Result<sled::Tree, StoreError> {
    db.open_tree(name)
        .map_err(|e| ctx.backend("opening a tree", e))
}

/// Checks (or, on a fresh database, writes) the schema version.
fn check_format(ctx: &Ctx, trees: &Trees) -> Result<(), StoreError> {
    let stored = trees
        .meta
        .get(FORMAT_KEY)
        .map_err(|e| ctx.backend("reading the format", e))?;
    match stored {
        None => {
            let empty = tree::ALL
                .iter()
                .filter_map(|name| trees.by_name(name))
                .all(|t| t.is_empty());
            if !empty {
                return Err(ctx.corrupt(
                    tree::META,
                    FORMAT_KEY,
                    "the format marker is missing from a non-empty database",
                ));
            }
            trees
                .meta
                .insert(FORMAT_KEY, &SCHEMA_VERSION.to_be_bytes()[..])
                .map_err(|e| ctx.backend("writing the format", e))?;
            Ok(())
        }
        Some(bytes) => {
            let raw: [u8; 4] = bytes.as_ref().try_into().map_err(|_| {
                ctx.corrupt(tree::META, FORMAT_KEY, "the format marker is not 4 bytes")
            })?;
            let found = u32::from_be_bytes(raw);
            if found > SCHEMA_VERSION || found == 0 {
                return Err(OpenError::NewerFormat {
                    path: ctx.path.to_string(),
                    found,
                    supported: SCHEMA_VERSION,
                }
                .into());
            }
            if found < SCHEMA_VERSION {
                trees
                    .meta
                    .insert(FORMAT_KEY, &SCHEMA_VERSION.to_be_bytes()[..])
                    .map_err(|e| ctx.backend("upgrading the format", e))?;
            }
            Ok(())
        }
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

/// Requeues the tasks whose lease expired while the store was closed, durably, before any
/// call is served. Returns them.
fn recover(ctx: &Ctx, trees: &Trees, clock: &SharedClock) -> Result<Vec<Task>, StoreError> {
    let mut cache = TaskCache::default();
    let mut stage = Stage::new(ctx, trees, &mut cache);
    let requeued = stage.requeue_expired(clock.now())?;
    stage.commit()?;
    // Also makes a new database's format marker durable.
    trees
        .db
        .flush()
        .map_err(|e| ctx.backend("flushing after recovery", e))?;
    Ok(requeued)
}

/// How long `open` keeps trying while sled's lock is held. sled's own background threads can
/// hold a just-dropped handle of this process for a moment (a close followed at once by a
/// reopen); another process holding it is reported once this has passed.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

fn open_db(path: &Path, options: &SledOptions, ctx: &Ctx) -> Result<sled::Db, StoreError> {
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
    let ctx = Ctx {
        path: path.display().to_string().into(),
    };
    let db = open_db(path, &options, &ctx)?;
    let trees = Trees {
        meta: open_tree(&db, &ctx, tree::META)?,
        tasks: open_tree(&db, &ctx, tree::TASKS)?,
        ready: open_tree(&db, &ctx, tree::READY)?,
        active: open_tree(&db, &ctx, tree::ACTIVE)?,
        latest: open_tree(&db, &ctx, tree::LATEST)?,
        leases: open_tree(&db, &ctx, tree::LEASES)?,
        by_tenant: open_tree(&db, &ctx, tree::BY_TENANT)?,
        by_item: open_tree(&db, &ctx, tree::BY_ITEM)?,
        history: open_tree(&db, &ctx, tree::HISTORY)?,
        items: open_tree(&db, &ctx, tree::ITEMS)?,
        results: open_tree(&db, &ctx, tree::RESULTS)?,
        cache: open_tree(&db, &ctx, tree::CACHE)?,
        db: db.clone(),
    };
    check_format(&ctx, &trees)?;
    let trees = Arc::new(trees);
    let requeued = recover(&ctx, &trees, &options.clock)?;
    if !requeued.is_empty() {
        tracing::info!(
            path = %ctx.path,
            requeued = requeued.len(),
            "requeued tasks whose lease expired while the store was closed"
        );
    }
    let commit = GroupCommit::start(db, options.durability, &ctx.path)
        .map(Arc::new)
        .map_err(|e| thread_error("starting the flusher thread", e))?;
    let committer = Committer::start(Parts {
        ctx: ctx.clone(),
        trees: trees.clone(),
        clock: options.clock,
        commit: commit.clone(),
    })
    .map_err(|e| thread_error("starting the committer thread", e))?;
    let (changes, _) = broadcast::channel(4096);
    let inner = Inner {
        committer,
        ctx,
        trees,
        commit,
        changes,
    };
    Ok(SledStore {
        inner: Arc::new(inner),
    })
}
