//! Status counts and per-minute activity, kept in two keyspaces of the data tree and written by
//! the committer in the same group (one atomic sled batch, one journal frame) as the task
//! records they follow, so that they never drift from the records, whatever crashes between.
//!
//! - [`Tk::Counts`]: (tenant, product, status) -> how many tasks (u64, big-endian). A count
//!   that falls to zero is removed.
//! - [`Tk::Activity`]: (minute, tenant, product) -> an encoded [`Activity`]. Minute first, so
//!   that the buckets past [`ACTIVITY_KEPT_MS`] are one range at the front, swept each time a
//!   write opens a new minute.
//!
//! Each change is a read-modify-write through the [`Stage`]: the committer is the only writer,
//! and the stage's pending writes make several changes of one counter in one group add up.
//! A database written by a build that kept no counters gets them once at open, counted from
//! the records ([`ensure_counts`]); a marker in the meta tree says they are kept.

use std::collections::BTreeMap;
use std::ops::Bound;

use task_core::ids::{ProductName, TenantId};
use task_core::stats::{
    ACTIVITY_KEPT_MS, Activity, ActivityBucket, Durations, StatsDelta, StatusCount, minute_of,
};
use task_core::store::StoreError;
use task_core::task::{Status, TaskKey};
use task_core::time::Timestamp;

use crate::Inner;
use crate::error::Ctx;
use crate::keys;
use crate::layout::{Tk, Trees, prefixed, tree};
use crate::record::decode_head;
use crate::stage::Stage;

/// The meta-tree key whose presence says the data tree keeps status counts.
const COUNTS_KEPT_KEY: &[u8] = b"counts_kept";
/// The version of the encoded [`Activity`] values.
const ACTIVITY_VERSION: u8 = 1;
/// Numbers in an encoded [`Activity`]: four counters, then count, total and maximum of the
/// queue wait and of each of the four steps.
const ACTIVITY_FIELDS: usize = 4 + 3 * 5;

/// The key of a status count.
pub(crate) fn count_key(tenant: &str, product: &str, status: Status) -> Vec<u8> {
    keys::strings(&[tenant, product, status.as_str()])
}

/// The key of a minute's activity bucket.
fn activity_key(minute: Timestamp, tenant: &str, product: &str) -> Vec<u8> {
    let mut key = minute.as_millis().to_be_bytes().to_vec();
    key.extend_from_slice(&keys::strings(&[tenant, product]));
    key
}

/// The strings encoded by [`keys::strings`] in `bytes`, or None if they are malformed.
fn split_strings(bytes: &[u8]) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match (bytes[at], bytes.get(at + 1)) {
            (0, Some(0)) => {
                parts.push(String::from_utf8(std::mem::take(&mut current)).ok()?);
                at += 2;
            }
            (0, Some(1)) => {
                current.push(0);
                at += 2;
            }
            (0, _) => return None,
            (byte, _) => {
                current.push(byte);
                at += 1;
            }
        }
    }
    current.is_empty().then_some(parts)
}

/// A tenant and product read back from a key of `tk`.
fn names(
    ctx: &Ctx,
    tk: Tk,
    key: &[u8],
    parts: &[String],
) -> Result<(TenantId, ProductName), StoreError> {
    let bad = |what: String| ctx.corrupt(tk.name(), key, what);
    let tenant = TenantId::new(parts[0].as_str()).map_err(|e| bad(e.to_string()))?;
    let product = ProductName::new(parts[1].as_str()).map_err(|e| bad(e.to_string()))?;
    Ok((tenant, product))
}

/// A stored count.
fn decode_count(ctx: &Ctx, key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    let raw: [u8; 8] = value
        .try_into()
        .map_err(|_| ctx.corrupt(tree::COUNTS, key, "a count is not 8 bytes"))?;
    Ok(u64::from_be_bytes(raw))
}

/// `activity` as stored: a version byte, then its numbers (u64, little-endian).
fn encode_activity(activity: &Activity) -> Vec<u8> {
    let mut numbers = vec![
        activity.created,
        activity.done,
        activity.failed,
        activity.cancelled,
    ];
    for durations in std::iter::once(&activity.queue_wait).chain(&activity.steps) {
        numbers.extend([durations.count, durations.total_ms, durations.max_ms]);
    }
    let mut bytes = Vec::with_capacity(1 + 8 * numbers.len());
    bytes.push(ACTIVITY_VERSION);
    for number in numbers {
        bytes.extend_from_slice(&number.to_le_bytes());
    }
    bytes
}

/// An activity bucket as [`encode_activity`] stored it.
fn decode_activity(ctx: &Ctx, key: &[u8], bytes: &[u8]) -> Result<Activity, StoreError> {
    let bad = |what: &str| ctx.corrupt(tree::ACTIVITY, key, what);
    let (version, body) = bytes.split_first().ok_or_else(|| bad("empty value"))?;
    if *version != ACTIVITY_VERSION {
        return Err(bad(&format!("unknown activity version {version}")));
    }
    if body.len() != 8 * ACTIVITY_FIELDS {
        return Err(bad("wrong activity length"));
    }
    let numbers: Vec<u64> = body
        .chunks_exact(8)
        .map(|chunk| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            u64::from_le_bytes(raw)
        })
        .collect();
    let durations = |at: usize| Durations {
        count: numbers[at],
        total_ms: numbers[at + 1],
        max_ms: numbers[at + 2],
    };
    Ok(Activity {
        created: numbers[0],
        done: numbers[1],
        failed: numbers[2],
        cancelled: numbers[3],
        queue_wait: durations(4),
        steps: [durations(7), durations(10), durations(13), durations(16)],
    })
}

impl Stage<'_> {
    /// Adds `delta` to the statistics of the tasks with `key`, in this group.
    pub fn add_stats(&mut self, key: &TaskKey, delta: StatsDelta) -> Result<(), StoreError> {
        let (tenant, product) = (key.tenant.as_str(), key.product.as_str());
        for (status, change) in delta.counts {
            let count_key = count_key(tenant, product, status);
            let current = match self.get(Tk::Counts, &count_key)? {
                Some(value) => decode_count(self.ctx, &count_key, &value)?,
                None => 0,
            };
            match current.saturating_add_signed(change) {
                0 if current == 0 => {}
                0 => self.del(Tk::Counts, count_key),
                next => self.put(Tk::Counts, count_key, &next.to_be_bytes()[..]),
            }
        }
        if let Some((minute, activity)) = delta.activity {
            let bucket_key = activity_key(minute, tenant, product);
            let mut bucket = match self.get(Tk::Activity, &bucket_key)? {
                Some(value) => decode_activity(self.ctx, &bucket_key, &value)?,
                None => Activity::default(),
            };
            bucket.merge(&activity);
            self.put(Tk::Activity, bucket_key, encode_activity(&bucket));
            self.sweep_activity(minute)?;
        }
        Ok(())
    }

    /// Deletes the activity buckets older than [`ACTIVITY_KEPT_MS`] before `minute`, once per
    /// new minute.
    fn sweep_activity(&mut self, minute: Timestamp) -> Result<(), StoreError> {
        let minute = minute.as_millis();
        if minute <= *self.activity_swept() {
            return Ok(());
        }
        *self.activity_swept() = minute;
        let oldest = minute
            .saturating_sub(ACTIVITY_KEPT_MS)
            .to_be_bytes()
            .to_vec();
        let expired = self
            .range(Tk::Activity, (Bound::Unbounded, Bound::Excluded(oldest)))
            .map(|entry| entry.map(|(key, _)| key))
            .collect::<Result<Vec<_>, _>>()?;
        for key in expired {
            self.del(Tk::Activity, key);
        }
        Ok(())
    }
}

impl Inner {
    /// The status counts of `tenant`, or of every tenant.
    pub(crate) fn status_counts_sync(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        let view = self.trees.view(Tk::Counts);
        let prefix = tenant.map_or_else(Vec::new, |t| keys::strings(&[t.as_str()]));
        let mut counts = Vec::new();
        for entry in view.scan_prefix(&prefix) {
            let (key, value) = entry.map_err(|e| self.ctx.backend("reading status counts", e))?;
            let bad = |what: &str| self.ctx.corrupt(tree::COUNTS, &key, what);
            let parts = split_strings(&key)
                .filter(|parts| parts.len() == 3)
                .ok_or_else(|| bad("malformed key"))?;
            let (tenant, product) = names(&self.ctx, Tk::Counts, &key, &parts)?;
            let status: Status = parts[2].parse().map_err(|_| bad("unknown status"))?;
            counts.push(StatusCount {
                tenant,
                product,
                status,
                count: decode_count(&self.ctx, &key, &value)?,
            });
        }
        Ok(counts)
    }

    /// The activity buckets of `tenant` (or of every tenant) from the minute holding `since`.
    pub(crate) fn activity_sync(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        let from = minute_of(since).as_millis().to_be_bytes().to_vec();
        let mut buckets = Vec::new();
        let range = (Bound::Included(from), Bound::Unbounded);
        for entry in self.trees.view(Tk::Activity).range(range) {
            let (key, value) = entry.map_err(|e| self.ctx.backend("reading activity", e))?;
            let bad = || self.ctx.corrupt(tree::ACTIVITY, &key, "malformed key");
            let (minute, rest) = key.split_at_checked(8).ok_or_else(bad)?;
            let parts = split_strings(rest)
                .filter(|parts| parts.len() == 2)
                .ok_or_else(bad)?;
            if tenant.is_some_and(|wanted| wanted.as_str() != parts[0]) {
                continue;
            }
            let (tenant, product) = names(&self.ctx, Tk::Activity, &key, &parts)?;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(minute);
            buckets.push(ActivityBucket {
                tenant,
                product,
                minute: Timestamp::from_millis(u64::from_be_bytes(raw)),
                activity: decode_activity(&self.ctx, &key, &value)?,
            });
        }
        Ok(buckets)
    }
}

/// The status counts of every stored task, counted from the records (by key, as stored).
pub(crate) fn count_records(
    ctx: &Ctx,
    trees: &Trees,
) -> Result<BTreeMap<Vec<u8>, u64>, StoreError> {
    let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for entry in trees.view(Tk::Tasks).iter() {
        let (key, value) = entry.map_err(|e| ctx.backend("counting tasks", e))?;
        let task = decode_head(ctx, &key, &value)?.task;
        let key = count_key(
            task.key.tenant.as_str(),
            task.key.product.as_str(),
            task.status(),
        );
        *counts.entry(key).or_default() += 1;
    }
    Ok(counts)
}

/// Makes sure the data tree keeps status counts: a database written by a build that did not
/// (no marker in the meta tree) gets them counted from its records, once, at open (after the
/// journal replay, before anything else writes). Made durable by the checkpoint that ends the
/// open; a crash before it only means counting again at the next open.
pub(crate) fn ensure_counts(ctx: &Ctx, trees: &Trees) -> Result<(), StoreError> {
    let marked = trees
        .meta
        .get(COUNTS_KEPT_KEY)
        .map_err(|e| ctx.backend("reading the counts marker", e))?;
    if marked.is_some() {
        return Ok(());
    }
    let counts = count_records(ctx, trees)?;
    let prefix = Tk::Counts.prefix().unwrap_or(b'U');
    let mut batch = sled::Batch::default();
    for entry in trees.data.scan_prefix([prefix]) {
        let (key, _) = entry.map_err(|e| ctx.backend("rebuilding status counts", e))?;
        batch.remove(key);
    }
    let kinds = counts.len();
    for (key, count) in counts {
        batch.insert(prefixed(prefix, &key), &count.to_be_bytes()[..]);
    }
    trees
        .data
        .apply_batch(batch)
        .map_err(|e| ctx.backend("rebuilding status counts", e))?;
    trees
        .meta
        .insert(COUNTS_KEPT_KEY, &[1u8][..])
        .map_err(|e| ctx.backend("writing the counts marker", e))?;
    tracing::info!(path = %ctx.path, counts = kinds, "counted the stored tasks by status");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_read_back() {
        let key = keys::strings(&["ten\0ant", "product"]);
        assert_eq!(
            split_strings(&key),
            Some(vec!["ten\0ant".to_string(), "product".to_string()])
        );
        assert_eq!(split_strings(&key[..key.len() - 1]), None);
        let mut activity = Activity {
            created: 3,
            done: 2,
            failed: 1,
            cancelled: 4,
            ..Activity::default()
        };
        activity.queue_wait.add(120);
        activity.steps[2].add(7);
        activity.steps[3].add(9);
        let ctx = Ctx {
            path: "test".into(),
        };
        let encoded = encode_activity(&activity);
        assert_eq!(
            decode_activity(&ctx, b"k", &encoded).expect("decodes"),
            activity
        );
        assert!(decode_activity(&ctx, b"k", &encoded[1..]).is_err());
        assert!(decode_activity(&ctx, b"k", &encoded[..encoded.len() - 1]).is_err());
    }

    #[test]
    fn activity_keys_sort_by_minute_then_tenant() {
        let early = activity_key(Timestamp(60_000), "z", "p");
        let late = activity_key(Timestamp(120_000), "a", "p");
        assert!(early < late);
        assert!(activity_key(Timestamp(60_000), "a", "p") < early);
    }
}
