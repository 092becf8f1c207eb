//! The committer: one thread that owns every write.
//!
//! Store calls send their operation over a channel and await a reply. The committer takes
//! everything queued (a group), runs the operations in arrival order against a [`Stage`] (each
//! sees the effects of the ones before it; one that fails leaves nothing behind), commits the
//! whole group as one sled batch, hands its journal frame and the group's answers to the
//! flusher, which sends them once the frame is durable (strict durability; at once when
//! buffered). Callers then return and publish change notifications. While the flusher thread
//! runs one fsync, the committer already builds and commits the next groups, which share the
//! next fsync.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use task_core::catalog::{CatalogItem, ItemUpsert};
use task_core::ids::{InventoryId, TaskId, TenantId};
use task_core::machine::{Authority, TaskEvent};
use task_core::results::AnalysisResult;
use task_core::store::{ApplyRequest, ClaimRequest, CreateOutcome, NewTask, StoreError};
use task_core::task::Task;
use task_core::time::{SharedClock, Timestamp};
use task_core::webhooks::{AttemptOutcome, Delivery, DeliveryId, Webhook, WebhookId};
use tokio::sync::{oneshot, watch};

use crate::error::{BACKEND, Ctx};
use crate::group_commit::{GroupCommit, Ticket};
use crate::layout::Trees;
use crate::prune::PRUNE_ROUND;
use crate::stage::{Stage, TaskCache};

/// At most this many calls form one group.
const MAX_GROUP: usize = 4096;

/// A write, as sent to the committer.
#[derive(Debug)]
pub(crate) enum Op {
    /// Create tasks (or find the active ones).
    Create(Vec<NewTask>),
    /// Requeue expired leases, then claim.
    Claim(ClaimRequest),
    /// Apply worker events under a lease.
    Apply {
        /// The task.
        id: TaskId,
        /// The presented lease epoch.
        epoch: u64,
        /// The events, all or none.
        events: Vec<TaskEvent>,
    },
    /// Apply many entries, each on its own as [`Op::Apply`] would.
    ApplyMany(Vec<ApplyRequest>),
    /// Request a cancel.
    Cancel(TenantId, TaskId),
    /// Requeue expired leases.
    Requeue,
    /// Create or replace a catalog item.
    Upsert(ItemUpsert),
    /// Soft-delete an item and cancel its active tasks.
    DeleteItem(TenantId, InventoryId),
    /// Store a result.
    PutResult(AnalysisResult),
    /// Store a cached step output.
    CachePut(String, serde_json::Value),
    /// Delete up to a round of tasks that finished before this time.
    Prune(Timestamp),
    /// Delete up to a round of webhook deliveries that ended before this time.
    PruneDeliveries(Timestamp),
    /// The retention's round: [`Op::Prune`] and [`Op::PruneDeliveries`] together, answered
    /// with the number of tasks deleted.
    Retain(Timestamp),
    /// Store a webhook subscription.
    PutWebhook(Webhook),
    /// Delete a tenant's subscription and its deliveries.
    DeleteWebhook(TenantId, WebhookId),
    /// Take due deliveries.
    TakeDue {
        /// How many at most.
        limit: usize,
        /// The lease of each attempt.
        lease: Duration,
        /// Subscriptions to leave for later.
        skip: Vec<WebhookId>,
    },
    /// Record how an attempt ended.
    RecordAttempt {
        /// The subscription.
        webhook: WebhookId,
        /// The delivery.
        id: DeliveryId,
        /// The attempt's number.
        attempt: u32,
        /// How it ended.
        outcome: AttemptOutcome,
    },
    /// Re-send a tenant's delivery.
    Resend(TenantId, WebhookId, DeliveryId),
}

/// What an operation produced.
#[derive(Debug)]
pub(crate) enum Done {
    /// Outcomes of a create.
    Created(Vec<CreateOutcome>),
    /// Tasks requeued and claimed by a claim.
    Claimed(Vec<Task>, Vec<Task>),
    /// The task after an apply.
    Applied(Task),
    /// The outcome of each entry of an apply of many.
    AppliedMany(Vec<Result<Task, StoreError>>),
    /// The task after a cancel request, and whether it changed.
    Cancelled(Task, bool),
    /// Tasks moved back to pending.
    Requeued(Vec<Task>),
    /// The item and whether it is new.
    Upserted(CatalogItem, bool),
    /// The deleted item and the tasks whose cancel it requested.
    Deleted(CatalogItem, Vec<Task>),
    /// Written.
    Stored,
    /// How many finished tasks were deleted.
    Pruned(usize),
    /// Whether a subscription was deleted.
    WebhookDeleted(bool),
    /// Deliveries taken.
    Deliveries(Vec<Delivery>),
    /// A delivery after the write.
    Delivery(Delivery),
}

impl Done {
    /// Whether the caller must wait for a flush before answering: a claim that found nothing,
    /// or an apply of many whose entries were all refused, promises nothing about the disk.
    fn needs_flush(&self) -> bool {
        self.acknowledged_writes() > 0
    }

    /// How many durable writes this answer acknowledges: one per call, except that an apply of
    /// many counts each entry written (and a claim that found nothing counts none).
    fn acknowledged_writes(&self) -> u64 {
        match self {
            Done::Claimed(requeued, claimed) if requeued.is_empty() && claimed.is_empty() => 0,
            Done::AppliedMany(outcomes) => outcomes.iter().filter(|o| o.is_ok()).count() as u64,
            Done::Deliveries(taken) if taken.is_empty() => 0,
            Done::WebhookDeleted(false) => 0,
            _ => 1,
        }
    }
}

type Reply = Result<Done, StoreError>;

/// Where an operation's result goes.
enum Replier {
    /// A caller awaiting it.
    Caller(oneshot::Sender<Reply>),
    /// A background round of pruning: its count is added to the store's pruned total.
    Pruning(Arc<watch::Sender<u64>>),
}

impl Replier {
    /// Delivers `reply` (a caller that went away no longer needs it).
    fn send(self, reply: Reply) {
        match self {
            Replier::Caller(sender) => {
                let _ = sender.send(reply);
            }
            Replier::Pruning(total) => {
                if let Ok(Done::Pruned(count @ 1..)) = reply {
                    total.send_modify(|sum| *sum += count as u64);
                }
            }
        }
    }
}

struct Request {
    op: Op,
    reply: Replier,
}

/// What the committer thread owns.
pub(crate) struct Parts {
    pub ctx: Ctx,
    pub trees: Arc<Trees>,
    pub clock: SharedClock,
    pub commit: Arc<GroupCommit>,
    /// Finished tasks older than this are deleted, about once a [`PRUNE_EVERY`].
    pub retention: Option<Duration>,
    /// The number of tasks background pruning deleted, published once durable and readable.
    pub pruned: Arc<watch::Sender<u64>>,
    /// The journal sequence number of the first group this committer commits.
    pub first_seq: u64,
}

/// How often a store with a retention looks for expired finished tasks.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The callers' handle on the committer thread; dropping it ends the thread after the queued
/// calls are done.
pub(crate) struct Committer {
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        operation: "committing",
        message: "the committer thread stopped".into(),
        retryable: false,
    }
}

impl Committer {
    /// Starts the committer thread.
    pub fn start(parts: Parts) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sled-committer".into())
            .spawn(move || run(parts, receiver))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Sends `op` and waits for its result, which arrives once it is durable (per the
    /// durability mode). A write's time, from here to its answer, is the store's commit time
    /// in [`task_core::telemetry`].
    pub async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        let began = std::time::Instant::now();
        let done = self.submit_untimed(op).await;
        if let Ok(done) = &done
            && done.needs_flush()
        {
            task_core::telemetry::store_commit(began.elapsed());
        }
        done
    }

    async fn submit_untimed(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .as_ref()
            .ok_or_else(stopped)?
            .send(Request {
                op,
                reply: Replier::Caller(reply),
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sled committer thread panicked");
        }
    }
}

/// Runs one operation.
pub(crate) fn execute(
    stage: &mut Stage<'_>,
    op: Op,
    clock: &SharedClock,
) -> Result<Done, StoreError> {
    let now = clock.now();
    Ok(match op {
        Op::Create(batch) => Done::Created(stage.create(&batch, now)?),
        Op::Claim(request) => {
            let (requeued, claimed) = stage.claim(&request, now)?;
            Done::Claimed(requeued, claimed)
        }
        Op::Apply { id, epoch, events } => {
            Done::Applied(stage.apply(id, Authority::Lease(epoch), &events, now)?)
        }
        Op::ApplyMany(batch) => Done::AppliedMany(
            batch
                .into_iter()
                .map(|entry| {
                    // Each entry is undone alone, exactly like a separate call.
                    let point = stage.savepoint();
                    let applied =
                        stage.apply(entry.id, Authority::Lease(entry.epoch), &entry.events, now);
                    if applied.is_err() {
                        stage.rollback(point);
                    }
                    applied
                })
                .collect(),
        ),
        Op::Cancel(tenant, id) => {
            let (task, changed) = stage.cancel(&tenant, id, now)?;
            Done::Cancelled(task, changed)
        }
        Op::Requeue => Done::Requeued(stage.requeue_expired(now)?),
        Op::Upsert(item) => {
            let (item, created) = stage.upsert_item(item, now)?;
            Done::Upserted(item, created)
        }
        Op::DeleteItem(tenant, id) => {
            let (item, cancelled) = stage.delete_item(&tenant, &id, now)?;
            Done::Deleted(item, cancelled)
        }
        Op::PutResult(result) => {
            stage.put_result(&result)?;
            Done::Stored
        }
        Op::CachePut(key, value) => {
            stage.cache_put(&key, &value)?;
            Done::Stored
        }
        Op::Prune(before) => Done::Pruned(stage.prune_finished(before, PRUNE_ROUND)?.len()),
        Op::PruneDeliveries(before) => {
            Done::Pruned(stage.prune_ended_deliveries(before, PRUNE_ROUND)?)
        }
        Op::Retain(before) => {
            stage.prune_ended_deliveries(before, PRUNE_ROUND)?;
            Done::Pruned(stage.prune_finished(before, PRUNE_ROUND)?.len())
        }
        Op::PutWebhook(webhook) => {
            stage.put_webhook(&webhook)?;
            Done::Stored
        }
        Op::DeleteWebhook(tenant, id) => Done::WebhookDeleted(stage.delete_webhook(&tenant, id)?),
        Op::TakeDue { limit, lease, skip } => {
            Done::Deliveries(stage.take_due(now, limit, lease, &skip)?)
        }
        Op::RecordAttempt {
            webhook,
            id,
            attempt,
            outcome,
        } => Done::Delivery(stage.record_attempt(webhook, id, attempt, outcome, now)?),
        Op::Resend(tenant, webhook, id) => Done::Delivery(stage.resend(&tenant, webhook, id, now)?),
    })
}

/// The next request, or None once every sender is gone. With a retention, a due round of
/// pruning comes first: it joins the group as if a caller had asked for it.
fn next_request(
    parts: &Parts,
    receiver: &mpsc::Receiver<Request>,
    next_prune: &mut Instant,
) -> Option<Request> {
    let Some(retention) = parts.retention else {
        return receiver.recv().ok();
    };
    loop {
        let now = Instant::now();
        if now >= *next_prune {
            *next_prune = now + PRUNE_EVERY;
            let before = Timestamp::from_millis(
                parts
                    .clock
                    .now()
                    .as_millis()
                    .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX)),
            );
            return Some(Request {
                op: Op::Retain(before),
                reply: Replier::Pruning(parts.pruned.clone()),
            });
        }
        match receiver.recv_timeout(*next_prune - now) {
            Ok(request) => return Some(request),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The committer loop: a group per wake-up, until every sender is gone.
fn run(parts: Parts, receiver: mpsc::Receiver<Request>) {
    let mut cache = TaskCache::default();
    let mut last = Ticket::NONE;
    let mut next_seq = parts.first_seq;
    let mut next_prune = Instant::now();
    while let Some(first) = next_request(&parts, &receiver, &mut next_prune) {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let mut stage = Stage::new(&parts.ctx, &parts.trees, &mut cache);
        let mut results = Vec::with_capacity(group.len());
        for Request { op, reply } in group {
            let point = stage.savepoint();
            let result = execute(&mut stage, op, &parts.clock);
            if result.is_err() {
                stage.rollback(point);
            }
            results.push((reply, result));
        }
        let acknowledged = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(Done::acknowledged_writes)
            .sum();
        let ticket = match stage.commit(next_seq) {
            Ok(Some(group)) => match parts.commit.committed(acknowledged, group) {
                Ok(ticket) => {
                    last = ticket;
                    next_seq += 1;
                    Ok(last)
                }
                Err(err) => {
                    // The store failed earlier (its flusher said why, once): refuse quietly.
                    cache.clear();
                    Err(err)
                }
            },
            Ok(None) => {
                // Nothing new to write: the answers rest on earlier commits.
                parts.commit.acknowledged(acknowledged);
                Ok(last)
            }
            Err(err) => {
                tracing::error!(path = %parts.ctx.path, %err, "committing a group failed");
                cache.clear();
                Err(commit_failed(err.to_string()))
            }
        };
        let ticket = match ticket {
            Ok(ticket) => ticket,
            Err(err) => {
                for (reply, result) in results {
                    reply.send(result.and_then(|_| Err(err.clone())));
                }
                continue;
            }
        };
        // Answers that promise nothing about the disk go now; the others once flushed.
        let (now, durable): (Vec<_>, Vec<_>) = results
            .into_iter()
            .partition(|(_, result)| result.as_ref().map_or(true, |done| !done.needs_flush()));
        for (reply, result) in now {
            // A caller that went away no longer needs its answer.
            reply.send(result);
        }
        if !durable.is_empty() {
            parts.commit.after_flush(
                ticket,
                Box::new(move |failure| {
                    for (reply, result) in durable {
                        let answer = match &failure {
                            None => result,
                            Some(failure) => Err(failure.error()),
                        };
                        reply.send(answer);
                    }
                }),
            );
        }
    }
}

fn commit_failed(message: String) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        operation: "committing",
        message,
        retryable: false,
    }
}
