//! Upgrading formats 1 and 2 (one sled tree per keyspace, history values in their own tree)
//! to format 3 (one data tree with prefixed keys, history inside the task record).
//!
//! The upgrade copies everything into the data tree, then writes the new format marker, then
//! drops the old trees. A crash before the marker leaves the old trees intact and the marker
//! old, so the next open starts the copy again from an emptied data tree; a crash after it
//! leaves old trees that the next open drops.

use sled::IVec;
use task_core::store::StoreError;
use task_core::task::HistoryEntry;

use crate::codec::{decode, decode_history};
use crate::error::Ctx;
use crate::journal::checkpoint_sled;
use crate::keys;
use crate::layout::{Tk, prefixed, tree};
use crate::record::{StoredTask, encode_record};

/// Writes are applied in batches of this many keys.
const BATCH: usize = 4096;

/// The legacy trees present in `db`.
fn legacy_trees(ctx: &Ctx, db: &sled::Db) -> Result<Vec<(&'static str, sled::Tree)>, StoreError> {
    let names = db.tree_names();
    let mut found = Vec::new();
    for name in tree::LEGACY {
        if names.iter().any(|n| n.as_ref() == name.as_bytes()) {
            let opened = db
                .open_tree(name)
                .map_err(|e| ctx.backend("opening an old-format tree", e))?;
            found.push((name, opened));
        }
    }
    Ok(found)
}

/// Whether no legacy tree holds anything.
pub(crate) fn legacy_is_empty(ctx: &Ctx, db: &sled::Db) -> Result<bool, StoreError> {
    Ok(legacy_trees(ctx, db)?.iter().all(|(_, t)| t.is_empty()))
}

/// Drops the legacy trees left by an upgrade that stopped after writing the new marker.
pub(crate) fn drop_legacy(ctx: &Ctx, db: &sled::Db) -> Result<(), StoreError> {
    for (name, _) in legacy_trees(ctx, db)? {
        db.drop_tree(name)
            .map_err(|e| ctx.backend("dropping an old-format tree", e))?;
    }
    Ok(())
}

/// Buffers writes into sled batches.
struct Writer<'a> {
    ctx: &'a Ctx,
    data: &'a sled::Tree,
    batch: sled::Batch,
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, key: Vec<u8>, value: impl Into<IVec>) -> Result<(), StoreError> {
        self.batch.insert(key, value);
        self.len += 1;
        if self.len == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.len = 0;
        self.data
            .apply_batch(std::mem::take(&mut self.batch))
            .map_err(|e| self.ctx.backend("upgrading the format", e))
    }
}

/// Copies a format 1 or 2 database into the data tree and marks it `to`.
pub(crate) fn upgrade(
    ctx: &Ctx,
    db: &sled::Db,
    meta: &sled::Tree,
    data: &sled::Tree,
    marker: (&[u8], u32),
    dir: &std::path::Path,
) -> Result<(), StoreError> {
    data.clear()
        .map_err(|e| ctx.backend("clearing a partial upgrade", e))?;
    let legacy = legacy_trees(ctx, db)?;
    let find = |name: &str| legacy.iter().find(|(n, _)| *n == name).map(|(_, t)| t);
    let mut writer = Writer {
        ctx,
        data,
        batch: sled::Batch::default(),
        len: 0,
    };
    if let Some(tasks) = find(tree::TASKS) {
        let history_tree = find(tree::HISTORY);
        for entry in tasks.iter() {
            let (key, value) = entry.map_err(|e| ctx.backend("upgrading the format", e))?;
            // Format 1 and 2 records: {task, ready_seq, history_len}; the count is not kept.
            let stored: StoredTask = decode(ctx, tree::TASKS, &key, &value)?;
            let mut history: Vec<HistoryEntry> = Vec::new();
            if let Some(history_tree) = history_tree {
                for entry in history_tree.scan_prefix(&key) {
                    let (hk, hv) = entry.map_err(|e| ctx.backend("upgrading the format", e))?;
                    decode_history(ctx, tree::HISTORY, &hk, &hv, &mut history)?;
                }
            }
            let prefix = Tk::Tasks.prefix().unwrap_or(b'T');
            writer.put(prefixed(prefix, &key), encode_record(&stored, &history)?)?;
            let task = &stored.task;
            if let (false, Some(at)) = (task.status().is_active(), task.finished_at) {
                let finished = keys::finished(at, task.id);
                writer.put(
                    prefixed(Tk::Finished.prefix().unwrap_or(b'F'), &finished),
                    IVec::default(),
                )?;
            }
        }
    }
    for tk in Tk::PERSISTENT {
        let (Some(prefix), Some(old)) = (tk.prefix(), find(tk.name())) else {
            continue;
        };
        if tk == Tk::Tasks {
            continue;
        }
        for entry in old.iter() {
            let (key, value) = entry.map_err(|e| ctx.backend("upgrading the format", e))?;
            writer.put(prefixed(prefix, &key), value)?;
        }
    }
    writer.flush()?;
    checkpoint_sled(ctx, db, dir, "flushing the upgrade")?;
    let (key, version) = marker;
    meta.insert(key, &version.to_be_bytes()[..])
        .map_err(|e| ctx.backend("upgrading the format", e))?;
    checkpoint_sled(ctx, db, dir, "flushing the upgrade")?;
    drop_legacy(ctx, db)
}
