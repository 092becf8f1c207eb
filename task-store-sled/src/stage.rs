//! The committer's view of the database while it builds a group: the committed state with
//! the group's pending writes on top, and the atomic commit of those writes.
//!
//! Only the committer thread writes, so what it reads cannot change under it. Reads go to the
//! group's pending writes first, then to sled (or to the in-memory queues); range scans merge
//! both in key order. Task records are kept decoded with their history (a write-through cache
//! shared across groups) and encoded once per group at commit. Each call's writes can be
//! undone up to a [`Savepoint`], so a call that fails leaves nothing behind.
//! [`Stage::commit`] writes the persistent keyspaces as one `Tree::apply_batch` on the data
//! tree: atomic on disk (sled recovers a batch whole or not at all) and for readers (sled
//! applies a batch under its write lock, which every read takes shared). The in-memory
//! queues are updated only once that batch succeeded.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, btree_map};
use std::ops::Bound;
use std::sync::MutexGuard;

use sled::IVec;
use task_core::ids::TaskId;
use task_core::store::StoreError;
use task_core::task::HistoryEntry;

use crate::error::Ctx;
use crate::group_commit::Committed;
use crate::journal::{FrameBuilder, SEQ_KEY};
use crate::layout::{Entry, Queues, Tk, Trees, prefixed};
use crate::overlay::GroupWrites;
use crate::record::{StoredTask, decode_record, encode_record};

/// A task as the committer keeps it between groups.
#[derive(Debug)]
struct Cached {
    stored: StoredTask,
    history: Vec<HistoryEntry>,
}

/// Decoded task records the committer read or wrote, valid across groups because nothing
/// else writes. Finished tasks leave it at commit; it is emptied when it grows past its bound
/// or when a commit fails.
#[derive(Debug, Default)]
pub(crate) struct TaskCache {
    map: HashMap<TaskId, Cached>,
    /// The minute (in milliseconds) up to which old activity buckets were last swept.
    swept: u64,
}

/// At most this many records stay cached between groups.
const CACHE_BOUND: usize = 32_768;

impl TaskCache {
    /// Forgets everything (after a failed commit: sled may not hold what the cache says).
    pub fn clear(&mut self) {
        self.map.clear();
        self.swept = 0;
    }
}

/// A position in the undo log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Savepoint(usize);

enum Undo {
    /// A key's pending write before the change (None: it had none).
    Key(Tk, Vec<u8>, Option<Option<IVec>>),
    /// A task's cached record before the change (None: it was not cached), its history
    /// length, and whether it was dirty.
    Task(TaskId, Option<Box<StoredTask>>, usize, bool),
    /// A cached task removed, to put back, and whether it was dirty.
    Restore(TaskId, Box<Cached>, bool),
}

/// A keyspace's pending writes: the new value of each key, None to remove it.
type Pending = BTreeMap<Vec<u8>, Option<IVec>>;

/// The committed state plus a group's pending writes.
pub(crate) struct Stage<'a> {
    pub ctx: &'a Ctx,
    pub trees: &'a Trees,
    queues: MutexGuard<'a, Queues>,
    cache: &'a mut TaskCache,
    writes: [Pending; Tk::COUNT],
    dirty: HashSet<TaskId>,
    undo: Vec<Undo>,
}

impl<'a> Stage<'a> {
    /// An empty group over `trees`; holds the in-memory queues until it is committed or dropped.
    pub fn new(ctx: &'a Ctx, trees: &'a Trees, cache: &'a mut TaskCache) -> Self {
        Self {
            ctx,
            trees,
            queues: trees.lock_queues(),
            cache,
            writes: Default::default(),
            dirty: HashSet::new(),
            undo: Vec::new(),
        }
    }

    /// The current end of the undo log.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.undo.len())
    }

    /// Undoes every change made since `point`.
    pub fn rollback(&mut self, point: Savepoint) {
        while self.undo.len() > point.0 {
            match self.undo.pop() {
                Some(Undo::Key(tk, key, previous)) => {
                    let writes = &mut self.writes[tk as usize];
                    match previous {
                        Some(value) => writes.insert(key, value),
                        None => writes.remove(&key),
                    };
                }
                Some(Undo::Task(id, previous, history_len, was_dirty)) => {
                    match previous {
                        Some(stored) => {
                            if let Some(cached) = self.cache.map.get_mut(&id) {
                                cached.stored = *stored;
                                cached.history.truncate(history_len);
                            }
                        }
                        None => {
                            self.cache.map.remove(&id);
                        }
                    }
                    if !was_dirty {
                        self.dirty.remove(&id);
                    }
                }
                Some(Undo::Restore(id, cached, was_dirty)) => {
                    self.cache.map.insert(id, *cached);
                    if was_dirty {
                        self.dirty.insert(id);
                    }
                }
                None => break,
            }
        }
    }

    /// A value as the group sees it (not for task records: see [`Stage::load`]).
    pub fn get(&self, tk: Tk, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(pending) = self.writes[tk as usize].get(key) {
            return Ok(pending.clone());
        }
        if tk.prefix().is_none() {
            return Ok(self.queues.map(tk).get(key).cloned());
        }
        self.trees
            .committed_view(tk)
            .get(key)
            .map_err(|e| self.ctx.backend("reading", e))
    }

    fn write(&mut self, tk: Tk, key: Vec<u8>, value: Option<IVec>) {
        let previous = self.writes[tk as usize].insert(key.clone(), value);
        self.undo.push(Undo::Key(tk, key, previous));
    }

    /// Sets `key` to `value` in `tk`.
    pub fn put(&mut self, tk: Tk, key: Vec<u8>, value: impl Into<IVec>) {
        self.write(tk, key, Some(value.into()));
    }

    /// Removes `key` from `tk`.
    pub fn del(&mut self, tk: Tk, key: Vec<u8>) {
        self.write(tk, key, None);
    }

    /// A task record as the group sees it.
    pub fn load(&mut self, id: TaskId) -> Result<Option<StoredTask>, StoreError> {
        if let Some(cached) = self.cache.map.get(&id) {
            return Ok(Some(cached.stored.clone()));
        }
        let key = id.to_bytes();
        if let Some(None) = self.writes[Tk::Tasks as usize].get(&key[..]) {
            // Deleted earlier in this group.
            return Ok(None);
        }
        let Some(bytes) = self.get(Tk::Tasks, &key)? else {
            return Ok(None);
        };
        let (stored, history) = decode_record(self.ctx, &key, &bytes)?;
        self.cache.map.insert(
            id,
            Cached {
                stored: stored.clone(),
                history,
            },
        );
        Ok(Some(stored))
    }

    /// Replaces (or creates) a task record and appends `entries` to its history; it is
    /// encoded once, at commit.
    pub fn store(&mut self, stored: StoredTask, entries: &[HistoryEntry]) {
        let id = stored.task.id;
        let was_dirty = !self.dirty.insert(id);
        let undo = match self.cache.map.get_mut(&id) {
            Some(cached) => {
                let previous = std::mem::replace(&mut cached.stored, stored);
                let len = cached.history.len();
                cached.history.extend_from_slice(entries);
                Undo::Task(id, Some(Box::new(previous)), len, was_dirty)
            }
            None => {
                self.cache.map.insert(
                    id,
                    Cached {
                        stored,
                        history: entries.to_vec(),
                    },
                );
                Undo::Task(id, None, 0, was_dirty)
            }
        };
        self.undo.push(undo);
    }

    /// Deletes a task record (the caller deletes its index entries).
    pub fn remove_task(&mut self, id: TaskId) {
        if let Some(cached) = self.cache.map.remove(&id) {
            let was_dirty = self.dirty.remove(&id);
            self.undo
                .push(Undo::Restore(id, Box::new(cached), was_dirty));
        }
        self.del(Tk::Tasks, id.to_bytes().to_vec());
    }

    /// The minute up to which old activity buckets were swept (see `stats`), to move on.
    pub fn activity_swept(&mut self) -> &mut u64 {
        &mut self.cache.swept
    }

    /// When each tenant was last served by a claim.
    pub fn turns(&self) -> &task_core::fair::Turns<Vec<u8>> {
        &self.queues.turns
    }

    /// The turns, to record a claim.
    pub fn turns_mut(&mut self) -> &mut task_core::fair::Turns<Vec<u8>> {
        &mut self.queues.turns
    }

    /// The entries of `tk` in `range`, as the group sees them, in key order.
    pub fn range(&self, tk: Tk, range: (Bound<Vec<u8>>, Bound<Vec<u8>>)) -> Merged<'_> {
        let empty = match (&range.0, &range.1) {
            (
                Bound::Included(lo) | Bound::Excluded(lo),
                Bound::Included(hi) | Bound::Excluded(hi),
            ) => {
                lo > hi
                    || (lo == hi
                        && (matches!(range.0, Bound::Excluded(_))
                            || matches!(range.1, Bound::Excluded(_))))
            }
            _ => false,
        };
        if empty {
            return Merged {
                ctx: self.ctx,
                tk,
                stored: None,
                pending: None,
                next_stored: None,
                next_pending: None,
            };
        }
        let bounds = (
            range.0.as_ref().map(Vec::as_slice),
            range.1.as_ref().map(Vec::as_slice),
        );
        let pending = Some(self.writes[tk as usize].range::<[u8], _>(bounds));
        let stored: Box<dyn Iterator<Item = Entry> + '_> = if tk.prefix().is_some() {
            Box::new(self.trees.committed_view(tk).range(range))
        } else {
            Box::new(
                self.queues
                    .map(tk)
                    .range::<[u8], _>(bounds)
                    .map(|(k, v)| Ok((k.clone(), v.clone()))),
            )
        };
        Merged {
            ctx: self.ctx,
            tk,
            stored: Some(stored),
            pending,
            next_stored: None,
            next_pending: None,
        }
    }

    /// Commits the group numbered `seq`: its persistent writes, task records first and the
    /// journal position ([`SEQ_KEY`]) last, become a journal frame and a [`Committed`] for the
    /// caller to apply to sled; the in-memory queues change at once. Returns None if nothing
    /// persistent was written (and `seq` is not used).
    pub fn commit(mut self, seq: u64) -> Result<Option<Committed>, StoreError> {
        let mut finished = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            if let Some(cached) = self.cache.map.get(&id) {
                let bytes = encode_record(&cached.stored, &cached.history)?;
                if !cached.stored.task.status().is_active() {
                    finished.push(id);
                }
                self.writes[Tk::Tasks as usize].insert(id.to_bytes().to_vec(), Some(bytes.into()));
            }
        }
        let mut frame = FrameBuilder::new(seq);
        let mut writes = GroupWrites::new();
        // Task records before the indexes that point at them: a reader of sled that sees part
        // of a group being applied never finds an index entry without its record.
        let order = std::iter::once(Tk::Tasks)
            .chain(Tk::PERSISTENT.into_iter().filter(|tk| *tk != Tk::Tasks));
        for tk in order {
            let Some(prefix) = tk.prefix() else { continue };
            for (key, value) in std::mem::take(&mut self.writes[tk as usize]) {
                let key = prefixed(prefix, &key);
                frame.write(&key, value.as_deref());
                writes.push((key, value));
            }
        }
        let committed = if writes.is_empty() {
            None
        } else {
            let seq_bytes = seq.to_be_bytes();
            frame.write(SEQ_KEY, Some(&seq_bytes));
            writes.push((SEQ_KEY.to_vec(), Some(IVec::from(&seq_bytes[..]))));
            Some(Committed {
                seq,
                frame: frame.finish(),
                writes,
            })
        };
        let mut queues_changed = false;
        for tk in Queues::KEYSPACES {
            let map = self.queues.map_mut(tk);
            for (key, value) in std::mem::take(&mut self.writes[tk as usize]) {
                queues_changed = true;
                match value {
                    Some(value) => map.insert(key, value),
                    None => map.remove(&key),
                };
            }
        }
        if queues_changed {
            self.trees.publish_wakeup(&self.queues);
        }
        if self.cache.map.len() > CACHE_BOUND {
            self.cache.map.clear();
        } else {
            for id in finished {
                self.cache.map.remove(&id);
            }
        }
        Ok(committed)
    }
}

/// A range of one tree as the group sees it: sled's entries merged with the pending writes.
pub(crate) struct Merged<'s> {
    ctx: &'s Ctx,
    tk: Tk,
    stored: Option<Box<dyn Iterator<Item = Entry> + 's>>,
    pending: Option<btree_map::Range<'s, Vec<u8>, Option<IVec>>>,
    next_stored: Option<(Vec<u8>, IVec)>,
    next_pending: Option<(&'s Vec<u8>, &'s Option<IVec>)>,
}

impl Iterator for Merged<'_> {
    type Item = Result<(Vec<u8>, IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.next_stored.is_none()
                && let Some(iter) = &mut self.stored
            {
                match iter.next() {
                    Some(Ok(entry)) => self.next_stored = Some(entry),
                    Some(Err(e)) => {
                        self.stored = None;
                        self.pending = None;
                        return Some(Err(self.ctx.backend(self.tk.scan_operation(), e)));
                    }
                    None => self.stored = None,
                }
            }
            if self.next_pending.is_none()
                && let Some(iter) = &mut self.pending
            {
                self.next_pending = iter.next();
                if self.next_pending.is_none() {
                    self.pending = None;
                }
            }
            let order = match (&self.next_stored, self.next_pending) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((stored, _)), Some((pending, _))) => {
                    stored.as_slice().cmp(pending.as_slice())
                }
            };
            if order == Ordering::Equal {
                // The pending write replaces the stored entry.
                self.next_stored = None;
            }
            let take_stored = order == Ordering::Less;
            if take_stored {
                if let Some((key, value)) = self.next_stored.take() {
                    return Some(Ok((key, value)));
                }
            } else if let Some((key, value)) = self.next_pending.take()
                && let Some(value) = value
            {
                return Some(Ok((key.clone(), value.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::{SledOptions, open};

    #[test]
    fn ranges_merge_pending_writes_and_rollback_undoes_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), SledOptions::default()).expect("open");
        let inner = &store.live().expect("the store is live");
        for key in [b"a", b"c", b"e"] {
            inner
                .trees
                .data
                .insert(prefixed(b'K', key), &b"stored"[..])
                .expect("seed");
        }
        let mut cache = TaskCache::default();
        let mut stage = Stage::new(&inner.ctx, &inner.trees, &mut cache);
        stage.put(Tk::Cache, b"b".to_vec(), &b"new"[..]);
        stage.put(Tk::Cache, b"c".to_vec(), &b"replaced"[..]);
        let point = stage.savepoint();
        stage.del(Tk::Cache, b"e".to_vec());
        stage.put(Tk::Cache, b"f".to_vec(), &b"new"[..]);
        let seen = |stage: &Stage<'_>, lo: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
            stage
                .range(Tk::Cache, (Bound::Included(lo.to_vec()), Bound::Unbounded))
                .map(|e| e.map(|(k, v)| (k, v.to_vec())).expect("entry"))
                .collect()
        };
        let pairs = |list: &[(&[u8], &[u8])]| -> Vec<(Vec<u8>, Vec<u8>)> {
            list.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
        };
        assert_eq!(
            seen(&stage, b"a"),
            pairs(&[
                (b"a", b"stored"),
                (b"b", b"new"),
                (b"c", b"replaced"),
                (b"f", b"new")
            ])
        );
        assert_eq!(seen(&stage, b"d"), pairs(&[(b"f", b"new")]));
        assert!(stage.get(Tk::Cache, b"e").expect("get").is_none());
        stage.rollback(point);
        assert_eq!(
            seen(&stage, b"c"),
            pairs(&[(b"c", b"replaced"), (b"e", b"stored")])
        );
        let group = stage.commit(1_000_000).expect("commit").expect("writes");
        group
            .apply_atomically(&inner.ctx, &inner.trees)
            .expect("apply");
        let stored: Vec<Vec<u8>> = inner
            .trees
            .view(Tk::Cache)
            .iter()
            .map(|e| e.expect("entry").1.to_vec())
            .collect();
        assert_eq!(stored, [&b"stored"[..], b"new", b"replaced", b"stored"]);
    }

    #[test]
    fn the_in_memory_queues_change_only_at_commit_and_publish_the_wakeup() {
        use task_core::time::Timestamp;

        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), SledOptions::default()).expect("open");
        let inner = &store.live().expect("the store is live");
        let id = TaskId::generate();
        let mut cache = TaskCache::default();
        let mut stage = Stage::new(&inner.ctx, &inner.trees, &mut cache);
        stage.put(
            Tk::Ready,
            crate::keys::ready(1, "t", Timestamp(50), id),
            &b"p"[..],
        );
        let point = stage.savepoint();
        stage.put(Tk::Leases, crate::keys::lease(Timestamp(20), id), &b""[..]);
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(stage.range(Tk::Leases, all.clone()).count(), 1);
        stage.rollback(point);
        assert_eq!(stage.range(Tk::Leases, all.clone()).count(), 0);
        assert_eq!(stage.range(Tk::Ready, all).count(), 1);
        assert_eq!(
            inner.trees.wakeup(),
            None,
            "nothing published before the commit"
        );
        assert!(
            stage.commit(1_000_000).expect("commit").is_none(),
            "nothing persistent was written"
        );
        assert_eq!(inner.trees.lock_queues().ready.len(), 1);
        assert!(inner.trees.lock_queues().leases.is_empty());
        assert_eq!(inner.trees.wakeup(), Some(Timestamp(50)));
    }
}
