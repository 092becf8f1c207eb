//! Work a store repeats in the background, about once a second, until it is dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::{PostgresStore, Shared};

/// Runs `work` about once a second until `stop` fires or the last handle of `store` is
/// dropped (the task holds a weak handle only).
pub(crate) fn every_second<F, Fut>(
    store: &PostgresStore,
    mut stop: watch::Receiver<()>,
    mut work: F,
) where
    F: FnMut(Arc<Shared>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let shared = Arc::downgrade(&store.shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            let Some(shared) = shared.upgrade() else {
                return;
            };
            work(shared).await;
        }
    });
}
