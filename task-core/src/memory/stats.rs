//! The memory store's statistics: status counts and per-minute activity, updated by every put.

use std::collections::BTreeMap;

use crate::ids::{ProductName, TenantId};
use crate::stats::{
    ACTIVITY_KEPT_MS, Activity, ActivityBucket, StatsDelta, StatusCount, minute_of,
};
use crate::task::{Status, TaskKey};
use crate::time::Timestamp;

#[derive(Default)]
pub(super) struct Stats {
    counts: BTreeMap<(TenantId, ProductName, Status), u64>,
    activity: BTreeMap<(Timestamp, TenantId, ProductName), Activity>,
}

impl Stats {
    /// Adds `delta` for the task with `key`, dropping buckets past their keeping time.
    pub fn apply(&mut self, key: &TaskKey, delta: StatsDelta) {
        for (status, change) in delta.counts {
            let slot = (key.tenant.clone(), key.product.clone(), status);
            let count = self.counts.entry(slot.clone()).or_default();
            *count = count.saturating_add_signed(change);
            if *count == 0 {
                self.counts.remove(&slot);
            }
        }
        if let Some((minute, activity)) = delta.activity {
            let slot = (minute, key.tenant.clone(), key.product.clone());
            self.activity.entry(slot).or_default().merge(&activity);
            let oldest = Timestamp(minute.as_millis().saturating_sub(ACTIVITY_KEPT_MS));
            while let Some(entry) = self.activity.first_entry() {
                if entry.key().0 >= oldest {
                    break;
                }
                entry.remove();
            }
        }
    }

    pub fn counts(&self, tenant: Option<&TenantId>) -> Vec<StatusCount> {
        self.counts
            .iter()
            .filter(|((t, _, _), _)| tenant.is_none_or(|wanted| wanted == t))
            .map(|((tenant, product, status), count)| StatusCount {
                tenant: tenant.clone(),
                product: product.clone(),
                status: *status,
                count: *count,
            })
            .collect()
    }

    pub fn activity(&self, tenant: Option<&TenantId>, since: Timestamp) -> Vec<ActivityBucket> {
        let from = minute_of(since);
        self.activity
            .iter()
            .filter(|((minute, t, _), _)| {
                *minute >= from && tenant.is_none_or(|wanted| wanted == t)
            })
            .map(|((minute, tenant, product), activity)| ActivityBucket {
                tenant: tenant.clone(),
                product: product.clone(),
                minute: *minute,
                activity: activity.clone(),
            })
            .collect()
    }
}
