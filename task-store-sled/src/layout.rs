//! The database layout (format 3): one sled tree holds every persistent keyspace, each under
//! its own one-byte key prefix, so that a group of writes commits as one `Tree::apply_batch`
//! (atomic on disk and for readers) instead of a transaction over several trees. The ready
//! queue and the lease index live in memory: they are derived from the records of the active
//! tasks, rebuilt on open, and would otherwise cost four key writes per task.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use sled::IVec;
use task_core::fair::Turns;
use task_core::time::Timestamp;

use crate::deferred::Deferred;
use crate::keys;
use crate::overlay::{Overlaid, Overlay, full_bounds};

/// Keyspace and tree names (the keyspace names appear in error messages).
pub(crate) mod tree {
    /// Format marker (its own sled tree).
    pub const META: &str = "meta";
    /// The sled tree holding every persistent keyspace.
    pub const DATA: &str = "data";
    /// Task records by id, each with its history.
    pub const TASKS: &str = "tasks";
    /// Ready queue (in memory): (priority rank, tenant, ready-at, id) -> product.
    pub const READY: &str = "ready";
    /// Active tasks by natural key -> id.
    pub const ACTIVE: &str = "active";
    /// Most recent task by natural key -> id.
    pub const LATEST: &str = "latest";
    /// Leases (in memory) by (expires-at, id) -> product.
    pub const LEASES: &str = "leases";
    /// Who waits for whom (in memory): (awaited id, waiting task id) -> nothing.
    pub const WAITING: &str = "waiting";
    /// Per-tenant listing: (tenant, id).
    pub const BY_TENANT: &str = "by_tenant";
    /// Per-item listing: (tenant, inventory id, id).
    pub const BY_ITEM: &str = "by_item";
    /// Catalog items: (tenant, inventory id) -> item.
    pub const ITEMS: &str = "items";
    /// Catalog items by parent: (tenant, parent id, inventory id) -> inventory id.
    pub const CHILDREN: &str = "children";
    /// Results: (tenant, product, inventory id, version) -> result.
    pub const RESULTS: &str = "results";
    /// Cache of step outputs.
    pub const CACHE: &str = "cache";
    /// Finished tasks by (finished-at, id), for retention.
    pub const FINISHED: &str = "finished";
    /// Webhook subscriptions: (tenant, webhook id) -> subscription.
    pub const WEBHOOKS: &str = "webhooks";
    /// Webhook deliveries: (webhook id, delivery id) -> delivery.
    pub const DELIVERIES: &str = "deliveries";
    /// Pending deliveries by (due time, webhook id, delivery id).
    pub const OUTBOX: &str = "outbox";
    /// Ended (delivered or failed) deliveries by (ended-at, webhook id, delivery id), for
    /// retention.
    pub const ENDED: &str = "ended_deliveries";
    /// Status counts: (tenant, product, status) -> how many tasks (u64, big-endian).
    pub const COUNTS: &str = "counts";
    /// Per-minute activity: (minute, tenant, product) -> what happened in it.
    pub const ACTIVITY: &str = "activity";
    /// History, one value per call (formats 1 and 2 only; format 3 keeps it in the record).
    pub const HISTORY: &str = "history";
    /// The sled trees of formats 1 and 2, one per keyspace.
    pub const LEGACY: [&str; 11] = [
        TASKS, READY, ACTIVE, LATEST, LEASES, BY_TENANT, BY_ITEM, HISTORY, ITEMS, RESULTS, CACHE,
    ];
}

/// A keyspace the committer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tk {
    /// [`tree::TASKS`].
    Tasks,
    /// [`tree::READY`], in memory.
    Ready,
    /// [`tree::ACTIVE`].
    Active,
    /// [`tree::LATEST`].
    Latest,
    /// [`tree::LEASES`], in memory.
    Leases,
    /// [`tree::WAITING`], in memory.
    Waiting,
    /// [`tree::BY_TENANT`].
    ByTenant,
    /// [`tree::BY_ITEM`].
    ByItem,
    /// [`tree::ITEMS`].
    Items,
    /// [`tree::RESULTS`].
    Results,
    /// [`tree::CACHE`].
    Cache,
    /// [`tree::FINISHED`].
    Finished,
    /// [`tree::WEBHOOKS`].
    Webhooks,
    /// [`tree::DELIVERIES`].
    Deliveries,
    /// [`tree::OUTBOX`].
    Outbox,
    /// [`tree::COUNTS`].
    Counts,
    /// [`tree::ACTIVITY`].
    Activity,
    /// [`tree::CHILDREN`].
    Children,
    /// [`tree::ENDED`].
    Ended,
}

impl Tk {
    /// How many there are.
    pub const COUNT: usize = 19;
    /// The keyspaces stored in sled, in prefix order.
    pub const PERSISTENT: [Tk; 16] = [
        Tk::Active,
        Tk::Items,
        Tk::Deliveries,
        Tk::Ended,
        Tk::Finished,
        Tk::ByItem,
        Tk::Cache,
        Tk::Latest,
        Tk::Activity,
        Tk::ByTenant,
        Tk::Outbox,
        Tk::Children,
        Tk::Results,
        Tk::Tasks,
        Tk::Counts,
        Tk::Webhooks,
    ];

    /// The keyspace's name.
    pub fn name(self) -> &'static str {
        match self {
            Tk::Tasks => tree::TASKS,
            Tk::Ready => tree::READY,
            Tk::Active => tree::ACTIVE,
            Tk::Latest => tree::LATEST,
            Tk::Leases => tree::LEASES,
            Tk::Waiting => tree::WAITING,
            Tk::ByTenant => tree::BY_TENANT,
            Tk::ByItem => tree::BY_ITEM,
            Tk::Items => tree::ITEMS,
            Tk::Results => tree::RESULTS,
            Tk::Cache => tree::CACHE,
            Tk::Finished => tree::FINISHED,
            Tk::Webhooks => tree::WEBHOOKS,
            Tk::Deliveries => tree::DELIVERIES,
            Tk::Outbox => tree::OUTBOX,
            Tk::Counts => tree::COUNTS,
            Tk::Activity => tree::ACTIVITY,
            Tk::Children => tree::CHILDREN,
            Tk::Ended => tree::ENDED,
        }
    }

    /// The key prefix in the data tree, or None for the in-memory queues.
    pub fn prefix(self) -> Option<u8> {
        Some(match self {
            Tk::Active => b'A',
            Tk::Items => b'C',
            Tk::Finished => b'F',
            Tk::ByItem => b'I',
            Tk::Cache => b'K',
            Tk::Latest => b'L',
            Tk::ByTenant => b'N',
            Tk::Results => b'R',
            Tk::Tasks => b'T',
            Tk::Webhooks => b'W',
            Tk::Deliveries => b'D',
            Tk::Outbox => b'O',
            Tk::Counts => b'U',
            Tk::Activity => b'M',
            Tk::Children => b'P',
            Tk::Ended => b'E',
            Tk::Ready | Tk::Leases | Tk::Waiting => return None,
        })
    }

    /// Whether the flusher holds this keyspace's durable writes back from sled until the next
    /// checkpoint (see `deferred`): the task records, and the status counts and activity
    /// buckets, all rewritten by most groups.
    pub fn held_back(self) -> bool {
        matches!(self, Tk::Tasks | Tk::Counts | Tk::Activity)
    }

    /// The keyspace stored under `prefix`.
    pub fn of_prefix(prefix: u8) -> Option<Tk> {
        Tk::PERSISTENT
            .into_iter()
            .find(|tk| tk.prefix() == Some(prefix))
    }

    /// What a failed scan of this keyspace was doing, for errors.
    pub fn scan_operation(self) -> &'static str {
        match self {
            Tk::Ready => "scanning the ready queue",
            Tk::Leases => "scanning leases",
            Tk::Waiting => "scanning waiting tasks",
            Tk::Active => "scanning active tasks",
            _ => "scanning",
        }
    }
}

/// `key` with the keyspace prefix in front.
pub(crate) fn prefixed(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(key.len() + 1);
    full.push(prefix);
    full.extend_from_slice(key);
    full
}

/// One entry of a scan, the key without its prefix.
pub(crate) type Entry = sled::Result<(Vec<u8>, IVec)>;

/// One persistent keyspace: reads with keys as the keyspace sees them (no prefix). Reads of
/// task records also see the records held back from sled until the next checkpoint, and with
/// buffered durability reads see the committed writes not yet applied (they are acknowledged).
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a sled::Tree,
    prefix: u8,
    deferred: Option<&'a Deferred>,
    pending: Option<&'a Mutex<Overlay>>,
}

impl<'a> View<'a> {
    /// The value at `key`.
    pub fn get(&self, key: &[u8]) -> sled::Result<Option<IVec>> {
        if let Some(pending) = self.pending {
            let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(value) = pending.get(self.prefix, key) {
                return Ok(value);
            }
        }
        let full = prefixed(self.prefix, key);
        if let Some(held) = self.deferred.and_then(|deferred| deferred.get(&full)) {
            return Ok(held);
        }
        self.data.get(full)
    }

    /// The entries in `range`, in key order.
    pub fn range(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> impl Iterator<Item = Entry> + 'a {
        let pending = self
            .pending
            .map(|pending| {
                let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.range(self.prefix, &range)
            })
            .unwrap_or_default();
        let bounds = full_bounds(self.prefix, range);
        let held = self
            .deferred
            .map(|deferred| deferred.range(bounds.clone()))
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key[1..].to_vec(), value))
            .collect();
        let stored = self
            .data
            .range::<Vec<u8>, _>(bounds)
            .map(|entry| entry.map(|(key, value)| (key[1..].to_vec(), value)));
        // Newest on top: pending writes, then held records, then sled. Both merges stay lazy
        // over sled's entries.
        Overlaid::new(Overlaid::new(stored, held), pending)
    }

    /// The entries whose key starts with `prefix`.
    pub fn scan_prefix(&self, prefix: &[u8]) -> impl Iterator<Item = Entry> + 'a {
        let end = keys::after_prefix(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.range((Bound::Included(prefix.to_vec()), end))
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + 'a {
        self.range((Bound::Unbounded, Bound::Unbounded))
    }
}

/// The in-memory keyspaces: written only by the committer (through a stage), read by the
/// consistency checker.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    /// [`Tk::Ready`].
    pub ready: BTreeMap<Vec<u8>, IVec>,
    /// [`Tk::Leases`].
    pub leases: BTreeMap<Vec<u8>, IVec>,
    /// [`Tk::Waiting`].
    pub waiting: BTreeMap<Vec<u8>, IVec>,
    /// When each tenant (by its ready-queue prefix) was last served by a claim. Not
    /// persisted: after a restart every tenant starts even.
    pub turns: Turns<Vec<u8>>,
}

impl Queues {
    /// The in-memory keyspaces.
    pub const KEYSPACES: [Tk; 3] = [Tk::Ready, Tk::Leases, Tk::Waiting];

    /// The map of an in-memory keyspace.
    pub fn map(&self, tk: Tk) -> &BTreeMap<Vec<u8>, IVec> {
        match tk {
            Tk::Leases => &self.leases,
            Tk::Waiting => &self.waiting,
            _ => &self.ready,
        }
    }

    /// The mutable map of an in-memory keyspace.
    pub fn map_mut(&mut self, tk: Tk) -> &mut BTreeMap<Vec<u8>, IVec> {
        match tk {
            Tk::Leases => &mut self.leases,
            Tk::Waiting => &mut self.waiting,
            _ => &mut self.ready,
        }
    }

    /// The earliest ready time of a pending task or expiry of a lease.
    pub fn earliest(&self) -> Option<Timestamp> {
        // Each tenant's queue is ordered by ready time: the earliest is the first entry of a
        // tenant's queue.
        let mut ready = Vec::new();
        let mut from = Bound::Included(Vec::new());
        while let Some((key, _)) = self.ready.range((from, Bound::Unbounded)).next() {
            ready.extend(keys::ready_at_of(key));
            match keys::ready_tenant_of(key).and_then(keys::after_prefix) {
                Some(next) => from = Bound::Included(next),
                None => break,
            }
        }
        let ready = ready.into_iter();
        let lease = self
            .leases
            .keys()
            .next()
            .and_then(|key| keys::lease_expiry_of(key));
        ready.chain(lease).min()
    }
}

/// The open database.
pub(crate) struct Trees {
    /// The sled database (flushes, ids, size).
    pub db: sled::Db,
    /// The format marker.
    pub meta: sled::Tree,
    /// Every persistent keyspace.
    pub data: sled::Tree,
    /// The in-memory keyspaces.
    pub queues: Mutex<Queues>,
    /// Committed writes the flusher has not applied to sled yet.
    pub overlay: Mutex<Overlay>,
    /// Whether readers see [`Trees::overlay`] (buffered durability, where committed writes
    /// are acknowledged), not only what is durable.
    pub reads_pending: bool,
    /// Durable task records held back from sled until the next checkpoint.
    pub deferred: Deferred,
    /// [`Queues::earliest`] as of the last commit, for `next_wakeup` without the queue lock.
    pub wakeup: Mutex<Option<Timestamp>>,
}

impl Trees {
    /// The persistent keyspace `tk` as readers see it (the in-memory ones are read through
    /// [`Trees::queues`]).
    pub fn view(&self, tk: Tk) -> View<'_> {
        self.view_with(tk, self.reads_pending)
    }

    /// The persistent keyspace `tk` as the committer sees it: every committed write, durable
    /// or not.
    pub fn committed_view(&self, tk: Tk) -> View<'_> {
        self.view_with(tk, true)
    }

    fn view_with(&self, tk: Tk, pending: bool) -> View<'_> {
        View {
            data: &self.data,
            // Only the stage asks for the queues, and it never asks for a view of them.
            prefix: tk.prefix().unwrap_or(0),
            deferred: tk.held_back().then_some(&self.deferred),
            pending: pending.then_some(&self.overlay),
        }
    }

    /// The in-memory keyspaces, locked.
    pub fn lock_queues(&self) -> MutexGuard<'_, Queues> {
        // Written only under the lock by whole maps operations: never half-updated.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writes on their way to sled, locked.
    pub fn lock_overlay(&self) -> MutexGuard<'_, Overlay> {
        // Changed only by whole-group operations under the lock.
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The earliest wake-up time published by the last commit.
    pub fn wakeup(&self) -> Option<Timestamp> {
        *self.wakeup.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the queues' earliest wake-up time.
    pub fn publish_wakeup(&self, queues: &Queues) {
        *self.wakeup.lock().unwrap_or_else(|p| p.into_inner()) = queues.earliest();
    }
}
