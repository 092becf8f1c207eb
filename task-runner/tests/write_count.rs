//! What a task costs in store writes: its claim starts the first step, and each later step
//! transition goes through the runner's write batcher as an entry of `apply_many`.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use task_core::prelude::*;
use task_core::testing::RecordingStore;
use task_runner::Runner;

use support::{Steps, config, finished, submit, tenant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_one_claim_and_four_batched_entries() {
    let store = Arc::new(RecordingStore::new(MemoryStore::default()));
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            submit(&*store, &format!("a{i}"), "adbreaks", Priority::High)
                .await
                .id,
        );
    }
    let steps = Steps::all_succeed();
    let mut config = config("w1", &["adbreaks"]);
    // No heartbeat falls inside the test: every apply counted is a step transition.
    config.lease = Duration::from_secs(3600);
    let runner = Runner::start(store.clone(), steps.pipeline(&["adbreaks"]), config).unwrap();
    for id in &ids {
        assert_eq!(finished(&*store, *id).await.status(), Status::Done);
    }
    runner.shutdown(Duration::from_secs(5)).await.unwrap();

    let calls = store.calls();
    assert_eq!(calls.applies, 0, "step transitions never go to apply alone");
    assert_eq!(calls.claims_without_start, 0, "{calls:?}");
    assert_eq!(
        calls.batches.iter().sum::<usize>(),
        4 * ids.len(),
        "three [succeeded, started next] and one [succeeded, done] per task: {calls:?}"
    );
    assert!(
        calls.batches.iter().all(|&size| (1..=256).contains(&size)),
        "{calls:?}"
    );
    let events: Vec<String> = store
        .history(&tenant(), ids[0])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        [
            "created",
            "claimed",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "done"
        ]
    );
}
