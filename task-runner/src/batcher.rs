//! The write batcher: the executors' step transitions reach the store in batches.
//!
//! Every store write is a round trip through the store's write path (for sled, a message to
//! its committer thread and a wake back), and with many executors those hand-offs, not the
//! disk, limit throughput. So executors hand their [`ApplyRequest`] to one batcher per runner,
//! which sends everything queued as one [`TaskStore::apply_many`], keeping at most
//! [`IN_FLIGHT`] calls running; while they run, the next requests queue up. There is no timer:
//! a batch is whatever accumulated while every slot was busy, so an idle runner writes at once
//! and a busy one writes in large batches. Several calls in flight, not one, keep a durable
//! store busy: some are being committed while another waits for its fsync.
//! Each executor gets its own entry's outcome, so a fencing error reaches it exactly as from
//! [`TaskStore::apply`].

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug_span};

use task_core::store::{ApplyRequest, StoreError, TaskStore};
use task_core::task::Task;

/// At most this many entries go into one `apply_many`.
pub(crate) const MAX_BATCH: usize = 256;

/// At most this many `apply_many` calls run at once: while one waits for its fsync, the next
/// are already committed, so the store's flushes follow each other without a gap. Four did
/// 9,446-10,556 tasks/s end to end through sled where two did 8,700-10,159 (six alternating
/// pairs).
pub(crate) const IN_FLIGHT: usize = 4;

/// The outcome of one entry.
type Outcome = Result<Task, StoreError>;

struct Queued {
    request: ApplyRequest,
    reply: oneshot::Sender<Outcome>,
}

/// The executors' handle on the batcher task; the task ends once every handle is dropped and
/// the last batch is answered.
#[derive(Clone)]
pub(crate) struct WriteBatcher {
    // Unbounded because each executor waits for its answer before it queues again: the queue
    // never holds more than one entry per running task.
    queue: mpsc::UnboundedSender<Queued>,
}

impl WriteBatcher {
    /// Starts the batcher task over `store` on the current runtime.
    pub(crate) fn start<S: TaskStore>(store: Arc<S>) -> (Self, JoinHandle<()>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, receiver));
        (Self { queue }, task)
    }

    /// Applies `request` in the next batch and returns its own outcome.
    pub(crate) async fn apply(&self, request: ApplyRequest) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { request, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Backend {
        backend: "task-runner",
        operation: "batching writes",
        message: "the runner's write batcher stopped".into(),
        retryable: false,
    }
}

async fn run<S: TaskStore>(store: Arc<S>, mut receiver: mpsc::UnboundedReceiver<Queued>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut queued = Vec::with_capacity(MAX_BATCH);
    loop {
        // A free slot first: while every slot is busy, requests keep queuing into one batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        if receiver.recv_many(&mut queued, MAX_BATCH).await == 0 {
            break;
        }
        let (requests, replies): (Vec<ApplyRequest>, Vec<oneshot::Sender<Outcome>>) =
            queued.drain(..).map(|q| (q.request, q.reply)).unzip();
        let store = store.clone();
        let span = debug_span!("write_batch", entries = requests.len());
        tokio::spawn(
            async move {
                let outcomes = store.apply_many(requests).await;
                answer(replies, outcomes);
                drop(slot);
            }
            .instrument(span),
        );
    }
    // Every batch sent is answered before the batcher ends.
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
}

/// Hands each waiting executor its entry's outcome, or the batch's error.
fn answer(replies: Vec<oneshot::Sender<Outcome>>, outcomes: Result<Vec<Outcome>, StoreError>) {
    let outcomes = match outcomes {
        Ok(outcomes) if outcomes.len() == replies.len() => outcomes,
        Ok(outcomes) => {
            let miscounted = StoreError::Backend {
                backend: "task-runner",
                operation: "batching writes",
                message: format!(
                    "the store answered {} outcomes for {} entries",
                    outcomes.len(),
                    replies.len()
                ),
                retryable: false,
            };
            vec![Err(miscounted); replies.len()]
        }
        Err(err) => vec![Err(err); replies.len()],
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // An executor that went away (its task was stopped) no longer needs the answer.
        let _ = reply.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use task_core::prelude::*;
    use task_core::testing::{LEASE, RecordingStore, new_task, worker};

    use super::*;

    fn start(step: Step) -> ApplyRequest {
        ApplyRequest {
            id: TaskId::generate(),
            epoch: 0,
            events: vec![TaskEvent::StepStarted { step }],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_queues_while_every_slot_is_busy_goes_out_as_one_batch_with_its_own_outcomes() {
        // Holds each apply_many until the test lets it through, so the test decides what
        // queues behind it.
        let store = Arc::new(RecordingStore::gated(MemoryStore::default()));
        for name in ["a", "b", "c", "d"] {
            store
                .create_task(new_task(name, Priority::High))
                .await
                .expect("create");
        }
        let claimed = store
            .claim(&ClaimRequest {
                max: 4,
                ..ClaimRequest::one(worker("w"), LEASE)
            })
            .await
            .expect("claim");
        let (batcher, task) = WriteBatcher::start(store.clone());

        // The first write goes out alone and is held in the store, and so does each next one
        // (writes to an unknown task) until every slot is busy...
        let first = tokio::spawn({
            let batcher = batcher.clone();
            let request = ApplyRequest {
                id: claimed[0].id,
                epoch: claimed[0].epoch,
                events: vec![TaskEvent::StepStarted {
                    step: Step::S3Check,
                }],
            };
            async move { batcher.apply(request).await }
        });
        store.apply_many_arrived().await;
        let mut lost = Vec::new();
        for _ in 1..IN_FLIGHT {
            lost.push(tokio::spawn({
                let batcher = batcher.clone();
                async move { batcher.apply(start(Step::S3Check)).await }
            }));
            store.apply_many_arrived().await;
        }
        // ...while three more queue: two good ones, one with a stale epoch.
        let mut waiting = Vec::new();
        for (task, epoch) in [
            (&claimed[1], claimed[1].epoch),
            (&claimed[2], claimed[2].epoch + 1),
            (&claimed[3], claimed[3].epoch),
        ] {
            let (reply, answer) = oneshot::channel();
            let request = ApplyRequest {
                id: task.id,
                epoch,
                events: vec![TaskEvent::LeaseReleased],
            };
            batcher
                .queue
                .send(Queued { request, reply })
                .map_err(|_| "batcher gone")
                .expect("queued");
            waiting.push(answer);
        }
        // Released only now: had anything been sent while every slot was busy, it would show
        // as a batch of its own below instead of one batch of three.
        store.release(IN_FLIGHT + 1);
        let first = first.await.expect("join").expect("the first write lands");
        assert_eq!(first.current_step(), Some(Step::S3Check));
        // A write to a task that does not exist is the only failure of its batch.
        for lost in lost {
            let lost = lost.await.expect("join");
            assert!(matches!(lost, Err(StoreError::NotFound { .. })), "{lost:?}");
        }
        let mut outcomes = Vec::new();
        for answer in waiting {
            outcomes.push(answer.await.expect("answered"));
        }
        let mut expected = vec![1; IN_FLIGHT];
        expected.push(3);
        assert_eq!(store.calls().batches, expected);
        assert_eq!(
            outcomes[0].as_ref().map(Task::status).ok(),
            Some(Status::Pending)
        );
        assert!(
            matches!(
                &outcomes[1],
                Err(StoreError::Transition(TransitionError::LeaseLost { .. }))
            ),
            "the fenced entry gets its own error: {:?}",
            outcomes[1]
        );
        assert_eq!(
            outcomes[2].as_ref().map(Task::status).ok(),
            Some(Status::Pending)
        );

        drop(batcher);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the batcher ends with its last handle")
            .expect("join");
    }

    #[test]
    fn a_failed_or_miscounted_batch_fails_every_entry() {
        let error = || StoreError::Backend {
            backend: "test",
            operation: "committing",
            message: "disk gone".into(),
            retryable: true,
        };
        for outcomes in [Err(error()), Ok(vec![Err(error())])] {
            let (replies, answers): (Vec<_>, Vec<_>) =
                (0..2).map(|_| oneshot::channel::<Outcome>()).unzip();
            answer(replies, outcomes);
            for mut answer in answers {
                let got = answer.try_recv().expect("answered");
                assert!(matches!(got, Err(StoreError::Backend { .. })), "{got:?}");
            }
        }
    }
}
