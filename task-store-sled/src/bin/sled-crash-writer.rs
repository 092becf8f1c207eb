//! Crash-test child: drives a store as fast as it can and prints every acknowledged write.
//!
//! Usage: `sled-crash-writer DB_DIR [WORKERS]`. Each line on stdout,
//! `ack TASK_ID ATTEMPT EVENT STEP STATUS`, is printed after the call returned `Ok` and names
//! the history entry that write added (an event happens at most once per attempt and step)
//! and the status it led to; `STEP` is `-` when the event concerns no particular step. A test kills this process with SIGKILL and
//! checks that every acknowledged write survived. Exits 2 when the store cannot be opened.

use std::time::Duration;

use task_core::prelude::*;
use task_store_sled::{Durability, SledOptions, SledStore};

/// Journal segment size: a checkpoint every few dozen groups.
const CRASH_SEGMENT_BYTES: u64 = 64 * 1024;

/// A small xorshift generator: the writer needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn ack(task: &Task, event: &str, step: Option<Step>) {
    let step = step.map_or("-", Step::as_str);
    println!(
        "ack {} {} {event} {step} {}",
        task.id,
        task.attempt,
        task.status()
    );
}

async fn worker(store: SledStore, index: u64) -> Result<(), StoreError> {
    let name = WorkerId::new(format!("w{index}")).map_err(invalid)?;
    let tenant = TenantId::new("crash").map_err(invalid)?;
    let mut rng = Rng(u64::from(std::process::id()) * 7919 + index * 104_729 + 1);
    for round in 0u64.. {
        let batch: Vec<NewTask> = (0..1 + rng.below(3))
            .map(|j| {
                let inventory = format!("p{}-w{index}-{round}-{j}", std::process::id());
                Ok(NewTask {
                    key: TaskKey {
                        tenant: tenant.clone(),
                        inventory_id: InventoryId::new(inventory).map_err(invalid)?,
                        product: ProductName::new("adbreaks").map_err(invalid)?,
                        version: Version::new("1").map_err(invalid)?,
                    },
                    priority: Priority::ALL[rng.below(3) as usize],
                })
            })
            .collect::<Result<_, StoreError>>()?;
        for outcome in store.create_tasks(batch).await? {
            if outcome.created {
                ack(&outcome.task, "created", None);
            }
        }
        let request = ClaimRequest {
            max: 2,
            ..ClaimRequest::one(name.clone(), Duration::from_secs(600))
        };
        for task in store.claim(&request).await? {
            ack(&task, "claimed", None);
            drive(&store, &mut rng, &task, &tenant).await?;
        }
    }
    Ok(())
}

/// Moves a claimed task along one of several paths.
async fn drive(
    store: &SledStore,
    rng: &mut Rng,
    task: &Task,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    let epoch = task.epoch;
    match rng.below(6) {
        0 => {
            let step = task.next_step().unwrap_or(Step::Analyze);
            let failed = store
                .apply(
                    task.id,
                    epoch,
                    &[
                        TaskEvent::StepStarted { step },
                        TaskEvent::StepFailed {
                            error: TaskError::Transient {
                                step,
                                message: "crash test".into(),
                            },
                            retry_after_ms: Some(0),
                        },
                    ],
                )
                .await?;
            ack(&failed, "step_failed", None);
        }
        1 => {
            let flagged = store.request_cancel(tenant, task.id).await?;
            ack(&flagged, "cancel_requested", None);
            let ended = store.apply(task.id, epoch, &[TaskEvent::Cancelled]).await?;
            ack(&ended, "cancelled", None);
        }
        2 => {}
        _ => {
            for step in Step::ALL
                .into_iter()
                .filter(|s| task.checkpoint(*s).is_none())
            {
                let started = store
                    .apply(task.id, epoch, &[TaskEvent::StepStarted { step }])
                    .await?;
                ack(&started, "step_started", Some(step));
                let output = serde_json::json!({ "step": step.as_str() });
                let saved = store.record_checkpoint(task.id, epoch, output).await?;
                ack(&saved, "step_succeeded", Some(step));
            }
            let done = store.finish(task.id, epoch).await?;
            ack(&done, "done", None);
        }
    }
    Ok(())
}

fn invalid(err: ValidationError) -> StoreError {
    StoreError::Invalid {
        field: err.field,
        reason: err.reason,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: sled-crash-writer DB_DIR [WORKERS [buffered]]");
        std::process::exit(64);
    };
    let workers: u64 = args.next().and_then(|w| w.parse().ok()).unwrap_or(8);
    // Small journal segments: the kills also land during checkpoints.
    let mut options = SledOptions::default().with_journal_segment_bytes(CRASH_SEGMENT_BYTES);
    if args.next().as_deref() == Some("buffered") {
        options = options.with_durability(Durability::Buffered {
            interval: Duration::from_millis(20),
        });
    }
    let store = match SledStore::open_with(&path, options) {
        Ok(store) => store,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start a runtime: {err}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        let handles: Vec<_> = (0..workers)
            .map(|i| tokio::spawn(worker(store.clone(), i)))
            .collect();
        for handle in handles {
            match handle.await {
                Ok(result) => result?,
                Err(err) => return Err(StoreError::Conflict(format!("worker panicked: {err}"))),
            }
        }
        Ok(())
    });
    if let Err(err) = result {
        eprintln!("crash writer failed: {err}");
        std::process::exit(1);
    }
}
