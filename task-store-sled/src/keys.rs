//! Key encodings of every tree.
//!
//! Strings are written escaped (`0x00` becomes `0x00 0x01`) and terminated by `0x00 0x00`, so
//! an encoded string is never a prefix of another and byte order equals string order: tenants
//! `a` and `ab` can neither collide nor interleave. Numbers are big-endian so they sort.

use task_core::ids::TaskId;
use task_core::task::TaskKey;
use task_core::time::Timestamp;

/// Appends `s`, escaped and terminated.
pub(crate) fn push_str(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == 0 {
            buf.extend_from_slice(&[0, 1]);
        } else {
            buf.push(b);
        }
    }
    buf.extend_from_slice(&[0, 0]);
}

/// One encoded string component.
pub(crate) fn strings(parts: &[&str]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum::<usize>() + 16);
    for part in parts {
        push_str(&mut buf, part);
    }
    buf
}

/// `prefix ++ id`.
pub(crate) fn with_id(mut prefix: Vec<u8>, id: TaskId) -> Vec<u8> {
    prefix.extend_from_slice(&id.to_bytes());
    prefix
}

/// The task id in the last 16 bytes of an index key.
pub(crate) fn trailing_id(key: &[u8]) -> Option<TaskId> {
    let start = key.len().checked_sub(16)?;
    let bytes: [u8; 16] = key[start..].try_into().ok()?;
    Some(TaskId::from_bytes(bytes))
}

/// The natural key of a task: (tenant, inventory id, product, version).
pub(crate) fn task_key(key: &TaskKey) -> Vec<u8> {
    strings(&[
        key.tenant.as_str(),
        key.inventory_id.as_str(),
        key.product.as_str(),
        key.version.as_str(),
    ])
}

/// The ready-queue prefix of one tenant's tasks of one priority: (rank, tenant).
pub(crate) fn ready_tenant(rank: u8, tenant: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(tenant.len() + 27);
    buf.push(rank);
    push_str(&mut buf, tenant);
    buf
}

/// Ready-queue key: (priority rank, tenant, ready-at, task id). Task ids sort in creation
/// order, so a tenant's queue is FIFO by ready time, then creation, and a requeued task
/// (back at its old ready time) is back at its old place.
pub(crate) fn ready(rank: u8, tenant: &str, ready_at: Timestamp, id: TaskId) -> Vec<u8> {
    let mut buf = ready_tenant(rank, tenant);
    buf.extend_from_slice(&ready_at.as_millis().to_be_bytes());
    buf.extend_from_slice(&id.to_bytes());
    buf
}

/// The (rank, tenant) prefix of a ready-queue key.
pub(crate) fn ready_tenant_of(key: &[u8]) -> Option<&[u8]> {
    key.get(..key.len().checked_sub(24)?)
}

/// The ready-at time in a ready-queue key.
pub(crate) fn ready_at_of(key: &[u8]) -> Option<Timestamp> {
    let end = key.len().checked_sub(16)?;
    let bytes: [u8; 8] = key.get(end.checked_sub(8)?..end)?.try_into().ok()?;
    Some(Timestamp::from_millis(u64::from_be_bytes(bytes)))
}

/// The last key of a tenant's ready queue (`prefix` from [`ready_tenant`]) ready at `now`.
pub(crate) fn ready_upto(prefix: &[u8], now: Timestamp) -> Vec<u8> {
    let mut buf = prefix.to_vec();
    buf.extend_from_slice(&now.as_millis().to_be_bytes());
    buf.extend_from_slice(&[0xff; 16]);
    buf
}

/// Lease-expiry key: (expires-at, task id).
pub(crate) fn lease(expires_at: Timestamp, id: TaskId) -> Vec<u8> {
    let mut buf = Vec::with_capacity(24);
    buf.extend_from_slice(&expires_at.as_millis().to_be_bytes());
    buf.extend_from_slice(&id.to_bytes());
    buf
}

/// The expiry time in a lease key.
pub(crate) fn lease_expiry_of(key: &[u8]) -> Option<Timestamp> {
    let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some(Timestamp::from_millis(u64::from_be_bytes(bytes)))
}

/// Finished-task key: (finished-at, task id), the same shape as a lease key.
pub(crate) fn finished(at: Timestamp, id: TaskId) -> Vec<u8> {
    lease(at, id)
}

/// A key printed for error messages.
pub(crate) fn printable(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// The smallest key strictly greater than every key starting with `prefix`... or None when the
/// prefix is all `0xff`.
pub(crate) fn after_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Up to `parts - 1` keys that cut `[first, last]` into runs for parallel scans, strictly
/// increasing and all in `(first, last]`. They interpolate the four bytes after the keys' common
/// prefix, so runs hold similar numbers of keys when those bytes are spread (as in names that
/// end in numbers); when they are not, a run simply holds more.
pub(crate) fn split_points(first: &[u8], last: &[u8], parts: u32) -> Vec<Vec<u8>> {
    let common = first.iter().zip(last).take_while(|(a, b)| a == b).count();
    let window = |key: &[u8]| {
        let mut bytes = [0u8; 4];
        for (slot, byte) in bytes.iter_mut().zip(key.iter().skip(common)) {
            *slot = *byte;
        }
        u64::from(u32::from_be_bytes(bytes))
    };
    let (low, high) = (window(first), window(last));
    let mut points: Vec<Vec<u8>> = Vec::new();
    for part in 1..u64::from(parts.max(1)) {
        let value = low + (high.saturating_sub(low)) * part / u64::from(parts);
        let mut point = last[..common].to_vec();
        point.extend_from_slice(&(value as u32).to_be_bytes());
        let above_first = point.as_slice() > first;
        let above_previous = points.last().is_none_or(|previous| &point > previous);
        if above_first && above_previous && point.as_slice() <= last {
            points.push(point);
        }
    }
    points
}

/// A waiting-index key: the awaited task, then the task that waits for it.
pub(crate) fn waiting(awaited: TaskId, waiter: TaskId) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(&awaited.to_bytes());
    key.extend_from_slice(&waiter.to_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_points_cut_numbered_names_evenly() {
        let names: Vec<Vec<u8>> = (0..100_000)
            .map(|n| strings(&["tenant", &format!("item-{n:06}"), "ads", "v1"]))
            .collect();
        let points = split_points(&names[0], &names[names.len() - 1], 8);
        assert!(points.len() >= 4, "{} points", points.len());
        assert!(points.windows(2).all(|pair| pair[0] < pair[1]));
        let mut bounds = vec![names[0].clone()];
        bounds.extend(points.iter().cloned());
        let largest_run = bounds
            .iter()
            .enumerate()
            .map(|(i, start)| {
                names
                    .iter()
                    .filter(|name| {
                        *name >= start && bounds.get(i + 1).is_none_or(|end| *name < end)
                    })
                    .count()
            })
            .max();
        assert!(largest_run < Some(40_000), "{largest_run:?}");
    }

    #[test]
    fn split_points_stay_inside_the_range() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"a", b"a"),
            (b"a", b"a\0\0\0\0\0\x01"),
            (b"abc", b"abd"),
            (b"", b"\xff\xff\xff\xff\xff"),
        ];
        for (first, last) in cases {
            let points = split_points(first, last, 8);
            assert!(points.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(
                points
                    .iter()
                    .all(|p| p.as_slice() > first && p.as_slice() <= last),
                "{first:?} {last:?} {points:?}"
            );
        }
        assert!(split_points(b"a", b"a", 8).is_empty());
    }

    #[test]
    fn strings_neither_collide_nor_interleave() {
        let a = strings(&["a", "bc"]);
        let b = strings(&["ab", "c"]);
        assert_ne!(a, b);
        assert!(!b.starts_with(&strings(&["a"])));
        let mut names = ["ep-9", "ep-10", "ep-1", "ep", "e\u{0}p", "f"];
        let mut encoded: Vec<Vec<u8>> = names.iter().map(|n| strings(&[n])).collect();
        names.sort();
        encoded.sort();
        let expected: Vec<Vec<u8>> = names.iter().map(|n| strings(&[n])).collect();
        assert_eq!(encoded, expected, "byte order is string order");
    }

    #[test]
    fn numeric_keys_sort_by_time() {
        let id = TaskId::generate();
        assert!(ready(0, "t", Timestamp(5), id) < ready(0, "t", Timestamp(6), id));
        assert!(ready(0, "u", Timestamp(9), id) < ready(1, "t", Timestamp(1), id));
        assert!(ready(0, "t", Timestamp(9), id) < ready(0, "tu", Timestamp(1), id));
        let key = ready(2, "t", Timestamp(7), id);
        assert_eq!(ready_tenant_of(&key), Some(&ready_tenant(2, "t")[..]));
        assert!(key <= ready_upto(&ready_tenant(2, "t"), Timestamp(7)));
        assert!(lease(Timestamp(255), id) < lease(Timestamp(256), id));
        assert_eq!(trailing_id(&lease(Timestamp(1), id)), Some(id));
        assert_eq!(
            ready_at_of(&ready(2, "tenant", Timestamp(77), id)),
            Some(Timestamp(77))
        );
        assert_eq!(
            lease_expiry_of(&lease(Timestamp(78), id)),
            Some(Timestamp(78))
        );
    }

    #[test]
    fn after_prefix_bounds_the_prefix() {
        assert_eq!(after_prefix(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(after_prefix(&[1, 0xff]), Some(vec![2]));
        assert_eq!(after_prefix(&[0xff]), None);
    }
}
