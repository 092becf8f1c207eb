//! Claims, lease expiry and wake-up times, driven by the ready-queue and lease indexes.

use std::collections::HashSet;

use task_core::ids::TaskId;
use task_core::machine::{Authority, TaskEvent};
use task_core::store::{ClaimRequest, StoreError};
use task_core::task::Task;
use task_core::time::Timestamp;

use crate::Inner;
use crate::keys;
use crate::open::tree;
use crate::txn::is_skippable;

/// How many times a claim rescans when concurrent writers took its candidates.
const CLAIM_ROUNDS: usize = 3;

impl Inner {
    /// Ids of the tasks whose lease expired at `now`, oldest expiry first.
    fn expired_leases(&self, now: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        let upto = keys::lease(now, TaskId::from_bytes([0xff; 16]));
        let mut ids = Vec::new();
        for entry in self.trees.leases.range(..=upto) {
            let (key, _) = entry.map_err(|e| self.ctx.backend("scanning leases", e))?;
            let id = keys::trailing_id(&key)
                .ok_or_else(|| self.ctx.corrupt(tree::LEASES, &key, "malformed lease key"))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Moves every task whose lease expired back to pending (or cancelled), in one transaction.
    pub(crate) fn requeue_expired_sync(&self, now: Timestamp) -> Result<Vec<Task>, StoreError> {
        let ids = self.expired_leases(now)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.trees
            .transaction(&self.ctx, "requeueing expired leases", |tx| {
                let mut moved = Vec::with_capacity(ids.len());
                for id in &ids {
                    match tx.apply(*id, Authority::System, &[TaskEvent::LeaseExpired], now) {
                        Ok(task) => moved.push(task),
                        Err(err) if is_skippable(&err) => continue,
                        Err(err) => return Err(err),
                    }
                }
                Ok(moved)
            })
    }

    /// Up to `want` ready-queue entries claimable at `now`, in the requested order.
    fn candidates(
        &self,
        request: &ClaimRequest,
        now: Timestamp,
        want: usize,
        taken: &HashSet<TaskId>,
    ) -> Result<Vec<(Vec<u8>, TaskId)>, StoreError> {
        let mut picked: Vec<(Vec<u8>, TaskId)> = Vec::with_capacity(want);
        for priority in request.priority_order {
            let rank = priority.rank();
            for entry in self
                .trees
                .ready
                .range(vec![rank]..=keys::ready_upto(rank, now))
            {
                if picked.len() == want {
                    return Ok(picked);
                }
                let (key, product) =
                    entry.map_err(|e| self.ctx.backend("scanning the ready queue", e))?;
                if request
                    .exclude_products
                    .iter()
                    .any(|p| p.as_str().as_bytes() == product.as_ref())
                {
                    continue;
                }
                let id = keys::trailing_id(&key)
                    .ok_or_else(|| self.ctx.corrupt(tree::READY, &key, "malformed ready key"))?;
                if taken.contains(&id) || picked.iter().any(|(_, p)| *p == id) {
                    continue;
                }
                picked.push((key.to_vec(), id));
            }
        }
        Ok(picked)
    }

    /// Requeues expired leases, then claims up to `request.max` ready tasks.
    /// Returns (requeued, claimed).
    pub(crate) fn claim_sync(
        &self,
        request: &ClaimRequest,
        now: Timestamp,
    ) -> Result<(Vec<Task>, Vec<Task>), StoreError> {
        let _guard = self.scan_guard();
        let requeued = self.requeue_expired_sync(now)?;
        let lease_ms = u64::try_from(request.lease.as_millis()).unwrap_or(u64::MAX);
        let event = TaskEvent::Claimed {
            worker: request.worker.clone(),
            lease_ms,
        };
        let mut claimed: Vec<Task> = Vec::new();
        let mut taken = HashSet::new();
        for _ in 0..CLAIM_ROUNDS {
            let want = request.max.saturating_sub(claimed.len());
            if want == 0 {
                break;
            }
            let candidates = self.candidates(request, now, want, &taken)?;
            if candidates.is_empty() {
                break;
            }
            let got = self.trees.transaction(&self.ctx, "claiming tasks", |tx| {
                let mut got = Vec::with_capacity(candidates.len());
                for (key, id) in &candidates {
                    if tx.ready.get(key)?.is_none() {
                        continue;
                    }
                    match tx.apply(*id, Authority::System, std::slice::from_ref(&event), now) {
                        Ok(task) => got.push(task),
                        Err(err) if is_skippable(&err) => continue,
                        Err(err) => return Err(err),
                    }
                }
                Ok(got)
            })?;
            let lost = candidates.len() - got.len();
            taken.extend(candidates.iter().map(|(_, id)| *id));
            claimed.extend(got);
            if lost == 0 {
                break;
            }
        }
        Ok((requeued, claimed))
    }

    /// The earliest ready time of a pending task or expiry of a lease.
    pub(crate) fn next_wakeup_sync(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut earliest: Option<Timestamp> = None;
        for rank in 0..3u8 {
            if let Some(entry) = self.trees.ready.scan_prefix([rank]).next() {
                let (key, _) = entry.map_err(|e| self.ctx.backend("reading the ready queue", e))?;
                let at = keys::ready_at_of(&key)
                    .ok_or_else(|| self.ctx.corrupt(tree::READY, &key, "malformed ready key"))?;
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        if let Some(entry) = self.trees.leases.iter().next() {
            let (key, _) = entry.map_err(|e| self.ctx.backend("reading leases", e))?;
            let at = keys::lease_expiry_of(&key)
                .ok_or_else(|| self.ctx.corrupt(tree::LEASES, &key, "malformed lease key"))?;
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        Ok(earliest)
    }
}
