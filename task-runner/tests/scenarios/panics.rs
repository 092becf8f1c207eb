//! A step that panics is one failed attempt, never a lost slot.

use std::sync::Arc;
use std::time::Duration;

use task_core::prelude::*;
use task_runner::Runner;

use crate::support::*;

/// A step panics on one task of a product limited to one task at a time: that task fails with
/// `internal` naming the step and the panic, and the product's single slot goes on serving
/// the other tasks.
pub async fn a_panicking_step_fails_its_task_and_frees_its_slot<S: Store>(store: Arc<S>) {
    let steps = Steps::with_analyze(Behaviour::PanicFor("poison".into()));
    let product = task_runner::step::ProductSettings {
        concurrency: 1,
        ..settings("adbreaks")
    };
    let runner = Runner::start(
        store.clone(),
        steps.pipeline(&["adbreaks"]),
        config("w1", &[]).with_product(product),
    )
    .unwrap();
    let poison = submit(&*store, "poison", "adbreaks", Priority::High).await;
    let mut healthy = Vec::new();
    for i in 0..3 {
        healthy.push(submit(&*store, &format!("ok-{i}"), "adbreaks", Priority::Low).await);
    }
    let failed = finished(&*store, poison.id).await;
    assert_eq!(failed.status(), Status::Failed);
    assert_eq!(failed.attempt, 1, "a panic is a permanent internal error");
    let error = failed.error().unwrap();
    assert_eq!(error.code(), "internal");
    let message = error.to_string();
    assert!(message.contains("step analyze panicked"), "{message}");
    assert!(message.contains("is not valid"), "{message}");
    for task in healthy {
        assert_eq!(finished(&*store, task.id).await.status(), Status::Done);
    }
    assert_eq!(
        steps.analyze.peak.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let metrics = runner.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!((metrics.failed, metrics.done), (1, 3));
}
