//! Runner configuration: concurrency, leases, retries and per-product settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use task_core::ids::{ProductName, WorkerId};
use task_core::time::{SharedClock, SystemClock};

use crate::step::ProductSettings;

/// Exponential back-off with jitter between attempts of a retryable failure.
///
/// The default (2 s doubling up to 120 s) puts 243-486 s between the first and the tenth
/// attempt: ten attempts outlast a few minutes of `storage_unavailable`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt.
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `failed_attempt + 1`: `base * 2^(failed_attempt - 1)`, capped at
    /// `max`, then scaled by a random factor in [0.5, 1.0] so retries of many tasks spread out.
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let factor = rand::rng().random_range(0.5..=1.0);
        full.mul_f64(factor)
    }
}

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This runner's identity on its leases (unique per process).
    pub worker_id: WorkerId,
    /// Tasks running at once, all products together.
    pub concurrency: usize,
    /// How many tasks one claim may take.
    pub claim_batch: usize,
    /// Lease length; heartbeats renew it every third of it while a step runs.
    pub lease: Duration,
    /// Back-off between attempts, for products without one of their own.
    pub retry: RetryPolicy,
    /// Settings per enabled product; tasks of other products fail as not enabled.
    pub products: HashMap<ProductName, Arc<ProductSettings>>,
    /// The longest the runner sleeps without checking the store, for stores shared by several
    /// processes whose notifications do not cross process boundaries.
    pub poll_interval: Duration,
    /// Where "now" comes from (must be the store's clock).
    pub clock: SharedClock,
}

impl RunnerConfig {
    /// A configuration with defaults: 16 tasks at once, claims of up to 16, 15 s leases,
    /// 1 s poll fallback, the system clock, and no products yet.
    pub fn new(worker_id: WorkerId) -> Self {
        Self {
            worker_id,
            concurrency: 16,
            claim_batch: 16,
            lease: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            products: HashMap::new(),
            poll_interval: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
        }
    }

    /// Enables a product with its settings.
    pub fn with_product(mut self, settings: ProductSettings) -> Self {
        self.products
            .insert(settings.name.clone(), Arc::new(settings));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.delay(40) <= Duration::from_secs(1));
        }
    }
}
