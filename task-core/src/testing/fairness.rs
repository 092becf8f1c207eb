//! Conformance: tenants take turns, per-product limits hold across claims, and a requeued
//! task keeps its queue position.

use std::sync::Arc;
use std::time::Duration;

use super::{LEASE, claim_one, claim_up_to, key, new_task, run_to_done, worker};
use crate::ids::{Priority, ProductName, TaskId};
use crate::store::{ClaimRequest, NewTask, Store};
use crate::task::Task;
use crate::time::ManualClock;

/// The backlog of the busy tenant in [`tenants_take_turns_despite_a_backlog`].
pub const BACKLOG: usize = 2_000;

fn tenant_task(tenant: &str, inventory: &str, product: &str) -> NewTask {
    NewTask {
        key: key(tenant, inventory, product, "1"),
        priority: Priority::Medium,
    }
}

fn tenants(tasks: &[Task]) -> Vec<String> {
    tasks.iter().map(|t| t.key.tenant.to_string()).collect()
}

/// One tenant's backlog does not delay another tenant's single task of the same priority by
/// more than one claim round: a claim of 2 takes it, and so does the second of two claims of 1.
pub async fn tenants_take_turns_despite_a_backlog<S: Store>(store: Arc<S>, clock: ManualClock) {
    let backlog: Vec<NewTask> = (0..BACKLOG)
        .map(|i| tenant_task("busy", &format!("item-{i}"), "adbreaks"))
        .collect();
    for chunk in backlog.chunks(500) {
        store.create_tasks(chunk.to_vec()).await.expect("create");
    }
    clock.advance(Duration::from_millis(1));
    let single = store
        .create_task(tenant_task("quiet", "one", "adbreaks"))
        .await
        .expect("create")
        .task;
    let round = claim_up_to(&*store, "w", 2).await;
    assert!(
        round.iter().any(|t| t.id == single.id),
        "a claim of 2 takes the quiet tenant's task: got {:?}",
        tenants(&round)
    );

    clock.advance(Duration::from_millis(1));
    let second = store
        .create_task(tenant_task("quiet", "two", "adbreaks"))
        .await
        .expect("create")
        .task;
    let mut ones = Vec::new();
    for _ in 0..2 {
        ones.push(claim_one(&*store, "w").await);
    }
    assert!(
        ones.iter().any(|t| t.id == second.id),
        "one of two claims of 1 takes the quiet tenant's task: got {:?}",
        tenants(&ones)
    );
    // The busy tenant's own tasks still come FIFO.
    let busy: Vec<&Task> = round
        .iter()
        .chain(&ones)
        .filter(|t| t.key.tenant.as_str() == "busy")
        .collect();
    let names: Vec<String> = busy
        .iter()
        .map(|t| t.key.inventory_id.to_string())
        .collect();
    assert_eq!(names[..2], ["item-0", "item-1"], "FIFO within a tenant");
}

/// Tenants with equal backlogs alternate, whatever the claim size.
pub async fn equal_backlogs_alternate<S: Store>(store: Arc<S>, clock: ManualClock) {
    for tenant in ["ta", "tb"] {
        let batch: Vec<NewTask> = (0..6)
            .map(|i| tenant_task(tenant, &format!("{tenant}-{i}"), "adbreaks"))
            .collect();
        store.create_tasks(batch).await.expect("create");
        clock.advance(Duration::from_millis(1));
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        order.extend(tenants(&[claim_one(&*store, "w").await]));
    }
    assert_eq!(order, ["ta", "tb", "ta", "tb"], "claims of 1 alternate");
    let four = claim_up_to(&*store, "w", 4).await;
    let mut names = tenants(&four);
    assert_eq!(names.len(), 4);
    names.sort();
    assert_eq!(
        names,
        ["ta", "ta", "tb", "tb"],
        "a claim of 4 takes 2 of each"
    );
    let items: Vec<String> = four
        .iter()
        .filter(|t| t.key.tenant.as_str() == "ta")
        .map(|t| t.key.inventory_id.to_string())
        .collect();
    assert_eq!(items, ["ta-2", "ta-3"], "FIFO within a tenant");
}

/// A product's limit counts the tasks of it already processing, whoever claimed them: at the
/// limit a claim takes other products only; after one finishes, one more is claimable.
pub async fn product_limit_counts_processing_tasks<S: Store>(store: Arc<S>, clock: ManualClock) {
    let limited = ProductName::new("fingerprint").expect("valid");
    for i in 0..4 {
        store
            .create_task(tenant_task("t1", &format!("fp-{i}"), "fingerprint"))
            .await
            .expect("create");
    }
    clock.advance(Duration::from_millis(1));
    for i in 0..2 {
        store
            .create_task(tenant_task("t1", &format!("ab-{i}"), "adbreaks"))
            .await
            .expect("create");
    }
    // Two claimed by a worker that knows no limit (another process, say).
    let first = claim_up_to(&*store, "other", 2).await;
    assert!(first.iter().all(|t| t.key.product == limited));
    let request = |max| ClaimRequest {
        max,
        ..ClaimRequest::one(worker("w"), LEASE).with_product_limit(limited.clone(), 2)
    };
    let claimed = store.claim(&request(5)).await.expect("claim");
    let products: Vec<&str> = claimed.iter().map(|t| t.key.product.as_str()).collect();
    assert_eq!(
        products,
        ["adbreaks", "adbreaks"],
        "no fingerprint task beyond the limit of 2; other products are claimed"
    );
    run_to_done(&*store, &first[0]).await;
    let more = store.claim(&request(5)).await.expect("claim");
    let products: Vec<&str> = more.iter().map(|t| t.key.product.as_str()).collect();
    assert_eq!(
        products,
        ["fingerprint"],
        "one slot freed, one more claimed"
    );
    // An expired lease no longer counts.
    clock.advance(LEASE + Duration::from_millis(1));
    let after = store.claim(&request(5)).await.expect("claim");
    let fingerprints = after.iter().filter(|t| t.key.product == limited).count();
    assert_eq!(fingerprints, 2, "the expired leases free their slots");
    assert_eq!(after.len(), 4, "two fingerprint, two adbreaks");
}

/// A task whose lease expired goes back to its old place, ahead of the backlog queued since
/// and of tasks queued at the same time after it.
pub async fn requeued_task_keeps_its_queue_position<S: Store>(store: Arc<S>, clock: ManualClock) {
    let batch: Vec<NewTask> = (0..50)
        .map(|i| new_task(&format!("item-{i}"), Priority::Low))
        .collect();
    store.create_tasks(batch).await.expect("create");
    let lost = claim_one(&*store, "dies").await;
    assert_eq!(lost.key.inventory_id.as_str(), "item-0");
    clock.advance(Duration::from_millis(5));
    let later: Vec<NewTask> = (50..100)
        .map(|i| new_task(&format!("item-{i}"), Priority::Low))
        .collect();
    store.create_tasks(later).await.expect("create");
    clock.advance(LEASE + Duration::from_millis(1));
    let requeued: Vec<TaskId> = store.requeue_expired().await.expect("requeue");
    assert_eq!(requeued, [lost.id]);
    let next = claim_one(&*store, "survivor").await;
    assert_eq!(
        next.id, lost.id,
        "the requeued task is next, not behind the backlog"
    );
    assert_eq!(next.attempt, 2);
    let after = claim_one(&*store, "survivor").await;
    assert_eq!(after.key.inventory_id.as_str(), "item-1");
}
