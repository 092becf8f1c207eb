//! Retention: finished tasks older than a cut-off are deleted with their history and listing
//! entries, so that a long-lived store does not list and keep on disk every task it ever ran.
//! Catalog items and results stay. Runs in the committer, in bounded rounds. In a steady run
//! it also bounds resident memory, since sled 0.34 reuses the pages that deletions free; it
//! does not give back the memory of a peak the store once held (see BENCHMARKS.md).

use std::ops::Bound;

use task_core::ids::TaskId;
use task_core::stats::StatsDelta;
use task_core::store::StoreError;
use task_core::time::Timestamp;

use crate::committer::{Done, Op};
use crate::keys;
use crate::layout::{Tk, tree};
use crate::stage::Stage;
use crate::{SledStore, unexpected};

/// At most this many tasks are deleted by one committer round, so that a large backlog of
/// expired tasks never holds up other writes for long.
pub(crate) const PRUNE_ROUND: usize = 1024;

impl Stage<'_> {
    /// Deletes up to `max` tasks that finished before `before`; returns their ids.
    pub fn prune_finished(
        &mut self,
        before: Timestamp,
        max: usize,
    ) -> Result<Vec<TaskId>, StoreError> {
        let upto = keys::finished(before, TaskId::from_bytes([0; 16]));
        let mut expired = Vec::new();
        for entry in self.range(Tk::Finished, (Bound::Unbounded, Bound::Excluded(upto))) {
            let (key, _) = entry?;
            if expired.len() == max {
                break;
            }
            let id = keys::trailing_id(&key)
                .ok_or_else(|| self.ctx.corrupt(tree::FINISHED, &key, "malformed key"))?;
            expired.push((key, id));
        }
        let mut pruned = Vec::with_capacity(expired.len());
        for (key, id) in expired {
            self.del(Tk::Finished, key);
            let Some(stored) = self.load(id)? else {
                continue;
            };
            let task = stored.task;
            if task.status().is_active() {
                return Err(self.ctx.corrupt(
                    tree::FINISHED,
                    &id.to_bytes(),
                    format!("task {id} is listed as finished but is {}", task.status()),
                ));
            }
            let tenant = keys::strings(&[task.key.tenant.as_str()]);
            self.del(Tk::ByTenant, keys::with_id(tenant, id));
            let item = keys::strings(&[task.key.tenant.as_str(), task.key.inventory_id.as_str()]);
            self.del(Tk::ByItem, keys::with_id(item, id));
            let natural = keys::task_key(&task.key);
            if self.get(Tk::Latest, &natural)?.as_deref() == Some(&id.to_bytes()[..]) {
                self.del(Tk::Latest, natural);
            }
            self.add_stats(&task.key, StatsDelta::of_removal(&task))?;
            self.remove_task(id);
            pruned.push(id);
        }
        Ok(pruned)
    }
}

impl SledStore {
    /// Deletes every task that finished (done, failed or cancelled) before `before`, with its
    /// history and listing entries; catalog items and results stay, and `latest_task` of a key
    /// whose latest task was deleted finds nothing. Returns how many were deleted. Stores
    /// opened with a retention ([`SledOptions::with_retention`](crate::SledOptions::with_retention))
    /// do this on their own about once a second.
    pub async fn prune_finished_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.prune_in_rounds(|| Op::Prune(before)).await
    }

    /// Deletes every webhook delivery that ended before `before` (delivered, or failed, by
    /// [`Delivery::ended_at`]); pending deliveries stay, however old, since they still go out.
    /// Returns how many were deleted. Stores opened with a retention do this too, with the same
    /// cut-off as for tasks.
    ///
    /// [`Delivery::ended_at`]: task_core::webhooks::Delivery::ended_at
    pub async fn prune_ended_deliveries_before(
        &self,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        self.prune_in_rounds(|| Op::PruneDeliveries(before)).await
    }

    /// Writes `op()` round after round until a round deletes fewer than [`PRUNE_ROUND`];
    /// returns how many were deleted in all.
    async fn prune_in_rounds(&self, op: impl Fn() -> Op) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            match self.live()?.write(op()).await? {
                Done::Pruned(count) => {
                    total += count;
                    if count < PRUNE_ROUND {
                        return Ok(total);
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
    }
}
