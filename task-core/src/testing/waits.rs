//! Conformance: tasks that wait for other tasks.

use std::sync::Arc;

use super::{claim_one, claim_up_to, key, new_task, worker};
use crate::error::TaskError;
use crate::ids::{Priority, TaskId};
use crate::machine::TaskEvent;
use crate::store::{ClaimRequest, NewTask, Store, StoreError};
use crate::task::{Status, Step, Task};
use crate::time::{Clock, ManualClock};

/// Claims `name`'s next task and parks it, its first step running, until `awaited` end.
async fn park<S: Store + ?Sized>(store: &S, awaited: &[TaskId]) -> Task {
    let held = claim_one(store, "waiter").await;
    store
        .apply(
            held.id,
            held.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                TaskEvent::WaitingFor {
                    tasks: awaited.to_vec(),
                },
            ],
        )
        .await
        .expect("the wait is recorded")
}

/// Ends a held task `failed` (as its worker would).
async fn end<S: Store + ?Sized>(store: &S, task: &Task) {
    let error = TaskError::Internal {
        message: "ended by the test".into(),
    };
    let ended = store
        .apply(task.id, task.epoch, &[TaskEvent::Failed { error }])
        .await
        .expect("end");
    assert_eq!(ended.status(), Status::Failed);
}

/// A task that waits holds no lease, is never claimed or reported as ready while any awaited
/// task is active, and is claimed again (its wait not counted as an attempt) once all have
/// ended; its history says what it waited for and when that ended.
pub async fn waiting_tasks_wake_once_every_awaited_task_ends<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    let waiter = store
        .create_task(new_task("episode-1", Priority::High))
        .await
        .expect("create")
        .task;
    let mut awaited = Vec::new();
    for item in ["episode-2", "episode-3"] {
        let child = NewTask {
            key: key("t1", item, "fingerprint", "1"),
            priority: Priority::Low,
        };
        awaited.push(store.create_task(child).await.expect("create").task.id);
    }
    let parked = park(&*store, &awaited).await;
    assert_eq!(parked.id, waiter.id);
    assert_eq!(parked.status(), Status::Pending);
    assert_eq!(parked.waiting_for(), &awaited[..]);
    assert!(parked.lease().is_none() && parked.checkpoints.is_empty());

    let children = claim_up_to(&*store, "worker", 10).await;
    let mut ids: Vec<TaskId> = children.iter().map(|t| t.id).collect();
    ids.sort();
    let mut expected = awaited.clone();
    expected.sort();
    assert_eq!(ids, expected, "only the awaited tasks are claimable");
    let wakeup = store.next_wakeup().await.expect("wakeup");
    assert!(
        wakeup.is_some_and(|at| at > clock.now()),
        "a waiting task is not ready now (next wake-up {wakeup:?})"
    );

    end(&*store, &children[0]).await;
    assert!(
        claim_up_to(&*store, "worker", 10).await.is_empty(),
        "one awaited task still runs"
    );
    end(&*store, &children[1]).await;
    let resumed = claim_one(&*store, "worker").await;
    assert_eq!(resumed.id, waiter.id);
    assert_eq!(resumed.attempt, 2);
    assert_eq!(resumed.attempts_used(), 1, "the wait used no attempt");
    assert!(resumed.waiting_for().is_empty());

    let history = store
        .history(&waiter.key.tenant, waiter.id)
        .await
        .expect("history");
    let events: Vec<&str> = history.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "created",
            "claimed",
            "step_started",
            "waiting",
            "wait_ended",
            "claimed"
        ]
    );
    for entry in &history[3..5] {
        let detail = entry.detail.as_deref().unwrap_or_default();
        assert!(
            awaited.iter().all(|id| detail.contains(&id.to_string())),
            "{} names the awaited tasks: {detail}",
            entry.event
        );
    }
}

/// A task may only wait for tasks that exist and belong to its tenant; a refused wait
/// changes nothing and says no more about another tenant's task than about a missing one.
pub async fn a_wait_for_unknown_or_foreign_tasks_is_refused<S: Store>(
    store: Arc<S>,
    _clock: ManualClock,
) {
    let foreign = NewTask {
        key: key("t2", "theirs", "fingerprint", "1"),
        priority: Priority::Low,
    };
    let foreign = store.create_task(foreign).await.expect("create").task;
    store
        .create_task(new_task("mine", Priority::High))
        .await
        .expect("create");
    let held = claim_one(&*store, "waiter").await;
    assert_eq!(held.key.tenant.as_str(), "t1");
    let started = store
        .apply(
            held.id,
            held.epoch,
            &[TaskEvent::StepStarted {
                step: Step::S3Check,
            }],
        )
        .await
        .expect("start");
    let unknown = TaskId::generate();
    let mut messages = Vec::new();
    for awaited in [unknown, foreign.id] {
        let wait = TaskEvent::WaitingFor {
            tasks: vec![awaited],
        };
        let refused = store
            .apply(held.id, held.epoch, &[wait])
            .await
            .expect_err("refused");
        assert!(matches!(refused, StoreError::Invalid { .. }), "{refused:?}");
        messages.push(refused.to_string().replace(&awaited.to_string(), "ID"));
    }
    assert_eq!(messages[0], messages[1], "the same answer for both");
    let unchanged = store
        .get_task(&held.key.tenant, held.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(unchanged, started, "a refused wait writes nothing");
}

/// Cancelling a waiting task ends it at once and leaves the tasks it waited for to run.
/// A wait for tasks that have already ended is over at the next claim.
pub async fn cancelling_a_waiting_task_leaves_its_awaited_tasks<S: Store>(
    store: Arc<S>,
    _clock: ManualClock,
) {
    let waiter = store
        .create_task(new_task("season-finale", Priority::High))
        .await
        .expect("create")
        .task;
    let child = NewTask {
        key: key("t1", "pilot", "fingerprint", "1"),
        priority: Priority::Low,
    };
    let child = store.create_task(child).await.expect("create").task;
    park(&*store, &[child.id]).await;
    let cancelled = store
        .request_cancel(&waiter.key.tenant, waiter.id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status(), Status::Cancelled);
    let running = claim_one(&*store, "worker").await;
    assert_eq!(running.id, child.id, "the awaited task still runs");
    end(&*store, &running).await;
    assert!(claim_up_to(&*store, "worker", 10).await.is_empty());

    // A wait for an ended task: the next claim wakes it.
    store
        .create_task(new_task("again", Priority::High))
        .await
        .expect("create");
    let parked = park(&*store, &[child.id]).await;
    assert_eq!(parked.waiting_for(), &[child.id]);
    let resumed = store
        .claim(&ClaimRequest::one(worker("worker"), super::LEASE))
        .await
        .expect("claim");
    assert_eq!(
        resumed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [parked.id]
    );
}
