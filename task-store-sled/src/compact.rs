//! Compaction: a copy of a store's live data into a fresh database, the way `VACUUM INTO`
//! works. sled 0.34 keeps the in-memory page-table entries of pages that deletions emptied, so
//! a store's resident memory follows the most tasks it ever held at once, even after they were
//! deleted. A compacted copy starts from the live data only.

use std::path::Path;

use task_core::store::StoreError;

use crate::SledStore;
use crate::error::Ctx;
use crate::journal::{SEQ_KEY, checkpoint_sled};
use crate::layout::tree;
use crate::open::SledOptions;

/// Keys copied per batch.
const BATCH: usize = 4096;

/// What a compaction copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Keys copied.
    pub keys: u64,
    /// Bytes on disk before, as sled reports them.
    pub bytes_before: u64,
    /// Bytes on disk of the copy.
    pub bytes_after: u64,
}

impl SledStore {
    /// Copies the live data of the store at `from` (closed: this opens it, upgrading an older
    /// format first) into a new database at `into`, which must not exist. The source is left
    /// as it was; swap the directories while no process uses them. Expired leases are
    /// requeued by the open, as any open does.
    pub fn compact_into(
        from: impl AsRef<Path>,
        into: impl AsRef<Path>,
        options: SledOptions,
    ) -> Result<Compacted, StoreError> {
        let into = into.as_ref();
        let target = Ctx {
            path: into.display().to_string().into(),
        };
        if into.exists() {
            return Err(StoreError::Invalid {
                field: "into",
                reason: format!(
                    "{} already exists; compaction writes a new database",
                    into.display()
                ),
            });
        }
        let source = SledStore::open_with(from, options.clone())?;
        let inner = &source.live()?;
        // Only this handle exists: no write can start while the trees are copied.
        let bytes_before = source.size_on_disk()?;
        let copy = sled::Config::new()
            .path(into)
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| target.backend("creating the compacted database", e))?;
        let mut keys = 0u64;
        for (name, from_tree) in [
            (tree::META, &inner.trees.meta),
            (tree::DATA, &inner.trees.data),
        ] {
            let to_tree = copy
                .open_tree(name)
                .map_err(|e| target.backend("opening a tree", e))?;
            let mut batch = sled::Batch::default();
            let mut pending = 0;
            for entry in from_tree.iter() {
                let (key, value) =
                    entry.map_err(|e| inner.ctx.backend("reading for compaction", e))?;
                if key == SEQ_KEY {
                    // The source's journal position; the copy starts its own journal.
                    continue;
                }
                batch.insert(key, value);
                pending += 1;
                keys += 1;
                if pending == BATCH {
                    to_tree
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(|e| target.backend("writing the compacted database", e))?;
                    pending = 0;
                }
            }
            to_tree
                .apply_batch(batch)
                .map_err(|e| target.backend("writing the compacted database", e))?;
        }
        checkpoint_sled(&target, &copy, into, "flushing the compacted database")?;
        let bytes_after = copy
            .size_on_disk()
            .map_err(|e| target.backend("measuring the compacted database", e))?;
        Ok(Compacted {
            keys,
            bytes_before,
            bytes_after,
        })
    }
}
