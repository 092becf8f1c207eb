//! Conformance: task creation, cancel, retries, history, paging, isolation, atomicity, changes.

use std::sync::Arc;
use std::time::Duration;

use super::{claim_one, key, new_task, run_to_done};
use crate::error::TaskError;
use crate::ids::{Priority, TenantId};
use crate::machine::TaskEvent;
use crate::store::{ClaimRequest, NewTask, PageRequest, Store, StoreError, TaskFilter};
use crate::task::{Status, Step};
use crate::time::{Clock, ManualClock};

/// Creating an active key twice returns the same task; once it ended, a new one is made.
pub async fn dedup_of_active_key<S: Store>(store: Arc<S>, _clock: ManualClock) {
    let first = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    assert!(first.created);
    assert_eq!(first.task.status(), Status::Pending);
    let again = store
        .create_task(new_task("a", Priority::High))
        .await
        .expect("create");
    assert!(!again.created, "an active key is not created twice");
    assert_eq!(again.task.id, first.task.id);
    assert_eq!(
        again.task.priority,
        Priority::Low,
        "the existing task is returned as it is"
    );

    let claimed = claim_one(&*store, "w").await;
    let while_processing = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    assert_eq!(while_processing.task.id, first.task.id);
    run_to_done(&*store, &claimed).await;

    let after_done = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    assert!(after_done.created, "a finished key gets a new task");
    assert_ne!(after_done.task.id, first.task.id);
    let latest = store
        .latest_task(&after_done.task.key)
        .await
        .expect("latest");
    assert_eq!(latest.map(|t| t.id), Some(after_done.task.id));

    let tenant = &first.task.key.tenant;
    store
        .request_cancel(tenant, after_done.task.id)
        .await
        .expect("cancel");
    let after_cancel = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    assert!(after_cancel.created, "a cancelled key gets a new task");

    let other_version = NewTask {
        key: key("t1", "a", "adbreaks", "2"),
        priority: Priority::Low,
    };
    assert!(
        store
            .create_task(other_version)
            .await
            .expect("create")
            .created
    );
}

/// A batch create dedups against stored tasks and within itself, one outcome per entry.
pub async fn batch_create_dedups_within_and_across_calls<S: Store>(
    store: Arc<S>,
    _clock: ManualClock,
) {
    let existing = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    let outcomes = store
        .create_tasks(vec![
            new_task("a", Priority::High),
            new_task("b", Priority::High),
            new_task("b", Priority::Low),
            new_task("c", Priority::Medium),
        ])
        .await
        .expect("batch");
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0].task.id, existing.task.id);
    assert!(!outcomes[0].created);
    assert!(outcomes[1].created);
    assert!(
        !outcomes[2].created,
        "a repeated key in one batch is created once"
    );
    assert_eq!(outcomes[2].task.id, outcomes[1].task.id);
    assert!(outcomes[3].created);
    let tenant = TenantId::new("t1").expect("valid");
    let all = store
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(all.items.len(), 3);
}

/// Cancel: pending ends at once; processing is flagged until the worker stops; finished is a conflict.
pub async fn cancel_pending_processing_and_finished<S: Store>(store: Arc<S>, _clock: ManualClock) {
    let tenant = TenantId::new("t1").expect("valid");
    let pending = store
        .create_task(new_task("p", Priority::Low))
        .await
        .expect("create")
        .task;
    let cancelled = store
        .request_cancel(&tenant, pending.id)
        .await
        .expect("cancel pending");
    assert_eq!(cancelled.status(), Status::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let conflict = store
        .request_cancel(&tenant, pending.id)
        .await
        .expect_err("already ended");
    assert!(matches!(conflict, StoreError::Conflict(_)), "{conflict}");

    store
        .create_task(new_task("r", Priority::Low))
        .await
        .expect("create");
    let running = claim_one(&*store, "w").await;
    store
        .apply(
            running.id,
            running.epoch,
            &[TaskEvent::StepStarted {
                step: Step::S3Check,
            }],
        )
        .await
        .expect("start");
    let flagged = store
        .request_cancel(&tenant, running.id)
        .await
        .expect("cancel processing");
    assert_eq!(flagged.status(), Status::Processing);
    assert!(flagged.cancel_requested());
    assert_eq!(flagged.current_step(), Some(Step::S3Check));
    let twice = store
        .request_cancel(&tenant, running.id)
        .await
        .expect("cancel is idempotent");
    assert!(twice.cancel_requested());
    let ended = store
        .apply(running.id, running.epoch, &[TaskEvent::Cancelled])
        .await
        .expect("worker acknowledges");
    assert_eq!(ended.status(), Status::Cancelled);

    store
        .create_task(new_task("d", Priority::Low))
        .await
        .expect("create");
    let done = run_to_done(&*store, &claim_one(&*store, "w").await).await;
    let err = store
        .request_cancel(&tenant, done.id)
        .await
        .expect_err("finished");
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("done")),
        "{err}"
    );
    let missing = store
        .request_cancel(&tenant, crate::ids::TaskId::generate())
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));
}

/// A retryable failure waits for its retry time; the retry starts after the last checkpoint.
pub async fn retry_waits_for_its_time_and_keeps_checkpoints<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    let held = claim_one(&*store, "w").await;
    let transient = TaskError::StorageUnavailable {
        url: "s3://b/a".into(),
        message: "503".into(),
    };
    let after = store
        .apply(
            held.id,
            held.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                TaskEvent::StepSucceeded {
                    output: serde_json::json!({"size": 10}),
                    reused: false,
                },
                TaskEvent::StepStarted { step: Step::Probe },
                TaskEvent::StepFailed {
                    error: transient.clone(),
                    retry_after_ms: Some(5_000),
                },
            ],
        )
        .await
        .expect("fail once");
    assert_eq!(after.status(), Status::Pending);
    assert_eq!(after.last_error.as_ref(), Some(&transient));
    assert_eq!(
        after.ready_at(),
        Some(clock.now().plus(Duration::from_secs(5)))
    );

    let early = store
        .claim(&ClaimRequest::one(super::worker("w"), super::LEASE))
        .await
        .expect("claim");
    assert!(
        early.is_empty(),
        "a task waiting for its retry time is not claimable"
    );
    clock.advance(Duration::from_secs(5));
    let retried = claim_one(&*store, "w").await;
    assert_eq!(retried.attempt, 2);
    assert_eq!(
        retried.next_step(),
        Some(Step::Probe),
        "the succeeded step is not redone"
    );
    assert_eq!(
        retried.checkpoint(Step::S3Check).map(|c| c.attempt),
        Some(1)
    );

    let permanent = TaskError::ProbeFailed {
        message: "Invalid data".into(),
    };
    let refused = store
        .apply(
            retried.id,
            retried.epoch,
            &[
                TaskEvent::StepStarted { step: Step::Probe },
                TaskEvent::StepFailed {
                    error: permanent.clone(),
                    retry_after_ms: Some(1),
                },
            ],
        )
        .await;
    assert!(
        refused.is_err(),
        "a permanent error cannot be scheduled for retry"
    );
    let failed = store
        .apply(
            retried.id,
            retried.epoch,
            &[
                TaskEvent::StepStarted { step: Step::Probe },
                TaskEvent::StepFailed {
                    error: permanent.clone(),
                    retry_after_ms: None,
                },
            ],
        )
        .await
        .expect("fail permanently");
    assert_eq!(failed.status(), Status::Failed);
    assert_eq!(failed.error(), Some(&permanent));
}

/// History holds every transition in order, with times, steps and attempts.
pub async fn history_holds_every_transition_in_order<S: Store>(store: Arc<S>, clock: ManualClock) {
    let made = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create")
        .task;
    clock.advance(Duration::from_millis(10));
    let held = claim_one(&*store, "w").await;
    clock.advance(Duration::from_millis(10));
    run_to_done(&*store, &held).await;
    let history = store
        .history(&made.key.tenant, made.id)
        .await
        .expect("history");
    let events: Vec<&str> = history.iter().map(|e| e.event.as_str()).collect();
    let mut expected = vec!["created", "claimed"];
    for _ in Step::ALL {
        expected.extend(["step_started", "step_succeeded"]);
    }
    expected.push("done");
    assert_eq!(events, expected);
    assert!(
        history.windows(2).all(|w| w[0].at <= w[1].at),
        "times never go back"
    );
    assert_eq!(history[0].from, None);
    assert_eq!(history[1].from, Some(Status::Pending));
    assert_eq!(history[1].to, Status::Processing);
    assert_eq!(
        history[1].at,
        made.created_at.plus(Duration::from_millis(10))
    );
    let started: Vec<Step> = history
        .iter()
        .filter(|e| e.event == "step_started")
        .filter_map(|e| e.step)
        .collect();
    assert_eq!(started, Step::ALL);
    assert_eq!(history.last().map(|e| e.to), Some(Status::Done));
    assert!(history[1..].iter().all(|e| e.attempt == 1));
}

/// Pages walk every matching task exactly once, in creation order.
pub async fn pagination_returns_every_task_exactly_once<S: Store>(
    store: Arc<S>,
    _clock: ManualClock,
) {
    let batch: Vec<NewTask> = (0..53)
        .map(|i| new_task(&format!("i{i:02}"), Priority::Low))
        .collect();
    let made = store.create_tasks(batch).await.expect("batch");
    let tenant = TenantId::new("t1").expect("valid");
    for limit in [1, 7, 53, 100] {
        let mut seen = Vec::new();
        let mut page = PageRequest::first(limit);
        loop {
            let got = store
                .list_tasks(&tenant, &TaskFilter::default(), &page)
                .await
                .expect("list");
            assert!(got.items.len() <= limit);
            seen.extend(got.items.iter().map(|t| t.id));
            match got.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let expected: Vec<_> = made.iter().map(|o| o.task.id).collect();
        assert_eq!(seen, expected, "page size {limit}");
    }
    let filter = TaskFilter {
        status: Some(Status::Processing),
        ..TaskFilter::default()
    };
    claim_one(&*store, "w").await;
    let processing = store
        .list_tasks(&tenant, &filter, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(processing.items.len(), 1);
    assert_eq!(processing.next, None);
    let by_item = TaskFilter {
        inventory_id: Some(crate::ids::InventoryId::new("i07").expect("valid")),
        ..TaskFilter::default()
    };
    let one = store
        .list_tasks(&tenant, &by_item, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(one.items.len(), 1);
    let bad = PageRequest {
        after: Some("garbage".into()),
        limit: 5,
    };
    let err = store
        .list_tasks(&tenant, &TaskFilter::default(), &bad)
        .await
        .expect_err("bad cursor");
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "cursor",
                ..
            }
        ),
        "{err}"
    );
}

/// A tenant never reads, lists, cancels or learns the history of another tenant's tasks.
pub async fn tenants_never_see_each_other<S: Store>(store: Arc<S>, _clock: ManualClock) {
    let mine = store
        .create_task(new_task("shared-name", Priority::Low))
        .await
        .expect("create")
        .task;
    let theirs = store
        .create_task(NewTask {
            key: key("t2", "shared-name", "adbreaks", "1"),
            priority: Priority::Low,
        })
        .await
        .expect("create");
    assert!(
        theirs.created,
        "the same inventory id in another tenant is another task"
    );
    let t1 = TenantId::new("t1").expect("valid");
    let t2 = TenantId::new("t2").expect("valid");
    assert!(store.get_task(&t2, mine.id).await.expect("get").is_none());
    assert!(matches!(
        store.request_cancel(&t2, mine.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.history(&t2, mine.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let listed = store
        .list_tasks(&t2, &TaskFilter::default(), &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(
        listed.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![theirs.task.id]
    );
    let mine_listed = store
        .list_tasks(&t1, &TaskFilter::default(), &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(
        mine_listed.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![mine.id]
    );
    assert_eq!(
        store
            .get_task(&t1, mine.id)
            .await
            .expect("get")
            .map(|t| t.id),
        Some(mine.id)
    );
}

/// A batch of events is applied entirely or not at all.
pub async fn apply_is_atomic<S: Store>(store: Arc<S>, _clock: ManualClock) {
    store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    let held = claim_one(&*store, "w").await;
    let err = store
        .apply(
            held.id,
            held.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                TaskEvent::StepSucceeded {
                    output: serde_json::json!(1),
                    reused: false,
                },
                TaskEvent::Done,
            ],
        )
        .await
        .expect_err("done before every step is refused");
    assert!(matches!(err, StoreError::Transition(_)), "{err}");
    let tenant = &held.key.tenant;
    let unchanged = store
        .get_task(tenant, held.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(unchanged, held, "nothing of a refused batch is written");
    assert_eq!(
        store.history(tenant, held.id).await.expect("history").len(),
        2
    );
}

/// Subscribers receive a change for every transition, in order.
pub async fn subscribers_see_every_change<S: Store>(store: Arc<S>, _clock: ManualClock) {
    let mut changes = store.subscribe();
    let made = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create")
        .task;
    let held = claim_one(&*store, "w").await;
    store
        .apply(
            held.id,
            held.epoch,
            &[TaskEvent::StepStarted {
                step: Step::S3Check,
            }],
        )
        .await
        .expect("start");
    store
        .request_cancel(&made.key.tenant, made.id)
        .await
        .expect("cancel");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .expect("a change arrives")
            .expect("channel open");
        assert_eq!(change.task_id, made.id);
        seen.push((change.status, change.step, change.cancel_requested));
    }
    assert_eq!(
        seen,
        [
            (Status::Pending, None, false),
            (Status::Processing, None, false),
            (Status::Processing, Some(Step::S3Check), false),
            (Status::Processing, Some(Step::S3Check), true),
        ]
    );
}

/// The store tells a sleeping runner when the next retry or lease expiry is due.
pub async fn next_wakeup_reports_retry_and_lease_times<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    assert_eq!(store.next_wakeup().await.expect("wakeup"), None);
    store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    let held = claim_one(&*store, "w").await;
    let expires = held.lease().expect("lease").expires_at;
    assert_eq!(store.next_wakeup().await.expect("wakeup"), Some(expires));
    store
        .apply(
            held.id,
            held.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                TaskEvent::StepFailed {
                    error: TaskError::Transient {
                        step: Step::S3Check,
                        message: "reset".into(),
                    },
                    retry_after_ms: Some(2_000),
                },
            ],
        )
        .await
        .expect("fail");
    assert_eq!(
        store.next_wakeup().await.expect("wakeup"),
        Some(clock.now().plus(Duration::from_secs(2)))
    );
}
