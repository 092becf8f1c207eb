//! Diagnostics: an index-consistency and invariant checker, and a raw dump of every keyspace.

use std::collections::BTreeMap;
use std::ops::Bound;

use task_core::store::StoreError;
use task_core::task::{HistoryEntry, Status, Step, Task, TaskState};

use crate::journal::SEQ_KEY;
use crate::layout::{Queues, Tk, tree};
use crate::overlay::Overlaid;
use crate::record::decode_record;
use crate::{SledStore, keys};

/// One key and value of a tree, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The tree.
    pub tree: &'static str,
    /// The key bytes.
    pub key: Vec<u8>,
    /// The value bytes.
    pub value: Vec<u8>,
}

/// At most this many problems are reported.
const MAX_PROBLEMS: usize = 100;

type Expected = BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The invariants every stored task satisfies, whatever happened before.
fn task_problems(task: &Task, history: &[HistoryEntry], problems: &mut Vec<String>) {
    let id = task.id;
    let mut bad = |what: &str| problems.push(format!("task {id}: {what}"));
    if task.attempt as u64 != task.epoch {
        bad("attempt differs from epoch (each claim raises both)");
    }
    for (index, checkpoint) in task.checkpoints.iter().enumerate() {
        if Step::ALL.get(index) != Some(&checkpoint.step) {
            bad("checkpoints are not the pipeline's steps in order");
        }
    }
    let finished = task.finished_at.is_some();
    match &task.state {
        TaskState::Pending { .. } if finished => bad("pending with a finish time"),
        TaskState::Processing { lease, .. } => {
            if finished {
                bad("processing with a finish time");
            }
            if lease.epoch != task.epoch || task.started_at.is_none() {
                bad("processing without a current lease or start time");
            }
        }
        TaskState::Done if task.checkpoints.len() != Step::ALL.len() => {
            bad("done without every checkpoint")
        }
        TaskState::Done | TaskState::Failed { .. } | TaskState::Cancelled if !finished => {
            bad("ended without a finish time")
        }
        _ => {}
    }
    match (history.first(), history.last()) {
        (Some(first), Some(last)) => {
            if first.event != "created" {
                bad("history does not start with created");
            }
            if last.to != task.status() {
                bad("history does not end in the task's status");
            }
        }
        _ => bad("no history"),
    }
    let claims = history.iter().filter(|e| e.event == "claimed").count();
    if claims != task.attempt as usize {
        bad("number of claims in history differs from attempt");
    }
    if history
        .windows(2)
        .any(|w| w[0].to != w[1].from.unwrap_or(Status::Pending))
    {
        bad("history entries do not chain");
    }
}

impl SledStore {
    /// Every key and value of the database, in keyspace then key order: the meta tree, the
    /// persistent keyspaces (keys without their prefix), then the in-memory ready queue and
    /// lease index (for diagnostics and tests). The journal position is left out.
    pub fn raw_dump(&self) -> Result<Vec<RawEntry>, StoreError> {
        let inner = &self.live()?;
        let ctx = &inner.ctx;
        let mut out = Vec::new();
        for entry in inner.trees.meta.iter() {
            let (key, value) = entry.map_err(|e| ctx.backend("dumping", e))?;
            out.push(RawEntry {
                tree: tree::META,
                key: key.to_vec(),
                value: value.to_vec(),
            });
        }
        let stored = inner
            .trees
            .data
            .iter()
            .map(|entry| entry.map(|(key, value)| (key.to_vec(), value)));
        let held = inner
            .trees
            .deferred
            .range((Bound::Unbounded, Bound::Unbounded));
        // With buffered durability the acknowledged writes not yet applied count as well.
        let pending = if inner.trees.reads_pending {
            inner.trees.lock_overlay().entries()
        } else {
            Vec::new()
        };
        for entry in Overlaid::new(Overlaid::new(stored, held), pending) {
            let (key, value) = entry.map_err(|e| ctx.backend("dumping", e))?;
            if key == SEQ_KEY {
                // The journal's bookkeeping, not data: it moves on at every open.
                continue;
            }
            let tk = key
                .first()
                .and_then(|p| Tk::of_prefix(*p))
                .ok_or_else(|| ctx.corrupt(tree::DATA, &key, "unknown key prefix"))?;
            out.push(RawEntry {
                tree: tk.name(),
                key: key[1..].to_vec(),
                value: value.to_vec(),
            });
        }
        let queues = inner.trees.lock_queues();
        for tk in Queues::KEYSPACES {
            for (key, value) in queues.map(tk) {
                out.push(RawEntry {
                    tree: tk.name(),
                    key: key.clone(),
                    value: value.to_vec(),
                });
            }
        }
        Ok(out)
    }

    /// Checks that every index (persistent or in memory) and the status counts agree with
    /// the task records (the children index with the catalog items) and
    /// that no task is in an impossible state. Returns the problems found (empty when
    /// consistent). Reads everything: meant for tests, recovery checks and support, not for
    /// hot paths. Run it while no call is in flight: it reads what sled holds, and a group
    /// being applied shows as missing entries until the flusher is done.
    pub fn check_consistency(&self) -> Result<Vec<String>, StoreError> {
        let inner = &self.live()?;
        let ctx = &inner.ctx;
        let mut problems = Vec::new();
        let mut expected: Expected = BTreeMap::new();
        let mut latest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let counts = crate::stats::count_records(ctx, &inner.trees)?
            .into_iter()
            .map(|(key, count)| (key, count.to_be_bytes().to_vec()))
            .collect();
        expected.insert(tree::COUNTS, counts);
        for entry in inner.trees.view(Tk::Tasks).iter() {
            let (key, value) = entry.map_err(|e| ctx.backend("checking", e))?;
            let (stored, history) = decode_record(ctx, &key, &value)?;
            let task = &stored.task;
            let id = task.id;
            if key.as_slice() != id.to_bytes() {
                problems.push(format!("task {id} stored under another key"));
            }
            let id_bytes = id.to_bytes().to_vec();
            let natural = keys::task_key(&task.key);
            match (task.ready_at(), stored.ready_seq) {
                (Some(at), Some(_)) => {
                    let k = keys::ready(task.priority.rank(), task.key.tenant.as_str(), at, id);
                    let v = task.key.product.as_str().as_bytes().to_vec();
                    expected.entry(tree::READY).or_default().insert(k, v);
                }
                (Some(_), None) => {
                    problems.push(format!("task {id}: pending without a queue position"))
                }
                _ => {}
            }
            if let Some(lease) = task.lease() {
                let k = keys::lease(lease.expires_at, id);
                let v = task.key.product.as_str().as_bytes().to_vec();
                expected.entry(tree::LEASES).or_default().insert(k, v);
            }
            for awaited in task.waiting_for() {
                let waiting = expected.entry(tree::WAITING).or_default();
                waiting.insert(keys::waiting(*awaited, id), Vec::new());
            }
            if task.status().is_active() {
                let active = expected.entry(tree::ACTIVE).or_default();
                if active.insert(natural.clone(), id_bytes.clone()).is_some() {
                    problems.push(format!("two active tasks for key {}", task.key));
                }
            } else if let Some(at) = task.finished_at {
                expected
                    .entry(tree::FINISHED)
                    .or_default()
                    .insert(keys::finished(at, id), Vec::new());
            }
            let newest = latest.entry(natural).or_default();
            if *newest < id_bytes {
                *newest = id_bytes.clone();
            }
            let tenant = keys::strings(&[task.key.tenant.as_str()]);
            expected
                .entry(tree::BY_TENANT)
                .or_default()
                .insert(keys::with_id(tenant, id), Vec::new());
            let item = keys::strings(&[task.key.tenant.as_str(), task.key.inventory_id.as_str()]);
            expected
                .entry(tree::BY_ITEM)
                .or_default()
                .insert(keys::with_id(item, id), Vec::new());
            task_problems(task, &history, &mut problems);
            if problems.len() >= MAX_PROBLEMS {
                return Ok(problems);
            }
        }
        expected.insert(tree::LATEST, latest);
        for entry in inner.trees.view(Tk::Items).iter() {
            let (key, value) = entry.map_err(|e| ctx.backend("checking", e))?;
            let item: task_core::catalog::CatalogItem =
                crate::codec::decode(ctx, tree::ITEMS, &key, &value)?;
            if let Some(parent) = &item.item.parent_id {
                let id = item.item.inventory_id.as_str();
                let k = keys::strings(&[item.item.tenant.as_str(), parent.as_str(), id]);
                let v = id.as_bytes().to_vec();
                expected.entry(tree::CHILDREN).or_default().insert(k, v);
            }
        }
        for entry in inner.trees.view(Tk::Deliveries).iter() {
            let (key, value) = entry.map_err(|e| ctx.backend("checking", e))?;
            let delivery: task_core::webhooks::Delivery =
                crate::codec::decode(ctx, tree::DELIVERIES, &key, &value)?;
            let (due, ended) = crate::webhooks::index_keys(&delivery);
            for (name, k) in [(tree::OUTBOX, due), (tree::ENDED, ended)] {
                if let Some(k) = k {
                    expected.entry(name).or_default().insert(k, Vec::new());
                }
            }
        }
        let mut compare = |name: &str, actual: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>| {
            let mut want = expected.remove(name).unwrap_or_default();
            for (key, value) in actual {
                match want.remove(&key) {
                    Some(v) if v == value => {}
                    Some(_) => problems.push(format!(
                        "{name}: entry {} points elsewhere",
                        keys::printable(&key)
                    )),
                    None => problems.push(format!("{name}: extra entry {}", keys::printable(&key))),
                }
            }
            for key in want.keys().take(MAX_PROBLEMS) {
                problems.push(format!("{name}: missing entry {}", keys::printable(key)));
            }
        };
        for tk in [
            Tk::Active,
            Tk::Finished,
            Tk::Latest,
            Tk::ByTenant,
            Tk::ByItem,
            Tk::Counts,
            Tk::Children,
            Tk::Outbox,
            Tk::Ended,
        ] {
            let entries = inner
                .trees
                .view(tk)
                .iter()
                .map(|e| e.map(|(k, v)| (k, v.to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ctx.backend("checking", e))?;
            compare(tk.name(), &mut entries.into_iter());
        }
        {
            let queues = inner.trees.lock_queues();
            for tk in Queues::KEYSPACES {
                let mut entries = queues.map(tk).iter().map(|(k, v)| (k.clone(), v.to_vec()));
                compare(tk.name(), &mut entries);
            }
        }
        problems.truncate(MAX_PROBLEMS);
        Ok(problems)
    }
}
