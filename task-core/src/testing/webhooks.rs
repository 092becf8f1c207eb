//! Conformance: webhook subscriptions and the outbox written with each status change.

use std::sync::Arc;
use std::time::Duration;

use super::{claim_one, key, run_to_done};
use crate::ids::{Priority, TenantId};
use crate::store::{NewTask, PageRequest, Store, StoreError};
use crate::task::Status;
use crate::time::{Clock, ManualClock, Timestamp};
use crate::webhooks::{AttemptOutcome, Delivery, DeliveryState, Webhook, WebhookEvent, WebhookId};

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("valid tenant")
}

/// A subscription of `owner` to `events`, created at `now`.
pub fn webhook(owner: &str, events: &[WebhookEvent], now: Timestamp) -> Webhook {
    Webhook {
        id: WebhookId::generate(),
        tenant: tenant(owner),
        url: format!("https://hooks.example.com/{owner}"),
        events: events.to_vec(),
        secret: "s3cret".into(),
        created_at: now,
    }
}

/// Creates a task of `owner` and runs it to done; returns its id.
async fn task_done<S: Store>(store: &S, owner: &str, item: &str) -> crate::ids::TaskId {
    let created = store
        .create_task(NewTask {
            key: key(owner, item, "adbreaks", "1"),
            priority: Priority::High,
        })
        .await
        .expect("create");
    let claimed = claim_one(store, "w1").await;
    assert_eq!(claimed.id, created.task.id);
    run_to_done(store, &claimed).await;
    created.task.id
}

async fn all<S: Store>(store: &S, owner: &str, webhook: WebhookId) -> Vec<Delivery> {
    store
        .list_deliveries(&tenant(owner), webhook, None, &PageRequest::first(100))
        .await
        .expect("list deliveries")
        .items
}

/// Subscriptions and their deliveries are the owner's only; each status change writes one
/// delivery per subscription that wants it, with the transition.
pub async fn status_changes_write_deliveries<S: Store>(store: Arc<S>, clock: ManualClock) {
    let now = clock.now();
    let ends = webhook("t1", &WebhookEvent::ENDS, now);
    let every = webhook("t1", &[WebhookEvent::TaskStatusChanged], now);
    let other = webhook("t2", &WebhookEvent::ENDS, now);
    for w in [&ends, &every, &other] {
        store.put_webhook(w.clone()).await.expect("put webhook");
    }
    assert_eq!(
        store
            .list_webhooks(&tenant("t1"))
            .await
            .expect("list")
            .len(),
        2
    );
    assert_eq!(
        store
            .get_webhook(&tenant("t2"), ends.id)
            .await
            .expect("get"),
        None,
        "another tenant's subscription is not found"
    );
    assert!(
        !store
            .delete_webhook(&tenant("t2"), ends.id)
            .await
            .expect("delete")
    );

    let id = task_done(&*store, "t1", "ep-1").await;
    let done = all(&*store, "t1", ends.id).await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(
        (done[0].event, done[0].status),
        (WebhookEvent::TaskDone, Status::Done)
    );
    assert_eq!(
        (done[0].task_id, done[0].state),
        (id, DeliveryState::Pending)
    );
    let changes: Vec<Status> = all(&*store, "t1", every.id)
        .await
        .iter()
        .rev()
        .map(|d| d.status)
        .collect();
    assert_eq!(changes, [Status::Pending, Status::Processing, Status::Done]);
    assert!(
        all(&*store, "t2", other.id).await.is_empty(),
        "t2 hears nothing of t1"
    );
    assert!(
        all(&*store, "t2", ends.id).await.is_empty(),
        "t2 cannot list t1's deliveries"
    );
    let history = store.history(&tenant("t1"), id).await.expect("history");
    let done_at = history.last().expect("entries").at;
    assert_eq!(
        done[0].occurred_at, done_at,
        "the delivery has the change's time"
    );
}

/// A taken delivery is leased: not due again until the lease ends, then due with the same
/// id; a stale attempt's outcome is refused; retries wait for their time.
pub async fn deliveries_are_leased_and_fenced<S: Store>(store: Arc<S>, clock: ManualClock) {
    let hook = webhook("t1", &[WebhookEvent::TaskDone], clock.now());
    store.put_webhook(hook.clone()).await.expect("put");
    task_done(&*store, "t1", "ep-1").await;
    let lease = Duration::from_secs(30);
    let first = store
        .take_due_deliveries(10, lease, &[])
        .await
        .expect("take");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 1);
    assert!(
        store
            .take_due_deliveries(10, lease, &[])
            .await
            .expect("take")
            .is_empty(),
        "a delivery in flight is not taken twice"
    );
    clock.advance(lease + Duration::from_secs(1));
    let again = store
        .take_due_deliveries(10, lease, &[])
        .await
        .expect("take");
    assert_eq!(
        again.len(),
        1,
        "an attempt whose lease ran out is due again"
    );
    assert_eq!((again[0].id, again[0].attempts), (first[0].id, 2));
    let stale = store
        .record_attempt(hook.id, first[0].id, 1, AttemptOutcome::Delivered)
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");

    let retry_at = clock.now().plus(Duration::from_secs(10));
    let retried = store
        .record_attempt(
            hook.id,
            first[0].id,
            2,
            AttemptOutcome::Retry {
                error: "HTTP 500".into(),
                next_at: retry_at,
            },
        )
        .await
        .expect("record retry");
    assert_eq!(retried.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(store.outbox_times().await.expect("times").0, Some(retry_at));
    assert!(
        store
            .take_due_deliveries(10, lease, &[])
            .await
            .expect("take")
            .is_empty()
    );
    clock.advance(Duration::from_secs(10));
    let third = store
        .take_due_deliveries(10, lease, &[])
        .await
        .expect("take");
    assert_eq!(third[0].attempts, 3);
    let delivered = store
        .record_attempt(hook.id, first[0].id, 3, AttemptOutcome::Delivered)
        .await
        .expect("record delivered");
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.last_error, None);
    let listed = all(&*store, "t1", hook.id).await;
    assert_eq!(listed, [delivered]);
    assert_eq!(store.outbox_times().await.expect("times"), (None, None));
}

/// A delivery given up is failed, listed by state, and can be re-sent by its owner only.
pub async fn failed_deliveries_can_be_resent<S: Store>(store: Arc<S>, clock: ManualClock) {
    let hook = webhook("t1", &[WebhookEvent::TaskDone], clock.now());
    store.put_webhook(hook.clone()).await.expect("put");
    task_done(&*store, "t1", "ep-1").await;
    let taken = store
        .take_due_deliveries(10, Duration::from_secs(30), &[])
        .await
        .expect("take");
    let id = taken[0].id;
    let failed = store
        .record_attempt(
            hook.id,
            id,
            1,
            AttemptOutcome::GaveUp {
                error: "refused".into(),
            },
        )
        .await
        .expect("give up");
    assert_eq!(failed.state, DeliveryState::Failed);
    let t1 = tenant("t1");
    let listed = store
        .list_deliveries(
            &t1,
            hook.id,
            Some(DeliveryState::Failed),
            &PageRequest::first(10),
        )
        .await
        .expect("list failed");
    assert_eq!(listed.items.len(), 1);
    let pending = store
        .list_deliveries(
            &t1,
            hook.id,
            Some(DeliveryState::Pending),
            &PageRequest::first(10),
        )
        .await
        .expect("list pending");
    assert!(pending.items.is_empty());
    let foreign = store.resend_delivery(&tenant("t2"), hook.id, id).await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "{foreign:?}"
    );
    clock.advance(Duration::from_secs(5));
    let resent = store
        .resend_delivery(&t1, hook.id, id)
        .await
        .expect("resend");
    assert_eq!(resent.state, DeliveryState::Pending);
    assert_eq!(resent.retry_since, clock.now());
    let twice = store.resend_delivery(&t1, hook.id, id).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let again = store
        .take_due_deliveries(10, Duration::from_secs(30), &[])
        .await
        .expect("take");
    assert_eq!((again[0].id, again[0].attempts), (id, 2));
}

/// Skipped subscriptions are left for later; deleting a subscription drops its deliveries;
/// listings page newest first.
pub async fn outbox_skips_pages_and_deletes<S: Store>(store: Arc<S>, clock: ManualClock) {
    let busy = webhook("t1", &[WebhookEvent::TaskStatusChanged], clock.now());
    let quiet = webhook("t1", &[WebhookEvent::TaskDone], clock.now());
    store.put_webhook(busy.clone()).await.expect("put");
    store.put_webhook(quiet.clone()).await.expect("put");
    task_done(&*store, "t1", "ep-1").await;
    clock.advance(Duration::from_secs(1));
    task_done(&*store, "t1", "ep-2").await;
    let (_, oldest) = store.outbox_times().await.expect("times");
    assert!(oldest.is_some());

    let taken = store
        .take_due_deliveries(100, Duration::from_secs(30), &[busy.id])
        .await
        .expect("take");
    assert_eq!(taken.len(), 2);
    assert!(taken.iter().all(|d| d.webhook_id == quiet.id), "{taken:?}");

    let t1 = tenant("t1");
    let mut seen = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let got = store
            .list_deliveries(&t1, busy.id, None, &page)
            .await
            .expect("list");
        seen.extend(got.items.iter().map(|d| d.id));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "three changes of two tasks");
    let mut newest_first = seen.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first);
    let bad = store
        .list_deliveries(
            &t1,
            busy.id,
            None,
            &PageRequest {
                after: Some("nonsense".into()),
                limit: 4,
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid { .. })), "{bad:?}");

    assert!(store.delete_webhook(&t1, busy.id).await.expect("delete"));
    assert!(all(&*store, "t1", busy.id).await.is_empty());
    assert_eq!(store.get_webhook(&t1, busy.id).await.expect("get"), None);
    let rest = store
        .take_due_deliveries(100, Duration::from_secs(30), &[])
        .await
        .expect("take");
    assert!(
        rest.is_empty(),
        "the deleted subscription's deliveries are gone: {rest:?}"
    );
}
