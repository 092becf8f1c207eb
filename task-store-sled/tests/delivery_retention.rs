//! Retention of webhook deliveries: those that ended (delivered or failed) before the cut-off
//! are deleted, pending ones stay however old, the ended index stays consistent across a
//! reopen, a database written before the index gets it at open, and a store with a retention
//! deletes them on its own.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use support::{open, raw_open};
use task_core::prelude::*;
use task_core::testing::{claim_one, new_task, run_to_done, webhook};
use task_core::webhooks::{
    AttemptOutcome, DeliveryId, DeliveryState, WebhookEvent, WebhookId, WebhookStore,
};
use task_store_sled::{SledOptions, SledStore};

const LEASE: Duration = Duration::from_secs(30);

/// Runs a task of `inventory` to done: its subscription gets one delivery.
async fn finished(store: &SledStore, inventory: &str) {
    store
        .create_task(new_task(inventory, Priority::High))
        .await
        .expect("create");
    let claimed = claim_one(store, "w").await;
    run_to_done(store, &claimed).await;
}

/// Takes every due delivery and ends each as `outcome` says (by its position).
async fn attempt_all(
    store: &SledStore,
    outcome: impl Fn(usize) -> AttemptOutcome,
) -> Vec<DeliveryId> {
    let taken = store
        .take_due_deliveries(100, LEASE, &[])
        .await
        .expect("take");
    let mut ids = Vec::new();
    for (i, delivery) in taken.iter().enumerate() {
        store
            .record_attempt(
                delivery.webhook_id,
                delivery.id,
                delivery.attempts,
                outcome(i),
            )
            .await
            .expect("record");
        ids.push(delivery.id);
    }
    ids
}

async fn kept(store: &SledStore, hook: WebhookId) -> HashSet<DeliveryId> {
    let tenant = TenantId::new("t1").expect("valid");
    store
        .list_deliveries(&tenant, hook, None, &PageRequest::first(100))
        .await
        .expect("list")
        .items
        .iter()
        .map(|d| d.id)
        .collect()
}

/// Three deliveries before the cut-off (delivered, failed, still retrying) and one delivered
/// after it; returns (the subscription, the cut-off, the ids expected to stay).
async fn populate(
    store: &SledStore,
    clock: &ManualClock,
) -> (WebhookId, Timestamp, Vec<DeliveryId>) {
    let hook = webhook("t1", &WebhookEvent::ENDS, clock.now());
    store.put_webhook(hook.clone()).await.expect("put webhook");
    for item in ["delivered", "failed", "retrying"] {
        finished(store, item).await;
    }
    let far = clock.now().plus(Duration::from_secs(86_400));
    let old = attempt_all(store, |i| match i {
        0 => AttemptOutcome::Delivered,
        1 => AttemptOutcome::GaveUp {
            error: "410 Gone".into(),
        },
        _ => AttemptOutcome::Retry {
            error: "503".into(),
            next_at: far,
        },
    })
    .await;
    assert_eq!(old.len(), 3);
    clock.advance(Duration::from_secs(3600));
    let cut = clock.now();
    finished(store, "recent").await;
    let recent = attempt_all(store, |_| AttemptOutcome::Delivered).await;
    assert_eq!(recent.len(), 1);
    (hook.id, cut, vec![old[2], recent[0]])
}

#[tokio::test]
async fn ended_deliveries_before_the_cut_off_go_and_pending_ones_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let (hook, cut, stay) = populate(&store, &clock).await;
    assert_eq!(kept(&store, hook).await.len(), 4);

    let deleted = store
        .prune_ended_deliveries_before(cut)
        .await
        .expect("prune");
    assert_eq!(deleted, 2, "the delivered and the failed one");
    assert_eq!(kept(&store, hook).await, stay.iter().copied().collect());
    assert_eq!(
        store.check_consistency().expect("check"),
        Vec::<String>::new()
    );
    assert_eq!(
        store
            .prune_ended_deliveries_before(cut)
            .await
            .expect("again"),
        0
    );
    // The one still retrying ends later; then it goes too once the cut-off passes it.
    let tenant = TenantId::new("t1").expect("valid");
    let pending = store
        .list_deliveries(
            &tenant,
            hook,
            Some(DeliveryState::Pending),
            &PageRequest::first(10),
        )
        .await
        .expect("list")
        .items;
    assert_eq!(
        pending.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![stay[0]]
    );
    drop(store);

    let store = open(dir.path(), &clock);
    assert_eq!(
        store.check_consistency().expect("check"),
        Vec::<String>::new()
    );
    assert_eq!(kept(&store, hook).await, stay.iter().copied().collect());
    clock.advance(Duration::from_secs(7200));
    assert_eq!(
        store
            .prune_ended_deliveries_before(clock.now())
            .await
            .expect("prune"),
        1,
        "the recent delivered one; the pending one stays"
    );
    assert_eq!(kept(&store, hook).await, HashSet::from([stay[0]]));
}

/// Removes what this build adds for delivery retention (the ended index and its marker), as a
/// build that kept none leaves the database.
fn forget_ended_index(dir: &std::path::Path) -> usize {
    let db = raw_open(dir);
    let meta = db.open_tree("meta").expect("meta");
    meta.remove("ended_deliveries_kept").expect("remove marker");
    let data = db.open_tree("data").expect("data");
    let keys: Vec<_> = data
        .scan_prefix(b"E")
        .map(|entry| entry.expect("entry").0)
        .collect();
    for key in &keys {
        data.remove(key).expect("remove index entry");
    }
    db.flush().expect("flush");
    keys.len()
}

#[tokio::test]
async fn a_database_written_before_the_index_gets_it_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let store = open(dir.path(), &clock);
    let (hook, cut, stay) = populate(&store, &clock).await;
    store.close().expect("close");
    assert_eq!(
        forget_ended_index(dir.path()),
        3,
        "three ended deliveries were indexed"
    );

    let store = open(dir.path(), &clock);
    assert_eq!(
        store.check_consistency().expect("check"),
        Vec::<String>::new()
    );
    assert_eq!(
        store
            .prune_ended_deliveries_before(cut)
            .await
            .expect("prune"),
        2
    );
    assert_eq!(kept(&store, hook).await, stay.into_iter().collect());
}

#[tokio::test]
async fn a_store_with_a_retention_deletes_ended_deliveries_on_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let options = SledOptions::default()
        .with_clock(Arc::new(clock.clone()))
        .with_retention(Duration::from_secs(60));
    let store = SledStore::open_with(dir.path(), options).expect("open");
    let hook = webhook("t1", &WebhookEvent::ENDS, clock.now());
    store.put_webhook(hook.clone()).await.expect("put webhook");
    finished(&store, "a").await;
    finished(&store, "b").await;
    let ids = attempt_all(&store, |i| match i {
        0 => AttemptOutcome::Delivered,
        _ => AttemptOutcome::Retry {
            error: "503".into(),
            next_at: clock.now().plus(Duration::from_secs(86_400)),
        },
    })
    .await;
    clock.advance(Duration::from_secs(61));
    // The committer runs a retention round about once a second; a round deletes the expired
    // deliveries before the expired tasks, so once it reports the two tasks the deliveries
    // are gone too.
    let mut pruned = store.pruned();
    tokio::time::timeout(
        Duration::from_secs(10),
        pruned.wait_for(|count| *count >= 2),
    )
    .await
    .expect("a retention round within 10 s")
    .expect("the store is open");
    assert_eq!(kept(&store, hook.id).await, HashSet::from([ids[1]]));
    assert_eq!(
        store.check_consistency().expect("check"),
        Vec::<String>::new()
    );
}
