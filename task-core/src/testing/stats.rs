//! Conformance: the status counts and per-minute activity a store keeps with its writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{claim_one, key, new_task, run_to_done};
use crate::error::TaskError;
use crate::ids::{Priority, ProductName, TenantId};
use crate::machine::TaskEvent;
use crate::stats::minute_of;
use crate::store::{NewTask, PageRequest, Store, TaskFilter};
use crate::task::{Status, Step};
use crate::time::{Clock, ManualClock, Timestamp};

/// Counts by (product, status) of `tenant`, read by listing every task: the truth the
/// store's counters must match.
async fn listed_counts<S: Store>(store: &S, tenant: &TenantId) -> BTreeMap<(String, Status), u64> {
    let mut counts = BTreeMap::new();
    let mut page = PageRequest::first(100);
    loop {
        let got = store
            .list_tasks(tenant, &TaskFilter::default(), &page)
            .await
            .expect("list");
        for task in &got.items {
            *counts
                .entry((task.key.product.to_string(), task.status()))
                .or_default() += 1;
        }
        match got.next {
            Some(next) => page.after = Some(next),
            None => return counts,
        }
    }
}

async fn kept_counts<S: Store>(
    store: &S,
    tenant: Option<&TenantId>,
) -> BTreeMap<(String, Status), u64> {
    let mut counts = BTreeMap::new();
    for count in store.status_counts(tenant).await.expect("status counts") {
        if count.count > 0 {
            *counts
                .entry((count.product.to_string(), count.status))
                .or_default() += count.count;
        }
    }
    counts
}

/// Asserts that the status counts the store keeps for `tenant` equal those of listing every
/// task of `tenant` (for crash and retention tests of each store); `context` names the case.
pub async fn assert_counts_match_listing<S: Store>(store: &S, tenant: &TenantId, context: &str) {
    let listed = listed_counts(store, tenant).await;
    assert!(
        !listed.is_empty(),
        "{context}: no task of {tenant} to count"
    );
    assert_eq!(
        kept_counts(store, Some(tenant)).await,
        listed,
        "{context}: kept counts differ from the listed tasks"
    );
}

/// The counters follow creates (not deduplicated ones), claims, retries, failures, cancels,
/// expired leases and completions, per tenant, and sum over tenants.
pub async fn status_counts_follow_every_change<S: Store>(store: Arc<S>, clock: ManualClock) {
    let t1 = TenantId::new("t1").expect("valid");
    let t2 = TenantId::new("t2").expect("valid");
    assert!(
        kept_counts(&*store, None).await.is_empty(),
        "a new store counts nothing"
    );
    let mut batch: Vec<NewTask> = (0..6)
        .map(|i| new_task(&format!("a{i}"), Priority::Low))
        .collect();
    batch.push(NewTask {
        key: key("t1", "s0", "scenes", "1"),
        priority: Priority::High,
    });
    batch.push(new_task("a0", Priority::Low)); // the same active key: not a new task
    store.create_tasks(batch).await.expect("create");

    let scenes = claim_one(&*store, "w").await; // high priority first
    assert_eq!(scenes.key.product.as_str(), "scenes");
    run_to_done(&*store, &scenes).await;
    let to_fail = claim_one(&*store, "w").await;
    let to_retry = claim_one(&*store, "w").await;
    let to_expire = claim_one(&*store, "w").await;
    let other = NewTask {
        key: key("t2", "b0", "adbreaks", "1"),
        priority: Priority::Medium,
    };
    store.create_task(other).await.expect("create");
    let permanent = TaskEvent::StepFailed {
        error: TaskError::Internal {
            message: "broken".into(),
        },
        retry_after_ms: None,
    };
    store
        .apply(
            to_fail.id,
            to_fail.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                permanent,
            ],
        )
        .await
        .expect("fail");
    let retry = TaskEvent::StepFailed {
        error: TaskError::Transient {
            step: Step::S3Check,
            message: "flaky".into(),
        },
        retry_after_ms: Some(60_000),
    };
    store
        .apply(
            to_retry.id,
            to_retry.epoch,
            &[
                TaskEvent::StepStarted {
                    step: Step::S3Check,
                },
                retry,
            ],
        )
        .await
        .expect("retry");
    let pending = store
        .list_tasks(
            &t1,
            &TaskFilter {
                status: Some(Status::Pending),
                ..TaskFilter::default()
            },
            &PageRequest::first(1),
        )
        .await
        .expect("list")
        .items;
    store
        .request_cancel(&t1, pending[0].id)
        .await
        .expect("cancel");
    clock.advance(Duration::from_secs(31));
    store.requeue_expired().await.expect("requeue");
    let expired = store.get_task(&t1, to_expire.id).await.expect("get");
    assert_eq!(expired.map(|t| t.status()), Some(Status::Pending));

    for tenant in [&t1, &t2] {
        assert_eq!(
            kept_counts(&*store, Some(tenant)).await,
            listed_counts(&*store, tenant).await,
            "the counters of {tenant} match its tasks"
        );
    }
    let mut both = listed_counts(&*store, &t1).await;
    for (slot, count) in listed_counts(&*store, &t2).await {
        *both.entry(slot).or_default() += count;
    }
    assert_eq!(
        kept_counts(&*store, None).await,
        both,
        "every tenant's counters sum up"
    );
    let t1_counts = kept_counts(&*store, Some(&t1)).await;
    let get = |product: &str, status| t1_counts.get(&(product.to_string(), status)).copied();
    assert_eq!(get("scenes", Status::Done), Some(1));
    assert_eq!(get("adbreaks", Status::Failed), Some(1));
    assert_eq!(get("adbreaks", Status::Cancelled), Some(1));
    assert_eq!(
        get("adbreaks", Status::Pending),
        Some(4),
        "3 never claimed, 1 retried, 1 expired, 1 cancelled"
    );
}

/// Each minute keeps what was created, how long tasks waited for their first claim, how long
/// each step ran and what ended, per tenant and product; `since` leaves older minutes out.
pub async fn activity_is_kept_per_minute<S: Store>(store: Arc<S>, clock: ManualClock) {
    let t1 = TenantId::new("t1").expect("valid");
    let start = clock.now();
    let first_minute = minute_of(start);
    store
        .create_task(new_task("a", Priority::Low))
        .await
        .expect("create");
    store
        .create_task(new_task("b", Priority::Low))
        .await
        .expect("create");
    store
        .create_task(NewTask {
            key: key("t2", "c", "adbreaks", "1"),
            priority: Priority::Low,
        })
        .await
        .expect("create");
    clock.set(Timestamp(first_minute.as_millis() + 60_000 + 1_000));
    let task = claim_one(&*store, "w").await;
    let waited = task.started_at.expect("claimed").since(start).as_millis() as u64;
    let mut epoch_task = task;
    for (i, step) in Step::ALL.into_iter().enumerate() {
        epoch_task = store
            .apply(
                epoch_task.id,
                epoch_task.epoch,
                &[TaskEvent::StepStarted { step }],
            )
            .await
            .expect("start");
        clock.advance(Duration::from_millis(100 * (i as u64 + 1)));
        let output = serde_json::json!({});
        epoch_task = store
            .apply(
                epoch_task.id,
                epoch_task.epoch,
                &[TaskEvent::StepSucceeded {
                    output,
                    reused: false,
                }],
            )
            .await
            .expect("succeed");
    }
    store
        .apply(epoch_task.id, epoch_task.epoch, &[TaskEvent::Done])
        .await
        .expect("done");

    let buckets = store
        .activity(Some(&t1), first_minute)
        .await
        .expect("activity");
    let adbreaks = ProductName::new("adbreaks").expect("valid");
    assert!(
        buckets
            .iter()
            .all(|b| b.tenant == t1 && b.product == adbreaks),
        "{buckets:?}"
    );
    assert_eq!(
        buckets.len(),
        2,
        "one bucket per minute with activity: {buckets:?}"
    );
    assert_eq!(buckets[0].minute, first_minute);
    assert_eq!(buckets[0].activity.created, 2);
    assert_eq!(buckets[0].activity.finished(), 0);
    let second = &buckets[1].activity;
    assert_eq!(
        buckets[1].minute,
        Timestamp(first_minute.as_millis() + 60_000)
    );
    assert_eq!((second.created, second.done), (0, 1));
    assert_eq!(
        (second.queue_wait.count, second.queue_wait.total_ms),
        (1, waited)
    );
    for (i, step) in Step::ALL.into_iter().enumerate() {
        let durations = second.step(step);
        assert_eq!(
            (durations.count, durations.total_ms),
            (1, 100 * (i as u64 + 1)),
            "{step:?}"
        );
    }

    let later = store
        .activity(Some(&t1), Timestamp(first_minute.as_millis() + 60_000))
        .await
        .expect("activity");
    assert_eq!(later.len(), 1, "since leaves the first minute out");
    let everyone = store.activity(None, first_minute).await.expect("activity");
    let created: u64 = everyone.iter().map(|b| b.activity.created).sum();
    assert_eq!(created, 3, "both tenants' buckets: {everyone:?}");
}

/// Listing filters by priority and by creation time, with paging.
pub async fn tasks_filter_by_priority_and_creation_time<S: Store>(
    store: Arc<S>,
    clock: ManualClock,
) {
    let t1 = TenantId::new("t1").expect("valid");
    let before = clock.now();
    for i in 0..5 {
        let priority = if i % 2 == 0 {
            Priority::High
        } else {
            Priority::Low
        };
        store
            .create_task(new_task(&format!("early{i}"), priority))
            .await
            .expect("create");
    }
    clock.advance(Duration::from_secs(10));
    let cut = clock.now();
    for i in 0..4 {
        store
            .create_task(new_task(&format!("late{i}"), Priority::High))
            .await
            .expect("create");
    }
    let list = |filter: TaskFilter| {
        let store = store.clone();
        let t1 = t1.clone();
        async move {
            let mut ids = Vec::new();
            let mut page = PageRequest::first(2);
            loop {
                let got = store.list_tasks(&t1, &filter, &page).await.expect("list");
                ids.extend(
                    got.items
                        .into_iter()
                        .map(|t| t.key.inventory_id.to_string()),
                );
                match got.next {
                    Some(next) => page.after = Some(next),
                    None => return ids,
                }
            }
        }
    };
    let high = list(TaskFilter {
        priority: Some(Priority::High),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(
        high,
        [
            "early0", "early2", "early4", "late0", "late1", "late2", "late3"
        ]
    );
    let early_high = list(TaskFilter {
        priority: Some(Priority::High),
        created_before: Some(cut),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(early_high, ["early0", "early2", "early4"]);
    let late = list(TaskFilter {
        created_from: Some(cut),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(late, ["late0", "late1", "late2", "late3"]);
    let none = list(TaskFilter {
        created_from: Some(before),
        created_before: Some(before),
        ..TaskFilter::default()
    })
    .await;
    assert!(none.is_empty());
}
