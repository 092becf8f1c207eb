//! Many callers at once: the committer groups their calls, and every call still gets its own
//! outcome (a refused call leaves nothing behind, even when grouped with accepted ones).

use std::time::Duration;

use task_core::prelude::*;
use task_core::testing::{key, worker};
use task_store_sled::SledStore;

const WORKERS: usize = 48;
const ROUNDS: usize = 5;

async fn work(store: SledStore, index: usize) -> usize {
    let me = worker(&format!("w{index}"));
    let mut finished = 0;
    for round in 0..ROUNDS {
        // Two workers share each key: one of the two creates finds the other's active task.
        let new = NewTask {
            key: key(
                "t1",
                &format!("item-{}-{round}", index / 2),
                "adbreaks",
                "1",
            ),
            priority: Priority::ALL[index % 3],
        };
        store.create_task(new).await.expect("create");
        let request = ClaimRequest {
            max: 2,
            ..ClaimRequest::one(me.clone(), Duration::from_secs(600))
        };
        for task in store.claim(&request).await.expect("claim") {
            // A stale epoch is refused, and its events are not applied.
            let stale = store
                .apply(
                    task.id,
                    task.epoch + 1,
                    &[TaskEvent::StepStarted {
                        step: Step::S3Check,
                    }],
                )
                .await;
            assert!(stale.is_err_and(|e| e.is_lease_lost()));
            let mut events = vec![TaskEvent::StepStarted {
                step: Step::S3Check,
            }];
            for step in Step::ALL {
                if step != Step::S3Check {
                    events.push(TaskEvent::StepStarted { step });
                }
                let output = serde_json::json!({ "step": step.as_str() });
                let saved = store
                    .apply(task.id, task.epoch, &events)
                    .await
                    .expect("step");
                assert_eq!(saved.checkpoints.len(), step.index());
                events = vec![TaskEvent::StepSucceeded {
                    output,
                    reused: false,
                }];
            }
            // The second event is refused after the first was accepted: neither is applied.
            let refused = store
                .apply(task.id, task.epoch, &[events[0].clone(), events[0].clone()])
                .await;
            assert!(refused.is_err(), "{refused:?}");
            events.push(TaskEvent::Done);
            let done = store
                .apply(task.id, task.epoch, &events)
                .await
                .expect("done");
            assert_eq!(done.status(), Status::Done);
            finished += 1;
        }
    }
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_calls_keep_their_own_outcomes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open");
    let handles: Vec<_> = (0..WORKERS)
        .map(|i| tokio::spawn(work(store.clone(), i)))
        .collect();
    let mut finished = 0;
    for handle in handles {
        finished += handle.await.expect("worker");
    }
    let stats = store.commit_stats();
    assert!(
        stats.commits >= 1 && stats.commits <= stats.writes,
        "{stats:?}"
    );
    let problems = store.check_consistency().expect("check");
    assert!(problems.is_empty(), "{problems:#?}");
    let tenant = TenantId::new("t1").expect("valid");
    let all = store
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(10_000))
        .await
        .expect("list");
    // A create finds the active task of its key, or makes a new one once that task ended.
    let made = all.items.len();
    assert!(
        (WORKERS / 2 * ROUNDS..=WORKERS * ROUNDS).contains(&made),
        "{made}"
    );
    let done = all
        .items
        .iter()
        .filter(|t| t.status() == Status::Done)
        .count();
    assert_eq!(done, finished);
    for task in all.items.iter().filter(|t| t.status() == Status::Done) {
        let history = store.history(&tenant, task.id).await.expect("history");
        // created, claimed, then 4 x (started, succeeded), then done.
        assert_eq!(history.len(), 11, "{history:#?}");
    }
    drop(store);
    let store = SledStore::open(dir.path()).expect("reopen");
    assert!(store.check_consistency().expect("check").is_empty());
}
