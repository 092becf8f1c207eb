//! The claim loop: fills free slots, wakes on store changes, and shuts down gracefully.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use task_core::ids::ProductName;
use task_core::store::{ClaimRequest, Store, TaskChange};
use task_core::task::Status;

use crate::executor::{Shared, StopReason, execute};
use crate::metrics::Outcome;
use crate::priority::ClaimSchedule;

/// Signals from the runner handle to its dispatcher.
pub(crate) struct Control {
    /// Stop claiming and begin the graceful shutdown.
    pub(crate) shutdown: CancellationToken,
    /// The grace period is over: stop the running tasks and release their leases.
    pub(crate) deadline: CancellationToken,
}

/// Runs until shutdown: the watcher of store changes alongside the claim loop.
pub(crate) async fn run<S: Store>(shared: Arc<Shared<S>>, control: Control) {
    let wake = Arc::new(Notify::new());
    let changes = shared.store.subscribe();
    tokio::select! {
        _ = watch(shared.clone(), changes, wake.clone()) => {}
        _ = claim_loop(shared, control, wake) => {}
    }
}

/// Wakes the claim loop when work appears, and trips running tasks whose cancel was requested.
async fn watch<S: Store>(
    shared: Arc<Shared<S>>,
    mut changes: broadcast::Receiver<TaskChange>,
    wake: Arc<Notify>,
) {
    loop {
        match changes.recv().await {
            Ok(change) => {
                if (change.cancel_requested || change.status == Status::Cancelled)
                    && let Some(stop) = shared.running_stop(&change.task_id)
                {
                    stop.stop(StopReason::CancelRequested);
                }
                // A task that ends may be the last one a waiting task waits for, and a store
                // may wake waiting tasks in its claims (PostgreSQL does): one that ended
                // elsewhere (another process, a cancel) calls for a claim. The end of one of
                // ours frees its slot, which claims anyway.
                let ended_elsewhere =
                    !change.status.is_active() && shared.running_stop(&change.task_id).is_none();
                if change.status == Status::Pending || ended_elsewhere {
                    wake.notify_one();
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                debug!(missed, "change stream lagged; rechecking");
                wake.notify_one();
                recheck_running(&shared).await;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// After missed notifications, asks the store whether any running task has a cancel request.
/// (The heartbeat learns of cancels too; this only keeps cancellation prompt.)
async fn recheck_running<S: Store>(shared: &Shared<S>) {
    let running: Vec<_> = shared
        .lock_running()
        .iter()
        .map(|(id, (tenant, stop))| (*id, tenant.clone(), stop.clone()))
        .collect();
    for (id, tenant, stop) in running {
        if let Ok(Some(task)) = shared.store.get_task(&tenant, id).await
            && task.cancel_requested()
        {
            stop.stop(StopReason::CancelRequested);
        }
    }
}

async fn claim_loop<S: Store>(shared: Arc<Shared<S>>, control: Control, wake: Arc<Notify>) {
    let config = &shared.config;
    let mut tasks: JoinSet<(ProductName, Outcome)> = JoinSet::new();
    let mut slots = Slots::default();
    let mut schedule = ClaimSchedule::default();
    // A store that cannot serve (a full disk, a lost database) fails every poll: say so once
    // per interval, with how many failures went unsaid.
    let mut claim_failures = Throttled::new(Duration::from_secs(30));
    while !control.shutdown.is_cancelled() {
        while let Some(done) = tasks.try_join_next_with_id() {
            slots.release(done);
        }
        let free = config.concurrency.saturating_sub(tasks.len());
        let mut queue_may_have_more = false;
        if free > 0 {
            let (exclude_products, product_room) = product_capacity(config, &slots.per_product);
            let request = ClaimRequest {
                worker: config.worker_id.clone(),
                lease: config.lease,
                // One claim never takes more of a product than its remaining room.
                max: free.min(config.claim_batch).min(product_room),
                priority_order: schedule.next_order(),
                exclude_products,
                // Saves each task a write: its executor starts with the step already running.
                start_first_step: true,
                // A task whose last lease expired with no attempt left fails in the claim.
                attempt_limits: attempt_limits(config),
                // The store checks each product's limit against every worker's running
                // tasks (other processes sharing it included); the local check above only
                // saves a claim that could not take anything of a full product.
                product_limits: product_limits(config),
            };
            match shared.store.claim(&request).await {
                Ok(claimed) => {
                    shared.metrics.claimed(&claimed);
                    queue_may_have_more = claimed.len() == request.max;
                    for task in claimed {
                        let product = task.key.product.clone();
                        let handle = tasks.spawn(execute(shared.clone(), task));
                        slots.take(handle.id(), product);
                    }
                }
                Err(err) => claim_failures.report(|suppressed| {
                    warn!(error = %err, suppressed, "claim failed; retrying after the poll interval")
                }),
            }
        }
        if queue_may_have_more && tasks.len() < config.concurrency {
            continue;
        }
        let nap = next_nap(&shared).await;
        tokio::select! {
            _ = control.shutdown.cancelled() => break,
            _ = wake.notified() => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => slots.release(done),
            _ = tokio::time::sleep(nap) => {}
        }
    }
    drain(&shared, &mut tasks, &control).await;
}

/// The products at their limit, and the least room left among the others.
fn product_capacity(
    config: &crate::config::RunnerConfig,
    per_product: &HashMap<ProductName, usize>,
) -> (Vec<ProductName>, usize) {
    let mut full = Vec::new();
    let mut room = usize::MAX;
    for (product, settings) in &config.products {
        let running = per_product.get(product).copied().unwrap_or(0);
        match settings.concurrency.saturating_sub(running) {
            0 => full.push(product.clone()),
            left => room = room.min(left),
        }
    }
    (full, room)
}

/// How long to sleep when there is nothing to claim: until the next retry or lease expiry the
/// store knows of, at most the poll interval.
async fn next_nap<S: Store>(shared: &Shared<S>) -> Duration {
    let poll = shared.config.poll_interval;
    match shared.store.next_wakeup().await {
        Ok(Some(at)) => {
            let now = shared.config.clock.now();
            if at > now {
                at.since(now).min(poll)
            } else {
                poll
            }
        }
        Ok(None) => poll,
        Err(err) => {
            warn!(error = %err, "cannot read the next wake-up time");
            poll
        }
    }
}

/// A log line at most once per `every`, counting the occurrences in between.
struct Throttled {
    every: Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Calls `log` with the number of occurrences not logged since the last call that logged,
    /// if `every` has passed since then; else counts this one.
    fn report(&mut self, log: impl FnOnce(u64)) {
        if self.last.is_some_and(|at| at.elapsed() < self.every) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.suppressed = 0;
        self.last = Some(std::time::Instant::now());
    }
}

/// The running tasks of each product, by the id of the tokio task that runs each: a slot is
/// given back however its task ends, even if the executor itself panicked.
#[derive(Default)]
struct Slots {
    per_product: HashMap<ProductName, usize>,
    by_task: HashMap<tokio::task::Id, ProductName>,
}

impl Slots {
    fn take(&mut self, id: tokio::task::Id, product: ProductName) {
        *self.per_product.entry(product.clone()).or_default() += 1;
        self.by_task.insert(id, product);
    }

    fn release(
        &mut self,
        done: Result<(tokio::task::Id, (ProductName, Outcome)), tokio::task::JoinError>,
    ) {
        let id = match done {
            Ok((id, _)) => id,
            Err(err) => {
                // Steps' panics are caught in the executor; this is a panic of the engine's
                // own code. The task's lease expires and the claim's attempt limit applies.
                error!(error = %err, "a task executor panicked; its lease will expire");
                err.id()
            }
        };
        if let Some(product) = self.by_task.remove(&id)
            && let Some(count) = self.per_product.get_mut(&product)
        {
            *count = count.saturating_sub(1);
        }
    }
}

/// Each enabled product's attempt limit, for the claim.
fn attempt_limits(config: &crate::config::RunnerConfig) -> Vec<(ProductName, u32)> {
    config
        .products
        .iter()
        .map(|(name, settings)| (name.clone(), settings.max_attempts))
        .collect()
}

/// Each enabled product's concurrency limit, for the store to hold across every worker.
fn product_limits(config: &crate::config::RunnerConfig) -> Vec<(ProductName, usize)> {
    config
        .products
        .iter()
        .map(|(name, settings)| (name.clone(), settings.concurrency))
        .collect()
}

/// Graceful shutdown: running tasks go on until the deadline, then are stopped and release
/// their leases.
async fn drain<S: Store>(
    shared: &Shared<S>,
    tasks: &mut JoinSet<(ProductName, Outcome)>,
    control: &Control,
) {
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            _ = control.deadline.cancelled() => break,
        }
    }
    let stops: Vec<_> = shared
        .lock_running()
        .values()
        .map(|(_, stop)| stop.clone())
        .collect();
    for stop in stops {
        stop.stop(StopReason::Shutdown);
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_report_logs_once_per_interval_and_counts_the_rest() {
        let mut throttled = Throttled::new(Duration::from_secs(3600));
        let mut logged = Vec::new();
        for _ in 0..408 {
            throttled.report(|suppressed| logged.push(suppressed));
        }
        assert_eq!(logged, [0], "one line for 408 failures within the interval");
        // As if the interval had passed.
        throttled.last = None;
        throttled.report(|suppressed| logged.push(suppressed));
        assert_eq!(logged, [0, 407], "the next line says how many went unsaid");
    }
}
