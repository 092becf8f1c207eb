//! Writes on their way to sled.
//!
//! sled never holds a write before its journal frame is durable: the
//! committer hands a group's writes to the flusher, which applies them to sled (one insert
//! per key; task records are held back until the next checkpoint, see `deferred`) only after
//! the fsync. sled then never gets ahead of
//! the journal, so a crash, even one that keeps only part of a group in sled, is always
//! repaired by replaying the frames after the recorded position. With strict durability,
//! readers other than the committer read sled (and the held records), so they only ever see
//! durable writes; with buffered durability, whose calls return at commit, they read through
//! the overlay too. The committer, which builds
//! the next groups meanwhile, reads through the [`Overlay`]: the writes committed but not yet
//! applied, newest first.
//!
//! Applying key by key instead of as one `apply_batch` matters: sled 0.34 seals and writes
//! its log buffer at every batch (so that a batch recovers whole), which cost a log write and
//! a `sync_file_range` per group on sled's I/O threads.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;

use sled::IVec;

use crate::layout::{Entry, prefixed};

/// A key's pending write: the group that wrote it last and its value (None: removed).
type Slot = (u64, Option<IVec>);

/// Committed writes not yet applied to sled, by full (prefixed) key.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    pending: BTreeMap<Vec<u8>, Slot>,
}

/// A group's writes, full keys in the order they are applied (the journal position last).
pub(crate) type GroupWrites = Vec<(Vec<u8>, Option<IVec>)>;

impl Overlay {
    /// Records the writes of group `seq`.
    pub fn publish(&mut self, seq: u64, writes: &GroupWrites) {
        for (key, value) in writes {
            self.pending.insert(key.clone(), (seq, value.clone()));
        }
    }

    /// Forgets the writes of group `seq` (now in sled), unless a later group rewrote the key.
    pub fn retire(&mut self, seq: u64, writes: &GroupWrites) {
        for (key, _) in writes {
            if self.pending.get(key).is_some_and(|(by, _)| *by == seq) {
                self.pending.remove(key);
            }
        }
    }

    /// The pending write of `key` in keyspace `prefix`: Some(None) if it is being removed.
    pub fn get(&self, prefix: u8, key: &[u8]) -> Option<Option<IVec>> {
        self.pending
            .get(&prefixed(prefix, key))
            .map(|(_, value)| value.clone())
    }

    /// The pending writes of keyspace `prefix` within `bounds` (keys without the prefix).
    pub fn range(
        &self,
        prefix: u8,
        bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> Vec<(Vec<u8>, Option<IVec>)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.pending
            .range::<Vec<u8>, _>(full_bounds(prefix, bounds.clone()))
            .map(|(key, (_, value))| (key[1..].to_vec(), value.clone()))
            .collect()
    }

    /// Every pending write, full keys in key order.
    pub fn entries(&self) -> Vec<(Vec<u8>, Option<IVec>)> {
        self.pending
            .iter()
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect()
    }

    /// Whether nothing is pending.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// `bounds` over the keys of keyspace `prefix`, as bounds over full keys.
pub(crate) fn full_bounds(
    prefix: u8,
    bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = match bounds.0 {
        Bound::Included(k) => Bound::Included(prefixed(prefix, &k)),
        Bound::Excluded(k) => Bound::Excluded(prefixed(prefix, &k)),
        Bound::Unbounded => Bound::Included(vec![prefix]),
    };
    let end = match bounds.1 {
        Bound::Included(k) => Bound::Included(prefixed(prefix, &k)),
        Bound::Excluded(k) => Bound::Excluded(prefixed(prefix, &k)),
        // Prefixes are ASCII letters: prefix + 1 never overflows.
        Bound::Unbounded => Bound::Excluded(vec![prefix + 1]),
    };
    (start, end)
}

/// sled's entries of a range with the overlay's pending writes on top, in key order.
pub(crate) struct Overlaid<I: Iterator<Item = Entry>> {
    stored: Peekable<I>,
    pending: Peekable<std::vec::IntoIter<(Vec<u8>, Option<IVec>)>>,
}

impl<I: Iterator<Item = Entry>> Overlaid<I> {
    /// Merges `stored` with `pending` (both in key order).
    pub fn new(stored: I, pending: Vec<(Vec<u8>, Option<IVec>)>) -> Self {
        Self {
            stored: stored.peekable(),
            pending: pending.into_iter().peekable(),
        }
    }
}

impl<I: Iterator<Item = Entry>> Iterator for Overlaid<I> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let order = match (self.stored.peek(), self.pending.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(Ok((stored, _))), Some((pending, _))) => stored.cmp(pending),
            };
            if order == std::cmp::Ordering::Less {
                return self.stored.next();
            }
            if order == std::cmp::Ordering::Equal {
                // The pending write replaces the stored entry.
                self.stored.next();
            }
            if let Some((key, Some(value))) = self.pending.next() {
                return Some(Ok((key, value)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> Entry {
        Ok((key.as_bytes().to_vec(), IVec::from(value.as_bytes())))
    }

    #[test]
    fn pending_writes_replace_hide_and_add_entries_in_order() {
        let mut overlay = Overlay::default();
        let writes: GroupWrites = vec![
            (prefixed(b'X', b"b"), Some(IVec::from(&b"new"[..]))),
            (prefixed(b'X', b"c"), None),
            (prefixed(b'X', b"e"), Some(IVec::from(&b"added"[..]))),
            (prefixed(b'Y', b"a"), Some(IVec::from(&b"other"[..]))),
        ];
        overlay.publish(1, &writes);
        let pending = overlay.range(b'X', &(Bound::Unbounded, Bound::Unbounded));
        assert_eq!(pending.len(), 3, "only keyspace X");
        let stored = vec![
            entry("a", "1"),
            entry("b", "2"),
            entry("c", "3"),
            entry("d", "4"),
        ];
        let merged: Vec<(Vec<u8>, IVec)> = Overlaid::new(stored.into_iter(), pending)
            .map(|e| e.expect("entry"))
            .collect();
        let expected: Vec<(Vec<u8>, IVec)> = [("a", "1"), ("b", "new"), ("d", "4"), ("e", "added")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), IVec::from(v.as_bytes())))
            .collect();
        assert_eq!(merged, expected);
        assert_eq!(overlay.get(b'X', b"c"), Some(None));
        assert_eq!(overlay.get(b'X', b"a"), None);
    }

    #[test]
    fn retiring_a_group_keeps_what_a_later_group_rewrote() {
        let mut overlay = Overlay::default();
        let first: GroupWrites = vec![
            (b"Xa".to_vec(), Some(IVec::from(&b"1"[..]))),
            (b"Xb".to_vec(), Some(IVec::from(&b"1"[..]))),
        ];
        let second: GroupWrites = vec![(b"Xb".to_vec(), Some(IVec::from(&b"2"[..])))];
        overlay.publish(1, &first);
        overlay.publish(2, &second);
        overlay.retire(1, &first);
        assert_eq!(overlay.get(b'X', b"a"), None);
        assert_eq!(overlay.get(b'X', b"b"), Some(Some(IVec::from(&b"2"[..]))));
        overlay.retire(2, &second);
        assert!(overlay.is_empty());
    }
}
