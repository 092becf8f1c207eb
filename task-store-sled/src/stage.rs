//! The committer's view of the database while it builds a group: sled's committed state with
//! the group's pending writes on top, and the atomic commit of those writes.
//!
//! Only the committer thread writes, so what it reads from sled cannot change under it. Reads
//! go to the group's pending writes first, then to sled; range scans merge both in key order.
//! Task records are kept decoded (a write-through cache shared across groups) and encoded once
//! per group at commit. Each call's writes can be undone up to a [`Savepoint`], so a call that
//! fails leaves nothing behind. [`Stage::commit`] writes everything in one sled transaction
//! over the trees it touches: atomic on disk (one batch in sled's log) and for readers (sled
//! commits a transaction under its write lock, which every read takes shared).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, btree_map};
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use sled::IVec;
use sled::transaction::{ConflictableTransactionError, Transactional};
use task_core::ids::TaskId;
use task_core::store::StoreError;
use task_core::task::Task;

use crate::codec::{decode, encode};
use crate::error::Ctx;
use crate::open::{Tk, Trees};

/// The stored form of a task: the record plus what is needed to find its index entries.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StoredTask {
    /// The task as the state machine returned it.
    pub task: Task,
    /// The sequence number of its ready-queue entry, while pending.
    pub ready_seq: Option<u64>,
    /// How many history entries it has.
    pub history_len: u32,
}

#[derive(Serialize)]
struct StoredTaskRef<'a> {
    task: &'a Task,
    ready_seq: Option<u64>,
    history_len: u32,
}

impl StoredTask {
    /// The encoded record.
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        encode(&StoredTaskRef {
            task: &self.task,
            ready_seq: self.ready_seq,
            history_len: self.history_len,
        })
    }
}

/// The NotFound error of a task.
pub(crate) fn task_not_found(id: TaskId) -> StoreError {
    StoreError::NotFound {
        what: "task",
        id: id.to_string(),
    }
}

/// Decoded task records the committer read or wrote, valid across groups because nothing
/// else writes. Finished tasks leave it at commit; it is emptied when it grows past its bound
/// or when a commit fails.
#[derive(Debug, Default)]
pub(crate) struct TaskCache {
    map: HashMap<TaskId, StoredTask>,
}

/// At most this many records stay cached between groups.
const CACHE_BOUND: usize = 32_768;

impl TaskCache {
    /// Forgets everything (after a failed commit: sled may not hold what the cache says).
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// A position in the undo log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Savepoint(usize);

enum Undo {
    /// A key's pending write before the change (None: it had none).
    Key(Tk, Vec<u8>, Option<Option<IVec>>),
    /// A task's cached record before the change, and whether it was dirty.
    Task(TaskId, Option<Box<StoredTask>>, bool),
}

/// A tree's pending writes: the new value of each key, None to remove it.
type Pending = BTreeMap<Vec<u8>, Option<IVec>>;

/// sled's committed state plus a group's pending writes.
pub(crate) struct Stage<'a> {
    pub ctx: &'a Ctx,
    pub trees: &'a Trees,
    cache: &'a mut TaskCache,
    writes: [Pending; Tk::COUNT],
    dirty: HashSet<TaskId>,
    undo: Vec<Undo>,
}

impl<'a> Stage<'a> {
    /// An empty group over `trees`.
    pub fn new(ctx: &'a Ctx, trees: &'a Trees, cache: &'a mut TaskCache) -> Self {
        Self {
            ctx,
            trees,
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
                Some(Undo::Task(id, previous, was_dirty)) => {
                    match previous {
                        Some(stored) => self.cache.map.insert(id, *stored),
                        None => self.cache.map.remove(&id),
                    };
                    if !was_dirty {
                        self.dirty.remove(&id);
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
        self.trees
            .get(tk)
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
        if let Some(stored) = self.cache.map.get(&id) {
            return Ok(Some(stored.clone()));
        }
        let key = id.to_bytes();
        let Some(bytes) = self
            .trees
            .tasks
            .get(key)
            .map_err(|e| self.ctx.backend("reading a task", e))?
        else {
            return Ok(None);
        };
        let stored: StoredTask = decode(self.ctx, Tk::Tasks.name(), &key, &bytes)?;
        self.cache.map.insert(id, stored.clone());
        Ok(Some(stored))
    }

    /// Replaces (or creates) a task record; it is encoded once, at commit.
    pub fn store(&mut self, stored: StoredTask) {
        let id = stored.task.id;
        let previous = self.cache.map.insert(id, stored);
        let was_dirty = !self.dirty.insert(id);
        self.undo
            .push(Undo::Task(id, previous.map(Box::new), was_dirty));
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
        let pending = if empty {
            None
        } else {
            let bounds = (
                range.0.as_ref().map(Vec::as_slice),
                range.1.as_ref().map(Vec::as_slice),
            );
            Some(self.writes[tk as usize].range::<[u8], _>(bounds))
        };
        Merged {
            ctx: self.ctx,
            tk,
            stored: (!empty).then(|| self.trees.get(tk).range(range)),
            pending,
            next_stored: None,
            next_pending: None,
        }
    }

    /// Commits every pending write in one sled transaction. Returns whether anything was
    /// written. On error nothing was written.
    pub fn commit(mut self) -> Result<bool, StoreError> {
        let mut finished = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            if let Some(stored) = self.cache.map.get(&id) {
                let bytes = stored.encode()?;
                if !stored.task.status().is_active() {
                    finished.push(id);
                }
                self.writes[Tk::Tasks as usize].insert(id.to_bytes().to_vec(), Some(bytes.into()));
            }
        }
        let used: Vec<(&sled::Tree, &Pending)> = Tk::ALL
            .iter()
            .zip(&self.writes)
            .filter(|(_, writes)| !writes.is_empty())
            .map(|(tk, writes)| (self.trees.get(*tk), writes))
            .collect();
        if used.is_empty() {
            return Ok(false);
        }
        let trees: Vec<&sled::Tree> = used.iter().map(|(tree, _)| *tree).collect();
        trees
            .as_slice()
            .transaction(|views| {
                for (view, (_, writes)) in views.iter().zip(&used) {
                    for (key, value) in writes.iter() {
                        match value {
                            Some(value) => view.insert(key.as_slice(), value.clone())?,
                            None => view.remove(key.as_slice())?,
                        };
                    }
                }
                Ok::<(), ConflictableTransactionError<StoreError>>(())
            })
            .map_err(|e| self.ctx.transaction("committing a group", e))?;
        if self.cache.map.len() > CACHE_BOUND {
            self.cache.map.clear();
        } else {
            for id in finished {
                self.cache.map.remove(&id);
            }
        }
        Ok(true)
    }
}

/// A range of one tree as the group sees it: sled's entries merged with the pending writes.
pub(crate) struct Merged<'s> {
    ctx: &'s Ctx,
    tk: Tk,
    stored: Option<sled::Iter>,
    pending: Option<btree_map::Range<'s, Vec<u8>, Option<IVec>>>,
    next_stored: Option<(IVec, IVec)>,
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
                (Some((stored, _)), Some((pending, _))) => stored.as_ref().cmp(pending.as_slice()),
            };
            if order == Ordering::Equal {
                // The pending write replaces the stored entry.
                self.next_stored = None;
            }
            let take_stored = order == Ordering::Less;
            if take_stored {
                if let Some((key, value)) = self.next_stored.take() {
                    return Some(Ok((key.to_vec(), value)));
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
        let inner = &store.inner;
        for key in [b"a", b"c", b"e"] {
            inner.trees.cache.insert(key, &b"stored"[..]).expect("seed");
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
        assert!(stage.commit().expect("commit"));
        let stored: Vec<Vec<u8>> = inner
            .trees
            .cache
            .iter()
            .map(|e| e.expect("entry").1.to_vec())
            .collect();
        assert_eq!(stored, [&b"stored"[..], b"new", b"replaced", b"stored"]);
    }
}
