//! Counters a user can read from a running runner. The same places feed the `metrics` facade
//! (see [`task_core::telemetry`]), which records nothing until enabled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use task_core::ids::ProductName;
use task_core::task::Task;
use task_core::telemetry;

/// Live counters, updated by the runner.
#[derive(Debug, Default)]
pub struct Metrics {
    claimed: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    cancelled: AtomicU64,
    released: AtomicU64,
    waiting: AtomicU64,
    lease_lost: AtomicU64,
    in_flight: Mutex<HashMap<ProductName, usize>>,
    peak_in_flight: Mutex<HashMap<ProductName, usize>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Tasks claimed.
    pub claimed: u64,
    /// Tasks finished `done`.
    pub done: u64,
    /// Tasks finished `failed`.
    pub failed: u64,
    /// Attempts that failed and were scheduled for a retry.
    pub retried: u64,
    /// Tasks finished `cancelled` by this runner.
    pub cancelled: u64,
    /// Leases handed back at shutdown.
    pub released: u64,
    /// Runs that ended with the task waiting for other tasks (it holds no slot meanwhile).
    pub waiting: u64,
    /// Tasks abandoned because their lease was lost.
    pub lease_lost: u64,
    /// Tasks running now, per product.
    pub in_flight: HashMap<ProductName, usize>,
    /// The most tasks of each product that ran at once.
    pub peak_in_flight: HashMap<ProductName, usize>,
}

/// What ended one task's run in this runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    Failed,
    Retried,
    Cancelled,
    Released,
    Waiting,
    LeaseLost,
}

impl Metrics {
    /// Counts the tasks of one claim (their batch size and queue waits go to the facade).
    pub(crate) fn claimed(&self, tasks: &[Task]) {
        self.claimed
            .fetch_add(tasks.len() as u64, Ordering::Relaxed);
        telemetry::claimed(tasks);
    }

    /// Counts how a task of `product` ended in this runner (a lost lease also goes to the
    /// facade; finished tasks are recorded where their final write returns them).
    pub(crate) fn record(&self, product: &ProductName, outcome: Outcome) {
        if outcome == Outcome::LeaseLost {
            telemetry::lease_lost(product);
        }
        let counter = match outcome {
            Outcome::Done => &self.done,
            Outcome::Failed => &self.failed,
            Outcome::Retried => &self.retried,
            Outcome::Cancelled => &self.cancelled,
            Outcome::Released => &self.released,
            Outcome::Waiting => &self.waiting,
            Outcome::LeaseLost => &self.lease_lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn started(&self, product: &ProductName) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let now = in_flight.entry(product.clone()).or_default();
        *now += 1;
        let now = *now;
        let mut peak = self
            .peak_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let peak = peak.entry(product.clone()).or_default();
        *peak = (*peak).max(now);
    }

    pub(crate) fn ended(&self, product: &ProductName) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = in_flight.get_mut(product) {
            *count = count.saturating_sub(1);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            claimed: self.claimed.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            lease_lost: self.lease_lost.load(Ordering::Relaxed),
            in_flight: self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            peak_in_flight: self
                .peak_in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
