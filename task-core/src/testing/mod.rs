//! The backend-agnostic conformance suite (feature `testing`).
//!
//! Every store runs these functions from its own tests, the way object_store runs one integration
//! suite against every object store. Each function takes a fresh, empty store built on the given
//! [`ManualClock`] and panics with a message naming the broken rule. The
//! [`conformance_suite!`](crate::conformance_suite) macro expands into one `#[tokio::test]` per function.
//!
//! ```
//! # // The doctest only checks that the macro expands for the in-memory store.
//! use std::sync::Arc;
//! use task_core::{memory::MemoryStore, time::ManualClock};
//! task_core::conformance_suite!(|clock: ManualClock| (MemoryStore::new(Arc::new(clock)), ()));
//! # fn main() {}
//! ```

mod batches;
mod catalog_results;
mod claims;
mod fairness;
mod hierarchy;
mod metrics;
mod recording;
mod stats;
mod tasks;
mod waits;
mod webhooks;

pub use batches::*;
pub use catalog_results::*;
pub use claims::*;
pub use fairness::*;
pub use hierarchy::*;
pub use metrics::*;
pub use recording::{RecordingStore, StoreCalls};
pub use stats::*;
pub use tasks::*;
pub use waits::*;
pub use webhooks::*;

use std::time::Duration;

use crate::ids::{InventoryId, Priority, ProductName, TenantId, Version, WorkerId};
use crate::machine::TaskEvent;
use crate::store::{ClaimRequest, NewTask, Store};
use crate::task::{Step, Task, TaskKey};

/// Expands into one `#[tokio::test]` per conformance function.
///
/// `$make` is called with a fresh [`ManualClock`](crate::time::ManualClock) and returns
/// `(store, guard)`; the guard (e.g. a temporary directory) lives until the test ends.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            dedup_of_active_key,
            batch_create_dedups_within_and_across_calls,
            strict_priority_order_and_fifo,
            custom_priority_order_is_honoured,
            excluded_products_are_skipped,
            concurrent_claimers_never_share_a_task,
            expired_lease_is_reclaimed_and_old_holder_fenced,
            expired_leases_count_against_the_attempt_limit,
            released_lease_is_claimable_at_once,
            heartbeats_extend_the_lease_without_history,
            tenants_take_turns_despite_a_backlog,
            equal_backlogs_alternate,
            product_limit_counts_processing_tasks,
            requeued_task_keeps_its_queue_position,
            cancel_pending_processing_and_finished,
            retry_waits_for_its_time_and_keeps_checkpoints,
            history_holds_every_transition_in_order,
            pagination_returns_every_task_exactly_once,
            tenants_never_see_each_other,
            apply_is_atomic,
            claim_can_start_the_first_step,
            apply_many_entries_succeed_and_fail_alone,
            subscribers_see_every_change,
            next_wakeup_reports_retry_and_lease_times,
            catalog_upsert_get_list_delete,
            delete_item_cancels_its_active_tasks,
            parent_chains_are_stored,
            invalid_parents_are_refused,
            another_tenants_parent_is_not_found,
            children_are_listed_by_parent,
            children_move_and_parents_keep_their_type,
            results_are_idempotent_and_versioned,
            cache_round_trips,
            status_changes_write_deliveries,
            deliveries_are_leased_and_fenced,
            failed_deliveries_can_be_resent,
            outbox_skips_pages_and_deletes,
            status_counts_follow_every_change,
            activity_is_kept_per_minute,
            tasks_filter_by_priority_and_creation_time,
            waiting_tasks_wake_once_every_awaited_task_ends,
            a_wait_for_unknown_or_foreign_tasks_is_refused,
            cancelling_a_waiting_task_leaves_its_awaited_tasks,
            tasks_the_store_ends_are_counted
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = $crate::time::ManualClock::default();
                #[allow(clippy::redundant_closure_call)]
                let (store, _guard) = ($make)(clock.clone());
                $crate::testing::$name(::std::sync::Arc::new(store), clock).await;
            }
        )*
    };
}

/// A task key from plain strings; panics on invalid input (test helper).
pub fn key(tenant: &str, inventory: &str, product: &str, version: &str) -> TaskKey {
    TaskKey {
        tenant: TenantId::new(tenant).expect("valid tenant"),
        inventory_id: InventoryId::new(inventory).expect("valid inventory id"),
        product: ProductName::new(product).expect("valid product"),
        version: Version::new(version).expect("valid version"),
    }
}

/// A [`NewTask`] for `inventory` of tenant `t1`, product `adbreaks`, version `1`.
pub fn new_task(inventory: &str, priority: Priority) -> NewTask {
    NewTask {
        key: key("t1", inventory, "adbreaks", "1"),
        priority,
    }
}

/// A worker id; panics on invalid input.
pub fn worker(name: &str) -> WorkerId {
    WorkerId::new(name).expect("valid worker id")
}

/// The lease length used by the suite.
pub const LEASE: Duration = Duration::from_secs(30);

/// Claims one task for `name`, panicking if none is ready.
pub async fn claim_one<S: Store + ?Sized>(store: &S, name: &str) -> Task {
    let mut claimed = store
        .claim(&ClaimRequest::one(worker(name), LEASE))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "expected one claimable task");
    claimed.remove(0)
}

/// Claims up to `max` ready tasks for `name`, in the default priority order.
pub async fn claim_up_to<S: Store + ?Sized>(store: &S, name: &str, max: usize) -> Vec<Task> {
    let request = ClaimRequest {
        max,
        ..ClaimRequest::one(worker(name), LEASE)
    };
    store.claim(&request).await.expect("claim")
}

/// Runs every remaining step of a claimed task and ends it done.
pub async fn run_to_done<S: Store + ?Sized>(store: &S, task: &Task) -> Task {
    let epoch = task.epoch;
    let mut events = Vec::new();
    for step in Step::ALL
        .into_iter()
        .filter(|s| task.checkpoint(*s).is_none())
    {
        events.push(TaskEvent::StepStarted { step });
        events.push(TaskEvent::StepSucceeded {
            output: serde_json::json!({ "step": step.as_str() }),
            reused: false,
        });
    }
    events.push(TaskEvent::Done);
    store
        .apply(task.id, epoch, &events)
        .await
        .expect("run to done")
}
