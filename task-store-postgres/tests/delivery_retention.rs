//! The retention of webhook deliveries: those that ended (delivered or failed) before the
//! cut-off are deleted, in batches; pending ones stay whatever their age, and so do those that
//! ended after the cut-off; a store opened with a retention does it on its own.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use task_core::ids::{Priority, TenantId};
use task_core::store::{NewTask, PageRequest, TaskStore};
use task_core::testing::{new_task, webhook};
use task_core::time::{Clock, ManualClock, Timestamp};
use task_core::webhooks::{
    AttemptOutcome, Delivery, DeliveryId, DeliveryState, WebhookEvent, WebhookId, WebhookStore,
};
use task_store_postgres::PostgresStore;

/// Long enough that a delivery taken and never recorded stays in flight through the test.
const LEASE: Duration = Duration::from_secs(86_400);

fn t1() -> TenantId {
    TenantId::new("t1").expect("valid")
}

async fn open(clock: &ManualClock) -> (PostgresStore, support::TestSchema) {
    let name = support::fresh_schema();
    let guard = support::TestSchema {
        url: support::database_url(),
        name: name.clone(),
    };
    (
        support::open_with(support::options(&name, clock)).await,
        guard,
    )
}

/// Creates one task per name: each writes one delivery (task.status_changed, to pending) per
/// subscription of t1.
async fn create(store: &PostgresStore, names: impl Iterator<Item = String>) {
    let batch: Vec<NewTask> = names.map(|n| new_task(&n, Priority::Low)).collect();
    store.create_tasks(batch).await.expect("create");
}

async fn deliveries(store: &PostgresStore, hook: WebhookId) -> Vec<Delivery> {
    let page = store
        .list_deliveries(&t1(), hook, None, &PageRequest::first(100))
        .await
        .expect("list deliveries");
    assert_eq!(page.next, None, "one page holds them all");
    page.items
}

fn ids(deliveries: &[Delivery]) -> HashSet<DeliveryId> {
    deliveries.iter().map(|d| d.id).collect()
}

async fn record(store: &PostgresStore, d: &Delivery, outcome: AttemptOutcome) -> Delivery {
    store
        .record_attempt(d.webhook_id, d.id, d.attempts, outcome)
        .await
        .expect("record attempt")
}

fn gave_up() -> AttemptOutcome {
    AttemptOutcome::GaveUp {
        error: "HTTP 500".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_ended_deliveries_and_keeps_pending_ones() {
    let clock = ManualClock::default();
    let (store, _guard) = open(&clock).await;
    let t0 = clock.now();
    let hook = webhook("t1", &[WebhookEvent::TaskStatusChanged], t0);
    // Never taken (always skipped): its deliveries stay pending, the oldest from t0 on.
    let quiet = webhook("t1", &[WebhookEvent::TaskStatusChanged], t0);
    store.put_webhook(hook.clone()).await.expect("put");
    store.put_webhook(quiet.clone()).await.expect("put");

    // Seven old deliveries: 3 delivered, 2 failed, 1 pending for a retry much later, 1 taken
    // and still in flight (both pending ones have an old last attempt).
    create(&store, (0..7).map(|i| format!("old-{i}"))).await;
    let old = store
        .take_due_deliveries(100, LEASE, &[quiet.id])
        .await
        .expect("take");
    assert_eq!(old.len(), 7);
    clock.advance(Duration::from_secs(1));
    for d in &old[..3] {
        let delivered = record(&store, d, AttemptOutcome::Delivered).await;
        assert_eq!(delivered.state, DeliveryState::Delivered);
    }
    for d in &old[3..5] {
        assert_eq!(
            record(&store, d, gave_up()).await.state,
            DeliveryState::Failed
        );
    }
    let retry = AttemptOutcome::Retry {
        error: "timed out".into(),
        next_at: t0.plus(Duration::from_secs(10 * 86_400)),
    };
    assert_eq!(
        record(&store, &old[5], retry).await.state,
        DeliveryState::Pending
    );
    let old_ended = ids(&old[..5]);

    // Past the cut-off: three more, one delivered, one failed, one never taken.
    clock.advance(Duration::from_secs(3600));
    let cutoff = clock.now();
    clock.advance(Duration::from_secs(1));
    create(&store, (0..3).map(|i| format!("recent-{i}"))).await;
    let recent = store
        .take_due_deliveries(2, LEASE, &[quiet.id])
        .await
        .expect("take");
    assert_eq!(recent.len(), 2, "only the recent deliveries are due");
    assert!(recent.iter().all(|d| d.occurred_at > cutoff));
    clock.advance(Duration::from_secs(1));
    record(&store, &recent[0], AttemptOutcome::Delivered).await;
    record(&store, &recent[1], gave_up()).await;

    let before = deliveries(&store, hook.id).await;
    assert_eq!(before.len(), 10);
    let quiet_before = deliveries(&store, quiet.id).await;
    assert_eq!(quiet_before.len(), 10);
    assert!(
        quiet_before.iter().any(|d| d.occurred_at < cutoff),
        "an old pending delivery that was never attempted"
    );

    assert_eq!(
        store
            .prune_ended_deliveries_before(cutoff)
            .await
            .expect("prune"),
        5
    );
    let left = deliveries(&store, hook.id).await;
    let expected: HashSet<DeliveryId> = ids(&before).difference(&old_ended).copied().collect();
    assert_eq!(ids(&left), expected);
    assert!(ids(&left).contains(&old[5].id) && ids(&left).contains(&old[6].id));
    let pending = left
        .iter()
        .filter(|d| d.state == DeliveryState::Pending)
        .count();
    assert_eq!(
        pending, 3,
        "both old pending ones and the recent one: {left:?}"
    );
    assert_eq!(
        ids(&deliveries(&store, quiet.id).await),
        ids(&quiet_before),
        "pending deliveries stay whatever their age"
    );
    assert_eq!(
        store
            .prune_ended_deliveries_before(cutoff)
            .await
            .expect("prune"),
        0
    );

    // With a retention, the store prunes on its own: the recent ended ones become old too.
    let name = store.schema().to_owned();
    let options = support::options(&name, &clock).with_retention(Duration::from_secs(60));
    let pruning = support::open_with(options).await;
    clock.advance(Duration::from_secs(120));
    let pending_ids: HashSet<DeliveryId> = left
        .iter()
        .filter(|d| d.state == DeliveryState::Pending)
        .map(|d| d.id)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut remaining = deliveries(&pruning, hook.id).await;
    while ids(&remaining) != pending_ids && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        remaining = deliveries(&pruning, hook.id).await;
    }
    assert_eq!(
        ids(&remaining),
        pending_ids,
        "the background retention deleted the ended deliveries, kept the pending ones"
    );
    assert_eq!(deliveries(&pruning, quiet.id).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_deliveries_are_deleted_over_several_batches() {
    let clock = ManualClock::default();
    let (store, _guard) = open(&clock).await;
    let hook = webhook("t1", &[WebhookEvent::TaskStatusChanged], clock.now());
    store.put_webhook(hook.clone()).await.expect("put");
    create(&store, (0..1100).map(|i| format!("item-{i}"))).await;
    // 1050 delivered (more than one batch of 1000) at t0, 50 left pending; the rules were
    // tested above, so the rows are ended directly.
    let ended = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $1,
             next_attempt_at = NULL, attempts = 1, last_attempt_at = $1
         WHERE id IN (SELECT id FROM webhook_deliveries ORDER BY id LIMIT 1050)",
    )
    .bind(i64::try_from(clock.now().as_millis()).expect("millis"))
    .execute(store.pool())
    .await
    .expect("end deliveries");
    assert_eq!(ended.rows_affected(), 1050);
    clock.advance(Duration::from_secs(60));
    let cutoff = clock.now();
    assert_eq!(
        store
            .prune_ended_deliveries_before(cutoff)
            .await
            .expect("prune"),
        1050
    );
    let left = deliveries(&store, hook.id).await;
    assert_eq!(left.len(), 50);
    assert!(left.iter().all(|d| d.state == DeliveryState::Pending));
    assert_eq!(
        store
            .prune_ended_deliveries_before(Timestamp::from_millis(u64::MAX >> 2))
            .await
            .expect("prune"),
        0,
        "pending deliveries are never deleted"
    );
}
