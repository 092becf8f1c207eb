//! The task operations, run by the committer against a [`Stage`]: each reads what it needs,
//! checks it, then writes the record, its index entries and its history.

use std::collections::HashMap;
use std::ops::Bound;

use task_core::fair::{ProductRoom, ReadyEntry, TenantQueue, take_turns};
use task_core::ids::{TaskId, TenantId};
use task_core::machine::{Authority, TaskEvent, created, transition_all};
use task_core::stats::StatsDelta;
use task_core::store::{
    ClaimRequest, CreateOutcome, NewTask, StoreError, awaited_by, check_awaited,
};
use task_core::task::{HistoryEntry, Status, Task, TaskKey};
use task_core::time::Timestamp;

use crate::keys;
use crate::layout::Tk;
use crate::record::{StoredTask, task_not_found};
use crate::stage::Stage;

/// Whether an error only concerns one task of a scan (refused or vanished): skip it.
fn is_skippable(err: &StoreError) -> bool {
    matches!(err, StoreError::Transition(_) | StoreError::NotFound { .. })
}

impl Stage<'_> {
    /// Writes `task` (new when `old` is None) with its history `entries`, keeping every index
    /// in step. Index keys that do not change are not rewritten.
    fn write_task(
        &mut self,
        old: Option<&StoredTask>,
        task: Task,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        let id = task.id;
        let rank = task.priority.rank();
        let tenant = task.key.tenant.as_str();
        if let Some(old) = old
            && let (Some(_), Some(at)) = (old.ready_seq, old.task.ready_at())
        {
            self.del(
                Tk::Ready,
                keys::ready(old.task.priority.rank(), tenant, at, id),
            );
        }
        let ready_seq = match task.ready_at() {
            Some(at) => {
                let seq = self
                    .trees
                    .db
                    .generate_id()
                    .map_err(|e| self.ctx.backend("numbering the ready queue", e))?;
                self.put(
                    Tk::Ready,
                    keys::ready(rank, tenant, at, id),
                    task.key.product.as_str().as_bytes(),
                );
                Some(seq)
            }
            None => None,
        };
        let old_waits = old.map(|o| o.task.waiting_for()).unwrap_or_default();
        let parked = old_waits != task.waiting_for();
        if parked {
            for awaited in old_waits {
                self.del(Tk::Waiting, keys::waiting(*awaited, id));
            }
            for awaited in task.waiting_for() {
                self.put(Tk::Waiting, keys::waiting(*awaited, id), &[] as &[u8]);
            }
        }
        let old_lease = old.and_then(|o| o.task.lease()).map(|l| l.expires_at);
        let new_lease = task.lease().map(|l| l.expires_at);
        if old_lease != new_lease {
            if let Some(at) = old_lease {
                self.del(Tk::Leases, keys::lease(at, id));
            }
            if let Some(at) = new_lease {
                // The product, to count each product's running tasks.
                self.put(
                    Tk::Leases,
                    keys::lease(at, id),
                    task.key.product.as_str().as_bytes(),
                );
            }
        }
        let was_active = old.is_some_and(|o| o.task.status().is_active());
        let is_active = task.status().is_active();
        if is_active != was_active || old.is_none() {
            let natural = keys::task_key(&task.key);
            if is_active {
                self.put(Tk::Active, natural.clone(), &id.to_bytes()[..]);
            } else if self.get(Tk::Active, &natural)?.as_deref() == Some(&id.to_bytes()[..]) {
                self.del(Tk::Active, natural.clone());
            }
            if let (false, Some(at)) = (is_active, task.finished_at) {
                self.put(Tk::Finished, keys::finished(at, id), &[] as &[u8]);
            }
            if old.is_none() {
                self.put(Tk::Latest, natural, &id.to_bytes()[..]);
                let tenant = keys::strings(&[task.key.tenant.as_str()]);
                self.put(Tk::ByTenant, keys::with_id(tenant, id), &[] as &[u8]);
                let item =
                    keys::strings(&[task.key.tenant.as_str(), task.key.inventory_id.as_str()]);
                self.put(Tk::ByItem, keys::with_id(item, id), &[] as &[u8]);
            }
        }
        self.record_deliveries(&task, entries)?;
        self.add_stats(&task.key, StatsDelta::of_write(old.map(|o| &o.task), &task))?;
        let ended = was_active && !is_active;
        let (now, waits) = (task.updated_at, !task.waiting_for().is_empty());
        self.store(StoredTask { task, ready_seq }, entries);
        // The write that ends a task wakes, in the same commit, the tasks that waited only
        // for it; a wait for tasks that have all ended already is over as soon as it is
        // written.
        if ended {
            for waiter in self.waiters_of(id)? {
                self.wake_if_ready(waiter, now)?;
            }
        }
        if parked && waits {
            self.wake_if_ready(id, now)?;
        }
        Ok(())
    }

    /// The tasks waiting for task `awaited`.
    fn waiters_of(&self, awaited: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let from = keys::waiting(awaited, TaskId::from_bytes([0; 16]));
        let to = keys::waiting(awaited, TaskId::from_bytes([0xff; 16]));
        let mut waiters = Vec::new();
        for entry in self.range(Tk::Waiting, (Bound::Included(from), Bound::Included(to))) {
            let (key, _) = entry?;
            let waiter = keys::trailing_id(&key).ok_or_else(|| {
                self.ctx
                    .corrupt(Tk::Waiting.name(), &key, "malformed waiting key")
            })?;
            waiters.push(waiter);
        }
        Ok(waiters)
    }

    /// Makes `waiter` claimable if every task it waits for has ended (or was pruned).
    fn wake_if_ready(&mut self, waiter: TaskId, now: Timestamp) -> Result<(), StoreError> {
        let Some(stored) = self.load(waiter)? else {
            return Ok(());
        };
        let awaited = stored.task.waiting_for().to_vec();
        if awaited.is_empty() {
            return Ok(());
        }
        for id in &awaited {
            if self.load(*id)?.is_some_and(|t| t.task.status().is_active()) {
                return Ok(());
            }
        }
        let event = TaskEvent::WaitEnded { ended: awaited };
        match self.apply(waiter, Authority::System, &[event], now) {
            Ok(_) => Ok(()),
            Err(err) if is_skippable(&err) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Applies `events` to task `id` with `authority`: all of them or none.
    pub fn apply(
        &mut self,
        id: TaskId,
        authority: Authority,
        events: &[TaskEvent],
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let old = self.load(id)?.ok_or_else(|| task_not_found(id))?;
        if events.is_empty() {
            return Ok(old.task);
        }
        for awaited in awaited_by(events) {
            let found = self.load(*awaited)?.map(|t| t.task.key.tenant);
            check_awaited(&old.task.key.tenant, *awaited, found.as_ref())?;
        }
        let (task, entries) = transition_all(&old.task, events, authority, now)?;
        self.write_task(Some(&old), task.clone(), &entries)?;
        Ok(task)
    }

    /// Creates the batch's tasks, or finds the active task of each key.
    pub fn create(
        &mut self,
        batch: &[NewTask],
        now: Timestamp,
    ) -> Result<Vec<CreateOutcome>, StoreError> {
        let mut in_batch: HashMap<&TaskKey, usize> = HashMap::new();
        let mut outcomes: Vec<CreateOutcome> = Vec::with_capacity(batch.len());
        for new in batch {
            if let Some(&index) = in_batch.get(&new.key) {
                let task = outcomes[index].task.clone();
                outcomes.push(CreateOutcome {
                    task,
                    created: false,
                });
                continue;
            }
            let natural = keys::task_key(&new.key);
            if let Some(raw) = self.get(Tk::Active, &natural)? {
                let active = Tk::Active.name();
                let id = keys::trailing_id(&raw)
                    .ok_or_else(|| self.ctx.corrupt(active, &natural, "malformed task id"))?;
                let existing = self.load(id)?.ok_or_else(|| {
                    self.ctx
                        .corrupt(active, &natural, format!("missing task {id}"))
                })?;
                in_batch.insert(&new.key, outcomes.len());
                outcomes.push(CreateOutcome {
                    task: existing.task,
                    created: false,
                });
                continue;
            }
            let made = created(TaskId::generate(), new.key.clone(), new.priority, now);
            self.write_task(None, made.task.clone(), std::slice::from_ref(&made.entry))?;
            in_batch.insert(&new.key, outcomes.len());
            outcomes.push(CreateOutcome {
                task: made.task,
                created: true,
            });
        }
        Ok(outcomes)
    }

    /// Asks to cancel a task of `tenant`. Returns the task and whether it changed.
    pub fn cancel(
        &mut self,
        tenant: &TenantId,
        id: TaskId,
        now: Timestamp,
    ) -> Result<(Task, bool), StoreError> {
        let stored = self
            .load(id)?
            .filter(|t| t.task.key.tenant == *tenant)
            .ok_or_else(|| task_not_found(id))?;
        if !stored.task.status().is_active() {
            return Err(StoreError::Conflict(format!(
                "task {id} is already {} and cannot be cancelled",
                stored.task.status()
            )));
        }
        if stored.task.cancel_requested() {
            return Ok((stored.task, false));
        }
        let task = self.apply(id, Authority::System, &[TaskEvent::CancelRequested], now)?;
        Ok((task, true))
    }

    /// Moves every task whose lease expired at `now` back to pending (or cancelled).
    pub fn requeue_expired(&mut self, now: Timestamp) -> Result<Vec<Task>, StoreError> {
        let upto = keys::lease(now, TaskId::from_bytes([0xff; 16]));
        let mut ids = Vec::new();
        for entry in self.range(Tk::Leases, (Bound::Unbounded, Bound::Included(upto))) {
            let (key, _) = entry?;
            let id = keys::trailing_id(&key).ok_or_else(|| {
                self.ctx
                    .corrupt(Tk::Leases.name(), &key, "malformed lease key")
            })?;
            ids.push(id);
        }
        let mut moved = Vec::with_capacity(ids.len());
        for id in ids {
            match self.apply(id, Authority::System, &[TaskEvent::LeaseExpired], now) {
                Ok(task) => moved.push(task),
                Err(err) if is_skippable(&err) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(moved)
    }

    /// How many tasks of each product hold an unexpired lease at `now`.
    fn running(&self, now: Timestamp) -> Result<HashMap<Vec<u8>, usize>, StoreError> {
        let from = keys::lease(now, TaskId::from_bytes([0xff; 16]));
        let mut running: HashMap<Vec<u8>, usize> = HashMap::new();
        for entry in self.range(Tk::Leases, (Bound::Excluded(from), Bound::Unbounded)) {
            let (_, product) = entry?;
            *running.entry(product.to_vec()).or_default() += 1;
        }
        Ok(running)
    }

    /// The (rank, tenant) prefixes of the tenants with pending tasks of `rank`.
    fn ready_tenants(&self, rank: u8) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tenants = Vec::new();
        let mut from = Bound::Included(vec![rank]);
        let end = Bound::Excluded(vec![rank + 1]);
        while let Some(entry) = self.range(Tk::Ready, (from, end.clone())).next() {
            let (key, _) = entry?;
            let prefix = keys::ready_tenant_of(&key)
                .ok_or_else(|| {
                    self.ctx
                        .corrupt(Tk::Ready.name(), &key, "malformed ready key")
                })?
                .to_vec();
            let Some(next) = keys::after_prefix(&prefix) else {
                tenants.push(prefix);
                break;
            };
            tenants.push(prefix);
            from = Bound::Included(next);
        }
        Ok(tenants)
    }

    /// Up to `request.max` ready ids claimable at `now`: priority by priority in the
    /// requested order, tenants taking turns within each, products within their room (see
    /// `task_core::fair`). Returns each with its tenant's queue prefix.
    fn candidates(
        &self,
        request: &ClaimRequest,
        now: Timestamp,
    ) -> Result<Vec<(Vec<u8>, TaskId)>, StoreError> {
        let running = self.running(now)?;
        let mut room = ProductRoom::new(request, |product| {
            running
                .get(product.as_str().as_bytes())
                .copied()
                .unwrap_or(0)
        });
        let mut picked = Vec::new();
        for priority in request.priority_order {
            let left = request.max.saturating_sub(picked.len());
            if left == 0 {
                break;
            }
            let mut queues = Vec::new();
            for prefix in self.ready_tenants(priority.rank())? {
                let range = (
                    Bound::Included(prefix.clone()),
                    Bound::Included(keys::ready_upto(&prefix, now)),
                );
                let entries = self.range(Tk::Ready, range).map(|entry| {
                    let (key, product) = entry?;
                    let (Some(ready_at), Some(id)) =
                        (keys::ready_at_of(&key), keys::trailing_id(&key))
                    else {
                        return Err(self.ctx.corrupt(
                            Tk::Ready.name(),
                            &key,
                            "malformed ready key",
                        ));
                    };
                    let product = String::from_utf8_lossy(&product).into_owned();
                    Ok(ReadyEntry {
                        ready_at,
                        id,
                        product,
                    })
                });
                queues.push(TenantQueue {
                    served: self.turns().served(&prefix),
                    tenant: prefix,
                    entries,
                });
            }
            picked.extend(take_turns(queues, left, &mut room)?);
        }
        Ok(picked)
    }

    /// Requeues expired leases, then claims up to `request.max` ready tasks.
    /// Returns (requeued or given up, claimed).
    pub fn claim(
        &mut self,
        request: &ClaimRequest,
        now: Timestamp,
    ) -> Result<(Vec<Task>, Vec<Task>), StoreError> {
        let mut requeued = self.requeue_expired(now)?;
        let mut claimed = Vec::new();
        let picked = self.candidates(request, now)?;
        self.turns_mut()
            .record(picked.iter().map(|(tenant, _)| tenant));
        for (_, id) in picked {
            match self.claim_task(id, request, now) {
                Ok(task) if task.status() == Status::Processing => claimed.push(task),
                // Given up (no attempt left): written and announced, not handed to the worker.
                Ok(task) => requeued.push(task),
                Err(err) if is_skippable(&err) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok((requeued, claimed))
    }

    /// Claims task `id` (starting its first step when the request asks): one record write
    /// and one history value.
    fn claim_task(
        &mut self,
        id: TaskId,
        request: &ClaimRequest,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        let old = self.load(id)?.ok_or_else(|| task_not_found(id))?;
        let (task, entries) = request.transition(&old.task, now)?;
        self.write_task(Some(&old), task.clone(), &entries)?;
        Ok(task)
    }
}
