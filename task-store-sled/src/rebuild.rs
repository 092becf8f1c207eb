//! Rebuilding the in-memory ready queue and lease index on open, from the records of the
//! active tasks.
//!
//! On a cold page cache almost all of this time is spent waiting on the disk, one sled leaf at
//! a time. So several threads share the work: the active-task index is cut into runs
//! ([`keys::split_points`]), and each thread scans whole runs and reads their records, keeping
//! several reads in flight.

use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

use sled::IVec;
use task_core::store::StoreError;

use crate::error::Ctx;
use crate::keys;
use crate::layout::{Queues, Tk, Trees, tree};
use crate::overlay::full_bounds;
use crate::record::decode_head;

/// Threads reading at once.
const READERS: usize = 8;
/// Runs the index is cut into: more runs than readers, so one dense run does not leave the
/// others idle.
const RUNS: u32 = 64;

type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The ready queue and lease index of the active tasks.
pub(crate) fn rebuild_queues(ctx: &Ctx, trees: &Trees) -> Result<Queues, StoreError> {
    let active = trees.view(Tk::Active);
    let edge = |entry: Option<sled::Result<(Vec<u8>, IVec)>>| {
        entry
            .transpose()
            .map(|found| found.map(|(key, _)| key))
            .map_err(|e| ctx.backend(Tk::Active.scan_operation(), e))
    };
    // Nothing is pending at open: sled alone holds the index.
    let last_key = trees
        .data
        .range::<Vec<u8>, _>(full_bounds(
            Tk::Active.prefix().unwrap_or(b'A'),
            (Bound::Unbounded, Bound::Unbounded),
        ))
        .next_back()
        .map(|entry| entry.map(|(key, value)| (key[1..].to_vec(), value)));
    let (Some(first), Some(last)) = (edge(active.iter().next())?, edge(last_key)?) else {
        return Ok(Queues::default());
    };
    let runs = runs(keys::split_points(&first, &last, RUNS));
    let next_run = AtomicUsize::new(0);
    let parts = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS.min(runs.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut queues = Queues::default();
                    while let Some(run) = runs.get(next_run.fetch_add(1, Ordering::Relaxed)) {
                        add_run(ctx, trees, run.clone(), &mut queues)?;
                    }
                    Ok(queues)
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|reader| {
                reader
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Vec<Result<Queues, StoreError>>>()
    });
    let mut queues = Queues::default();
    for part in parts {
        let part = part?;
        queues.ready.extend(part.ready);
        queues.leases.extend(part.leases);
        queues.waiting.extend(part.waiting);
    }
    Ok(queues)
}

/// Disjoint ranges covering every key, cut at `points`.
fn runs(points: Vec<Vec<u8>>) -> Vec<KeyRange> {
    let mut runs = Vec::with_capacity(points.len() + 1);
    let mut start = Bound::Unbounded;
    for point in points {
        runs.push((start, Bound::Excluded(point.clone())));
        start = Bound::Included(point);
    }
    runs.push((start, Bound::Unbounded));
    runs
}

/// Adds the queue entries of the active tasks whose natural key is in `run`.
fn add_run(ctx: &Ctx, trees: &Trees, run: KeyRange, queues: &mut Queues) -> Result<(), StoreError> {
    let tasks = trees.view(Tk::Tasks);
    for entry in trees.view(Tk::Active).range(run) {
        let (key, raw) = entry.map_err(|e| ctx.backend(Tk::Active.scan_operation(), e))?;
        let id = keys::trailing_id(&raw)
            .ok_or_else(|| ctx.corrupt(tree::ACTIVE, &key, "malformed task id"))?;
        let record_key = id.to_bytes();
        let bytes = tasks
            .get(&record_key)
            .map_err(|e| ctx.backend("reading a task", e))?
            .ok_or_else(|| ctx.corrupt(tree::ACTIVE, &key, format!("missing task {id}")))?;
        let stored = decode_head(ctx, &record_key, &bytes)?;
        let task = &stored.task;
        match (task.ready_at(), stored.ready_seq) {
            (Some(at), Some(_)) => {
                let ready = keys::ready(task.priority.rank(), task.key.tenant.as_str(), at, id);
                let product = task.key.product.as_str().as_bytes();
                queues.ready.insert(ready, product.into());
            }
            (Some(_), None) => {
                return Err(ctx.corrupt(
                    tree::TASKS,
                    &record_key,
                    "pending without a queue position",
                ));
            }
            (None, _) => {}
        }
        for awaited in task.waiting_for() {
            queues
                .waiting
                .insert(keys::waiting(*awaited, id), IVec::default());
        }
        if let Some(lease) = task.lease() {
            queues.leases.insert(
                keys::lease(lease.expires_at, id),
                task.key.product.as_str().as_bytes().into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_every_key_once() {
        let points = vec![b"b".to_vec(), b"d".to_vec()];
        let runs = runs(points);
        for key in [b"a".as_slice(), b"b", b"c", b"d", b"z", b""] {
            let holders = runs
                .iter()
                .filter(|(start, end)| {
                    let after_start = match start {
                        Bound::Unbounded => true,
                        Bound::Included(s) => key >= s.as_slice(),
                        Bound::Excluded(s) => key > s.as_slice(),
                    };
                    let before_end = match end {
                        Bound::Unbounded => true,
                        Bound::Included(e) => key <= e.as_slice(),
                        Bound::Excluded(e) => key < e.as_slice(),
                    };
                    after_start && before_end
                })
                .count();
            assert_eq!(holders, 1, "{key:?}");
        }
        assert_eq!(super::runs(Vec::new()).len(), 1);
    }
}
