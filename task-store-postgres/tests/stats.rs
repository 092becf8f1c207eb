//! Status counts in PostgreSQL: equal to the tasks after writers stop in the middle of their
//! transactions and a fresh store opens the schema, after the background fold and after a
//! prune; and filled from the stored tasks by the migration that adds them.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Executor;
use task_core::prelude::*;
use task_core::testing::{assert_counts_match_listing, claim_up_to, new_task, run_to_done};
use task_store_postgres::PostgresStore;

/// Creates, claims and completes tasks until aborted.
async fn writer(store: Arc<PostgresStore>, name: String) {
    for i in 0.. {
        let Ok(created) = store
            .create_task(new_task(&format!("{name}-{i}"), Priority::ALL[i % 3]))
            .await
        else {
            return;
        };
        if i % 3 == 0 {
            let _ = store
                .request_cancel(&created.task.key.tenant, created.task.id)
                .await;
        }
        if let Some(task) = claim_up_to(&*store, &name, 1).await.pop() {
            if i % 2 == 0 {
                run_to_done(&*store, &task).await;
            } else {
                let _ = store
                    .apply(
                        task.id,
                        task.epoch,
                        &[TaskEvent::StepStarted {
                            step: Step::S3Check,
                        }],
                    )
                    .await;
            }
        }
    }
}

/// Waits until the background fold emptied the change tables of `schema`.
async fn wait_for_fold(schema: &str) {
    let mut conn = support::connect().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT (SELECT count(*) FROM \"{schema}\".task_count_changes)
                  + (SELECT count(*) FROM \"{schema}\".task_activity_changes)"
        ))
        .fetch_one(&mut conn)
        .await
        .expect("count changes");
        if left == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{left} changes still not folded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_the_tasks_after_a_crash_a_fold_and_a_prune() {
    let clock = ManualClock::default();
    let (store, schema) = support::open(clock.clone());
    let store = Arc::new(store);
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(writer(store.clone(), format!("w{w}"))))
        .collect();
    // Let the writers get well into their work (tasks done, others mid-step), then crash.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = store.status_counts(None).await.expect("counts");
        let done: u64 = counts
            .iter()
            .filter(|c| c.status == Status::Done)
            .map(|c| c.count)
            .sum();
        if done >= 40 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writers finished only {done} tasks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The crash: every writer stops wherever it is, open transactions are rolled back by the
    // server when their connections go with the store.
    for w in writers {
        w.abort();
        let _ = w.await;
    }
    drop(store);

    let reopened = support::open_with(support::options(&schema.name, &clock)).await;
    let tenant = TenantId::new("t1").expect("valid");
    assert_counts_match_listing(&reopened, &tenant, "after the crash").await;
    let activity = reopened
        .activity(None, Timestamp::from_millis(0))
        .await
        .expect("activity");
    assert!(activity.iter().any(|b| b.activity.done > 0), "{activity:?}");
    wait_for_fold(&schema.name).await;
    assert_counts_match_listing(&reopened, &tenant, "after the fold").await;
    assert_eq!(
        reopened
            .activity(None, Timestamp::from_millis(0))
            .await
            .expect("activity"),
        activity,
        "folding changes nothing a reader sees"
    );
    let pruned = reopened
        .prune_finished_before(Timestamp::from_millis(u64::MAX >> 2))
        .await
        .expect("prune");
    assert!(pruned > 0, "something finished to prune");
    assert_counts_match_listing(&reopened, &tenant, "after the prune").await;
    wait_for_fold(&schema.name).await;
    assert_counts_match_listing(&reopened, &tenant, "after the prune's fold").await;
    let finished: u64 = reopened
        .status_counts(Some(&tenant))
        .await
        .expect("counts")
        .iter()
        .filter(|c| !c.status.is_active())
        .map(|c| c.count)
        .sum();
    assert_eq!(finished, 0, "pruned tasks left the counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_counts_the_tasks_already_stored() {
    let clock = ManualClock::default();
    let (store, schema) = support::open(clock.clone());
    let made = store
        .create_tasks(
            (0..6)
                .map(|i| new_task(&format!("i{i}"), Priority::Low))
                .collect(),
        )
        .await
        .expect("create");
    let task = claim_up_to(&store, "w", 1).await.pop().expect("claimed");
    run_to_done(&store, &task).await;
    store
        .request_cancel(&made[5].task.key.tenant, made[5].task.id)
        .await
        .expect("cancel");
    let expected = store.status_counts(None).await.expect("counts");
    drop(store);
    // The schema as version 4 left it: no statistics tables (nor the later waiting-task index
    // and catalog parents, nor the index of ended deliveries).
    let mut conn = support::connect().await;
    let name = &schema.name;
    conn.execute(
        format!(
            "DROP TABLE \"{name}\".task_counts, \"{name}\".task_count_changes,
                        \"{name}\".task_activity, \"{name}\".task_activity_changes;
             DROP INDEX \"{name}\".tasks_waiting;
             DROP INDEX \"{name}\".catalog_items_by_parent;
             ALTER TABLE \"{name}\".catalog_items DROP COLUMN parent_id;
             DROP INDEX \"{name}\".webhook_deliveries_ended;
             DELETE FROM \"{name}\".schema_version WHERE version >= 5;"
        )
        .as_str(),
    )
    .await
    .expect("back to version 4");

    let migrated = support::open_with(support::options(name, &clock)).await;
    assert_eq!(
        migrated.status_counts(None).await.expect("counts"),
        expected
    );
    let tenant = TenantId::new("t1").expect("valid");
    assert_counts_match_listing(&migrated, &tenant, "after the migration").await;
}
