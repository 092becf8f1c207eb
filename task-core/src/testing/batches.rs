//! Conformance: the calls that save runner writes, claims that start the first step and
//! batches of applies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{LEASE, claim_one, new_task, worker};
use crate::ids::{Priority, TaskId};
use crate::machine::{TaskEvent, TransitionError};
use crate::store::{ApplyRequest, ClaimRequest, Store, StoreError, TaskChange};
use crate::task::{Status, Step, Task};
use crate::time::ManualClock;

fn succeeded(step: Step) -> TaskEvent {
    TaskEvent::StepSucceeded {
        output: serde_json::json!({ "step": step.as_str() }),
        reused: false,
    }
}

fn started(step: Step) -> TaskEvent {
    TaskEvent::StepStarted { step }
}

/// The events of the history of task `id`, with their steps.
async fn trail<S: Store>(store: &S, task: &Task) -> Vec<(String, Option<Step>)> {
    store
        .history(&task.key.tenant, task.id)
        .await
        .expect("history")
        .into_iter()
        .map(|e| (e.event, e.step))
        .collect()
}

/// Every change already published, as (task, status, step).
fn published(changes: &mut broadcast::Receiver<TaskChange>) -> Vec<(TaskId, Status, Option<Step>)> {
    let mut seen = Vec::new();
    while let Ok(change) = changes.try_recv() {
        seen.push((change.task_id, change.status, change.step));
    }
    seen
}

fn starting_claim(name: &str, max: usize) -> ClaimRequest {
    ClaimRequest {
        max,
        ..ClaimRequest::one(worker(name), LEASE)
    }
    .with_start_first_step(true)
}

/// A claim with `start_first_step` starts the first step without a checkpoint in the same
/// write: fresh tasks at `s3_check`, a resumed one where it stopped, a fully checkpointed one
/// not at all; the new holder then goes on with its epoch.
pub async fn claim_can_start_the_first_step<S: Store>(store: Arc<S>, _clock: ManualClock) {
    assert!(!ClaimRequest::one(worker("w"), LEASE).start_first_step);
    for name in ["a", "b"] {
        store
            .create_task(new_task(name, Priority::High))
            .await
            .expect("create");
    }
    let mut changes = store.subscribe();
    let claimed = store.claim(&starting_claim("w", 2)).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    for task in &claimed {
        assert_eq!(task.status(), Status::Processing);
        assert_eq!(task.current_step(), Some(Step::S3Check));
        assert_eq!((task.epoch, task.attempt), (1, 1));
        assert!(task.checkpoints.is_empty());
        let stored = store
            .get_task(&task.key.tenant, task.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(&stored, task, "the started step is stored");
        assert_eq!(
            trail(&*store, task).await,
            [
                ("created".into(), None),
                ("claimed".into(), None),
                ("step_started".into(), Some(Step::S3Check)),
            ]
        );
    }
    let mut seen = published(&mut changes);
    seen.sort();
    let mut expected: Vec<_> = claimed
        .iter()
        .map(|t| (t.id, Status::Processing, Some(Step::S3Check)))
        .collect();
    expected.sort();
    assert_eq!(
        seen, expected,
        "one change per task: claim and start are one write"
    );

    // The holder goes on from the started step; then gives the task back after `probe`.
    let held = &claimed[0];
    store
        .apply(
            held.id,
            held.epoch,
            &[
                succeeded(Step::S3Check),
                started(Step::Probe),
                succeeded(Step::Probe),
                TaskEvent::LeaseReleased,
            ],
        )
        .await
        .expect("the holder writes with its epoch");
    let resumed = store
        .claim(&starting_claim("w2", 1))
        .await
        .expect("claim")
        .pop()
        .expect("the released task is claimable");
    assert_eq!(resumed.id, held.id);
    assert_eq!((resumed.epoch, resumed.attempt), (2, 2));
    assert_eq!(
        resumed.current_step(),
        Some(Step::LengthGate),
        "a resumed task starts at its first step without a checkpoint"
    );
    assert_eq!(resumed.checkpoints.len(), 2);
    let history = trail(&*store, &resumed).await;
    assert_eq!(
        history[history.len() - 2..],
        [
            ("claimed".into(), None),
            ("step_started".into(), Some(Step::LengthGate)),
        ]
    );

    // Every step checkpointed but not done: the claim has nothing to start.
    store
        .apply(
            resumed.id,
            resumed.epoch,
            &[
                succeeded(Step::LengthGate),
                started(Step::Analyze),
                succeeded(Step::Analyze),
                TaskEvent::LeaseReleased,
            ],
        )
        .await
        .expect("checkpoint the rest");
    let complete = store.claim(&starting_claim("w3", 2)).await.expect("claim");
    let complete = complete
        .into_iter()
        .find(|t| t.id == held.id)
        .expect("claimed again");
    assert_eq!(complete.current_step(), None);
    assert_eq!(
        trail(&*store, &complete).await.last(),
        Some(&("claimed".into(), None))
    );
    let done = store
        .apply(complete.id, complete.epoch, &[TaskEvent::Done])
        .await
        .expect("done");
    assert_eq!(done.status(), Status::Done);

    // Without the flag nothing is started.
    store
        .create_task(new_task("c", Priority::High))
        .await
        .expect("create");
    assert_eq!(claim_one(&*store, "w").await.current_step(), None);
}

/// `apply_many` applies each entry as `apply` would, in order: good entries land, a stale
/// epoch, an unknown task and a refused entry fail alone and write nothing; changes are
/// published for what was written, and what was written is stored.
pub async fn apply_many_entries_succeed_and_fail_alone<S: Store>(
    store: Arc<S>,
    _clock: ManualClock,
) {
    for name in ["a", "b", "c"] {
        store
            .create_task(new_task(name, Priority::High))
            .await
            .expect("create");
    }
    let claimed = store.claim(&starting_claim("w", 3)).await.expect("claim");
    let by_name: HashMap<String, Task> = claimed
        .into_iter()
        .map(|t| (t.key.inventory_id.to_string(), t))
        .collect();
    let (a, b, c) = (&by_name["a"], &by_name["b"], &by_name["c"]);
    // c is given back and claimed again: its first epoch is stale now.
    store
        .apply(c.id, c.epoch, &[TaskEvent::LeaseReleased])
        .await
        .expect("release");
    let c_again = claim_one(&*store, "w2").await;
    assert_eq!(c_again.id, c.id);
    let c_before = trail(&*store, c).await;
    let unknown = TaskId::generate();

    let mut changes = store.subscribe();
    let entry = |task: &Task, epoch: u64, events: Vec<TaskEvent>| ApplyRequest {
        id: task.id,
        epoch,
        events,
    };
    let outcomes = store
        .apply_many(vec![
            entry(
                a,
                a.epoch,
                vec![succeeded(Step::S3Check), started(Step::Probe)],
            ),
            entry(c, c.epoch, vec![succeeded(Step::S3Check)]),
            ApplyRequest {
                id: unknown,
                epoch: 1,
                events: vec![TaskEvent::Done],
            },
            entry(
                b,
                b.epoch,
                vec![
                    succeeded(Step::S3Check),
                    started(Step::Probe),
                    TaskEvent::Done,
                ],
            ),
            entry(
                b,
                b.epoch,
                vec![succeeded(Step::S3Check), started(Step::Probe)],
            ),
            entry(
                a,
                a.epoch,
                vec![succeeded(Step::Probe), started(Step::LengthGate)],
            ),
        ])
        .await
        .expect("the backend works");
    assert_eq!(outcomes.len(), 6, "one outcome per entry");
    let a_first = outcomes[0].as_ref().expect("a good entry lands");
    assert_eq!(a_first.current_step(), Some(Step::Probe));
    assert!(
        matches!(
            &outcomes[1],
            Err(StoreError::Transition(TransitionError::LeaseLost {
                presented: Some(1),
                current: 2,
                ..
            }))
        ),
        "a stale epoch is fenced: {:?}",
        outcomes[1]
    );
    assert!(
        matches!(&outcomes[2], Err(StoreError::NotFound { what: "task", .. })),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(
            &outcomes[3],
            Err(StoreError::Transition(TransitionError::Invalid { .. }))
        ),
        "an entry is refused whole: {:?}",
        outcomes[3]
    );
    let b_after = outcomes[4].as_ref().expect("b's next entry lands");
    assert_eq!(b_after.current_step(), Some(Step::Probe));
    assert_eq!(b_after.checkpoints.len(), 1, "nothing of the refused entry");
    let a_after = outcomes[5]
        .as_ref()
        .expect("a later entry sees the earlier one");
    assert_eq!(a_after.current_step(), Some(Step::LengthGate));
    assert_eq!(a_after.checkpoints.len(), 2);

    let mut seen = published(&mut changes);
    seen.sort();
    let mut expected = vec![
        (a.id, Status::Processing, Some(Step::Probe)),
        (a.id, Status::Processing, Some(Step::LengthGate)),
        (b.id, Status::Processing, Some(Step::Probe)),
    ];
    expected.sort();
    assert_eq!(
        seen, expected,
        "a change per written entry, none for failures"
    );

    for written in [a_after, b_after] {
        let stored = store
            .get_task(&written.key.tenant, written.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(&stored, written);
    }
    assert_eq!(
        trail(&*store, a).await[3..],
        [
            ("step_succeeded".into(), Some(Step::S3Check)),
            ("step_started".into(), Some(Step::Probe)),
            ("step_succeeded".into(), Some(Step::Probe)),
            ("step_started".into(), Some(Step::LengthGate)),
        ]
    );
    assert_eq!(trail(&*store, b).await.len(), 5);
    assert_eq!(
        trail(&*store, c).await,
        c_before,
        "the fenced entry wrote nothing"
    );
    let c_now = store
        .get_task(&c.key.tenant, c.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(c_now, c_again);

    let empty = tokio::time::timeout(Duration::from_secs(10), store.apply_many(Vec::new()))
        .await
        .expect("an empty batch answers")
        .expect("an empty batch is fine");
    assert!(empty.is_empty());
}
