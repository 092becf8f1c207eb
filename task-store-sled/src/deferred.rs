//! Task records held back from sled until the next checkpoint.
//!
//! A task's record is rewritten at every transition: created, claimed, each step, finished.
//! Each version written into sled costs inserts, then work on sled's I/O threads writing its
//! log. Yet sled only needs the version that is current at a checkpoint: until then the
//! journal holds every durable version. So the flusher puts task records here instead of into
//! sled, and readers look here before sled. (Measured: the runner's end-to-end throughput went
//! from 6,593-8,508 to 8,329-9,696 tasks/s in alternating runs.) The status counts and activity
//! buckets (see `stats`), rewritten by most groups as well, are held back the same way.
//!
//! A checkpoint writes a snapshot of the held records into sled, then the journal position they
//! reach, then flushes sled. Only after that are the covered journal segments deleted and the
//! written records forgotten here (unless rewritten meanwhile). So sled's journal position
//! only moves at checkpoints, and a crash replays every frame since the last one: at most a
//! segment's worth, each frame setting keys to absolute values.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use sled::IVec;

use crate::journal::SEQ_KEY;

/// Held records (full keys), in key order: None for a removed record, with the number of
/// the hold that wrote it.
pub(crate) type Held = Vec<(Vec<u8>, Option<IVec>, u64)>;

/// The held writes and the number of the last hold.
#[derive(Debug, Default)]
struct Records {
    map: BTreeMap<Vec<u8>, (u64, Option<IVec>)>,
    holds: u64,
}

/// Durable task records (full keys) not yet in sled: None for a removed record.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    records: Mutex<Records>,
}

impl Deferred {
    fn lock(&self) -> MutexGuard<'_, Records> {
        // Changed only by whole-entry operations under the lock.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the durable write of `key` back from sled.
    pub fn hold(&self, key: &[u8], value: Option<IVec>) {
        let mut records = self.lock();
        records.holds += 1;
        let number = records.holds;
        records.map.insert(key.to_vec(), (number, value));
    }

    /// The held write of `key` (a full key): Some(None) if the record was removed.
    pub fn get(&self, key: &[u8]) -> Option<Option<IVec>> {
        self.lock().map.get(key).map(|(_, value)| value.clone())
    }

    /// The held writes within `bounds` (over full keys), in key order.
    pub fn range(&self, bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>)) -> Vec<(Vec<u8>, Option<IVec>)> {
        let records = self.lock();
        if records.map.is_empty() {
            return Vec::new();
        }
        records
            .map
            .range::<Vec<u8>, _>(bounds)
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect()
    }

    /// How many records are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// A copy of the held records, for a checkpoint.
    pub fn snapshot(&self) -> Held {
        self.lock()
            .map
            .iter()
            .map(|(key, (number, value))| (key.clone(), value.clone(), *number))
            .collect()
    }

    /// Writes the records of `held` (a [`Deferred::snapshot`]) into `data`, then `seq` as
    /// the journal position. Newer versions held meanwhile stay held, and reads still prefer
    /// them.
    pub fn write_into(&self, data: &sled::Tree, held: &Held, seq: u64) -> sled::Result<()> {
        for (key, value, _) in held {
            match value {
                Some(value) => data.insert(key.as_slice(), value.clone()).map(drop)?,
                None => data.remove(key.as_slice()).map(drop)?,
            }
        }
        data.insert(SEQ_KEY, &seq.to_be_bytes()).map(drop)
    }

    /// Stops holding the records of `held` that sled now has (durably) and that were not
    /// rewritten meanwhile. Rewritten is told by the hold's number, not the value: a count
    /// can be rewritten with the value it had, and a later snapshot holding an older value
    /// would then put it back into sled over the newer one.
    pub fn forget(&self, held: Held) {
        let mut records = self.lock();
        for (key, _, number) in held {
            if records
                .map
                .get(&key)
                .is_some_and(|(held, _)| *held == number)
            {
                records.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Option<IVec> {
        Some(IVec::from(text.as_bytes()))
    }

    #[test]
    fn held_records_are_read_until_a_checkpoint_writes_them_with_the_position() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let data = db.open_tree("data").expect("tree");
        data.insert(b"Ta", &b"old"[..]).expect("seed");
        data.insert(b"Tb", &b"removed"[..]).expect("seed");
        let deferred = Deferred::default();
        deferred.hold(b"Ta", value("v1"));
        deferred.hold(b"Ta", value("v2"));
        deferred.hold(b"Tb", None);
        deferred.hold(b"Tc", value("new"));
        assert_eq!(
            deferred.get(b"Ta"),
            Some(value("v2")),
            "the last version wins"
        );
        assert_eq!(deferred.get(b"Tb"), Some(None), "a removal is held too");
        assert_eq!(deferred.get(b"Tz"), None);
        let held: Vec<Vec<u8>> = deferred
            .range((Bound::Included(b"Tb".to_vec()), Bound::Unbounded))
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(held, vec![b"Tb".to_vec(), b"Tc".to_vec()]);
        assert_eq!(data.get(b"Ta").expect("get"), value("old"), "sled waits");

        let held = deferred.snapshot();
        assert_eq!(held.len(), 3);
        deferred.write_into(&data, &held, 42).expect("write");
        deferred.hold(b"Tc", value("newer"));
        deferred.forget(held);
        assert_eq!(deferred.len(), 1, "a record rewritten meanwhile stays held");
        assert_eq!(deferred.get(b"Tc"), Some(value("newer")));
        // Rewritten with the value the snapshot holds: still held, as the newer write.
        let held = deferred.snapshot();
        deferred.hold(b"Tc", value("v1"));
        deferred.hold(b"Tc", value("newer"));
        deferred.forget(held);
        assert_eq!(
            deferred.len(),
            1,
            "rewritten with an equal value: still held"
        );
        assert_eq!(data.get(b"Ta").expect("get"), value("v2"));
        assert_eq!(data.get(b"Tb").expect("get"), None);
        assert_eq!(data.get(b"Tc").expect("get"), value("new"));
        assert_eq!(
            data.get(SEQ_KEY).expect("get").as_deref(),
            Some(&42u64.to_be_bytes()[..])
        );
    }
}
