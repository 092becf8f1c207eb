//! Conformance: claim order, concurrency, leases and fencing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{LEASE, claim_one, key, new_task, run_to_done, worker};
use crate::ids::{Priority, ProductName};
use crate::machine::{TaskEvent, TransitionError};
use crate::store::{ClaimRequest, NewTask, Store, StoreError, TaskStoreExt};
use crate::task::{Status, Step};
use crate::time::{Clock, ManualClock};

/// Claims take high before medium before low, and FIFO within a priority.
pub async fn strict_priority_order_and_fifo<S: Store>(store: Arc<S>, clock: ManualClock) {
    let plan = [
        ("low-1", Priority::Low),
        ("high-1", Priority::High),
        ("medium-1", Priority::Medium),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
        ("medium-2", Priority::Medium),
        ("high-3", Priority::High),
    ];
    for (name, priority) in plan {
        store
            .create_task(new_task(name, priority))
            .await
            .expect("create");
        clock.advance(Duration::from_millis(1));
    }
    let mut order = Vec::new();
    for _ in 0..plan.len() {
        order.push(claim_one(&*store, "w").await.key.inventory_id.to_string());
    }
    assert_eq!(
        order,
        [
            "high-1", "high-2", "high-3", "medium-1", "medium-2", "low-1", "low-2"
        ],
        "claims must follow priority, then creation order"
    );
    let none = store
        .claim(&ClaimRequest::one(worker("w"), LEASE))
        .await
        .expect("claim");
    assert!(none.is_empty(), "an empty queue yields no task");
}

/// A claim may name another priority order (the runner's anti-starvation share).
pub async fn custom_priority_order_is_honoured<S: Store>(store: Arc<S>, _clock: ManualClock) {
    store
        .create_task(new_task("high", Priority::High))
        .await
        .expect("create");
    store
        .create_task(new_task("low", Priority::Low))
        .await
        .expect("create");
    store
        .create_task(new_task("medium", Priority::Medium))
        .await
        .expect("create");
    let request = ClaimRequest {
        priority_order: [Priority::Low, Priority::Medium, Priority::High],
        max: 3,
        ..ClaimRequest::one(worker("w"), LEASE)
    };
    let claimed = store.claim(&request).await.expect("claim");
    let names: Vec<String> = claimed
        .iter()
        .map(|t| t.key.inventory_id.to_string())
        .collect();
    assert_eq!(names, ["low", "medium", "high"]);
    let epochs: HashSet<u64> = claimed.iter().map(|t| t.epoch).collect();
    assert_eq!(epochs, HashSet::from([1]), "each first claim has epoch 1");
}

/// Tasks of excluded products are left in the queue for later claims.
pub async fn excluded_products_are_skipped<S: Store>(store: Arc<S>, _clock: ManualClock) {
    let busy = ProductName::new("fingerprint").expect("valid");
    store
        .create_task(NewTask {
            key: key("t1", "a", "fingerprint", "1"),
            priority: Priority::High,
        })
        .await
        .expect("create");
    store
        .create_task(new_task("b", Priority::Low))
        .await
        .expect("create");
    let request = ClaimRequest {
        exclude_products: vec![busy],
        max: 5,
        ..ClaimRequest::one(worker("w"), LEASE)
    };
    let claimed = store.claim(&request).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].key.product.as_str(), "adbreaks");
    let rest = claim_one(&*store, "w").await;
    assert_eq!(rest.key.product.as_str(), "fingerprint");
}

/// Many claimers racing over many tasks: every task is claimed exactly once.
pub async fn concurrent_claimers_never_share_a_task<S: Store>(store: Arc<S>, _clock: ManualClock) {
    const TASKS: usize = 300;
    const CLAIMERS: usize = 12;
    let batch: Vec<NewTask> = (0..TASKS)
        .map(|i| new_task(&format!("item-{i}"), Priority::ALL[i % 3]))
        .collect();
    store.create_tasks(batch).await.expect("create batch");
    let mut handles = Vec::new();
    for c in 0..CLAIMERS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let request = ClaimRequest {
                    max: 1 + c % 3,
                    ..ClaimRequest::one(worker(&format!("claimer-{c}")), LEASE)
                };
                let claimed = store.claim(&request).await.expect("claim");
                if claimed.is_empty() {
                    break mine;
                }
                mine.extend(claimed.into_iter().map(|t| t.id));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen = HashSet::new();
    for handle in handles {
        for id in handle.await.expect("claimer panicked") {
            assert!(seen.insert(id), "task {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), TASKS, "every task is claimed once");
}

/// An expired lease makes the task claimable again; the old holder's writes are refused.
pub async fn expired_lease_is_reclaimed_and_old_holder_fenced<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    let made = store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    let first = claim_one(&*store, "old").await;
    assert_eq!(first.epoch, 1);
    store
        .apply(
            first.id,
            1,
            &[TaskEvent::StepStarted {
                step: Step::S3Check,
            }],
        )
        .await
        .expect("holder may write");
    let lease = first.lease().expect("lease").clone();

    clock.set(lease.expires_at);
    let late = store
        .apply(
            first.id,
            1,
            &[TaskEvent::StepSucceeded {
                output: serde_json::json!({}),
                reused: false,
            }],
        )
        .await
        .expect_err("a write after expiry is refused");
    assert!(late.is_lease_lost(), "expected a lease error, got {late}");
    assert!(matches!(
        late,
        StoreError::Transition(TransitionError::LeaseExpired { .. })
    ));

    clock.advance(Duration::from_millis(1));
    let second = claim_one(&*store, "new").await;
    assert_eq!(
        second.id, made.task.id,
        "the expired task is claimable again"
    );
    assert_eq!(second.epoch, 2, "a new claim has a larger epoch");
    assert_eq!(second.attempt, 2);
    assert!(
        second.checkpoints.is_empty(),
        "the interrupted step has no checkpoint"
    );

    let stale = store
        .apply(
            first.id,
            1,
            &[TaskEvent::LeaseExtended { lease_ms: 60_000 }],
        )
        .await
        .expect_err("the old holder is fenced");
    assert!(matches!(
        stale,
        StoreError::Transition(TransitionError::LeaseLost {
            presented: Some(1),
            current: 2,
            ..
        })
    ));
    let tenant = &made.task.key.tenant;
    let current = store
        .get_task(tenant, made.task.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(current.lease().map(|l| l.worker.as_str()), Some("new"));
    let done = run_to_done(&*store, &second).await;
    assert_eq!(done.status(), Status::Done);

    // The store requeues on its own too, without a claim.
    store
        .create_task(new_task("b", Priority::Low))
        .await
        .expect("create");
    let held = claim_one(&*store, "w").await;
    assert!(store.requeue_expired().await.expect("requeue").is_empty());
    clock.advance(LEASE + Duration::from_millis(1));
    assert_eq!(
        store.requeue_expired().await.expect("requeue"),
        vec![held.id]
    );
    let requeued = store
        .get_task(tenant, held.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(requeued.status(), Status::Pending);
    assert!(requeued.ready_at().is_some_and(|at| at <= clock.now()));
}

/// A released lease (graceful shutdown) is claimable at once, by a larger epoch.
pub async fn released_lease_is_claimable_at_once<S: Store>(store: Arc<S>, _clock: ManualClock) {
    store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    let held = claim_one(&*store, "leaving").await;
    let released = store
        .apply(held.id, held.epoch, &[TaskEvent::LeaseReleased])
        .await
        .expect("release");
    assert_eq!(released.status(), Status::Pending);
    let again = claim_one(&*store, "staying").await;
    assert_eq!(again.id, held.id);
    assert!(again.epoch > held.epoch);
}

/// A heartbeat moves the lease's expiry, durably enough that no other worker can claim the
/// task until the new expiry, and writes no history entry (a long step would otherwise add one
/// every few seconds).
pub async fn heartbeats_extend_the_lease_without_history<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    store
        .create_task(new_task("long", Priority::Low))
        .await
        .expect("create");
    let held = claim_one(&*store, "holder").await;
    let tenant = held.key.tenant.clone();
    let trail = store.history(&tenant, held.id).await.expect("history");
    let extended = Duration::from_secs(600);
    for _ in 0..3 {
        clock.advance(LEASE / 2);
        let beat = store
            .extend_lease(held.id, held.epoch, extended)
            .await
            .expect("heartbeat");
        let expiry = beat.lease().map(|l| l.expires_at);
        assert_eq!(expiry, Some(clock.now().plus(extended)));
        let stored = store.get_task(&tenant, held.id).await.expect("get");
        let stored = stored.and_then(|t| t.lease().map(|l| l.expires_at));
        assert_eq!(stored, expiry, "the new expiry is stored");
    }
    assert_eq!(
        store.history(&tenant, held.id).await.expect("history"),
        trail,
        "heartbeats leave the history as it was"
    );
    clock.advance(LEASE * 2);
    let taken = store
        .claim(&ClaimRequest::one(worker("other"), LEASE))
        .await
        .expect("claim");
    assert!(
        taken.is_empty(),
        "the extended lease still holds: {taken:?}"
    );
}

/// A task whose leases keep expiring (a worker that crashes on it every time) stops at its
/// product's attempt limit: the claim that would start one attempt too many fails it instead,
/// as `attempts_exhausted` naming the lost worker, and `attempt` never passes the limit.
pub async fn expired_leases_count_against_the_attempt_limit<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    let poison = store
        .create_task(new_task("poison", Priority::High))
        .await
        .expect("create")
        .task;
    let product = poison.key.product.clone();
    let limited = ClaimRequest::one(worker("w"), LEASE).with_attempt_limit(product.clone(), 2);
    for attempt in 1..=2 {
        let claimed = store.claim(&limited).await.expect("claim");
        assert_eq!(claimed.len(), 1, "attempt {attempt} is claimed");
        assert_eq!(claimed[0].attempt, attempt);
        clock.advance(LEASE + Duration::from_millis(1));
    }
    let other = store
        .create_task(new_task("healthy", Priority::Low))
        .await
        .expect("create")
        .task;
    // The claim that meets the exhausted task (first in the queue) fails it instead of
    // claiming it; it may fill its room with others in the same call or leave them to the next.
    let mut ids: Vec<_> = Vec::new();
    for _ in 0..2 {
        let claimed = store.claim(&limited).await.expect("claim");
        ids.extend(claimed.iter().map(|t| t.id));
    }
    assert_eq!(
        ids,
        [other.id],
        "the exhausted task is not claimed; others are"
    );
    let ended = store
        .get_task(&poison.key.tenant, poison.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(ended.status(), Status::Failed);
    assert_eq!(ended.attempt, 2, "attempts never exceed the limit");
    let error = ended.last_error.expect("an error is recorded");
    assert_eq!(error.code(), "attempts_exhausted");
    let crate::error::TaskError::AttemptsExhausted { attempts, last } = error else {
        unreachable!("checked by code");
    };
    assert_eq!(attempts, 2);
    assert_eq!(last.code(), "worker_lost", "{last}");
    assert!(last.to_string().contains("expired"), "{last}");
    let history = store
        .history(&poison.key.tenant, poison.id)
        .await
        .expect("history");
    let last_entry = history.last().expect("entries");
    assert_eq!(
        (last_entry.event.as_str(), last_entry.to),
        ("gave_up", Status::Failed)
    );
}
