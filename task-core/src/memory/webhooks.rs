//! [`WebhookStore`] for [`MemoryStore`]: subscriptions and an outbox indexed by due time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;

use super::MemoryStore;
use crate::ids::TenantId;
use crate::store::{Page, PageRequest, StoreError};
use crate::task::{HistoryEntry, Task};
use crate::time::Timestamp;
use crate::webhooks::{
    AttemptOutcome, Delivery, DeliveryId, DeliveryState, Webhook, WebhookId, WebhookStore,
    deliveries_for,
};

/// The subscriptions and their deliveries.
#[derive(Default)]
pub(super) struct Outbox {
    webhooks: BTreeMap<WebhookId, Webhook>,
    deliveries: BTreeMap<(WebhookId, DeliveryId), Delivery>,
    /// Pending deliveries by (due time, webhook, id).
    due: BTreeSet<(Timestamp, WebhookId, DeliveryId)>,
}

impl Outbox {
    /// Writes the deliveries that one change of `task` causes.
    pub(super) fn record_change(&mut self, task: &Task, entry: &HistoryEntry) {
        if self.webhooks.is_empty() || entry.from == Some(entry.to) {
            return;
        }
        for delivery in deliveries_for(self.webhooks.values(), &task.key.tenant, task.id, entry) {
            self.save(delivery);
        }
    }

    /// Stores `delivery`, keeping the due index in step.
    fn save(&mut self, delivery: Delivery) {
        let key = (delivery.webhook_id, delivery.id);
        if let Some(old) = self.deliveries.get(&key)
            && let Some(at) = old.next_attempt_at
        {
            self.due.remove(&(at, old.webhook_id, old.id));
        }
        if let (DeliveryState::Pending, Some(at)) = (delivery.state, delivery.next_attempt_at) {
            self.due.insert((at, delivery.webhook_id, delivery.id));
        }
        self.deliveries.insert(key, delivery);
    }

    fn webhook(&self, tenant: &TenantId, id: WebhookId) -> Option<&Webhook> {
        self.webhooks.get(&id).filter(|w| w.tenant == *tenant)
    }

    fn delivery(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, StoreError> {
        self.deliveries
            .get(&(webhook, id))
            .filter(|d| d.tenant == *tenant)
            .cloned()
            .ok_or_else(|| delivery_not_found(id))
    }
}

fn delivery_not_found(id: DeliveryId) -> StoreError {
    StoreError::NotFound {
        what: "delivery",
        id: id.to_string(),
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn put_webhook(&self, webhook: Webhook) -> Result<(), StoreError> {
        self.lock().outbox.webhooks.insert(webhook.id, webhook);
        Ok(())
    }

    async fn get_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        Ok(self.lock().outbox.webhook(tenant, id).cloned())
    }

    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .webhooks
            .values()
            .filter(|w| w.tenant == *tenant)
            .cloned()
            .collect())
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let outbox = &mut inner.outbox;
        if outbox.webhook(tenant, id).is_none() {
            return Ok(false);
        }
        outbox.webhooks.remove(&id);
        let gone: Vec<Delivery> = outbox
            .deliveries
            .range((id, DeliveryId::from_bytes([0; 16]))..=(id, DeliveryId::from_bytes([0xff; 16])))
            .map(|(_, d)| d.clone())
            .collect();
        for delivery in gone {
            if let Some(at) = delivery.next_attempt_at {
                outbox.due.remove(&(at, id, delivery.id));
            }
            outbox.deliveries.remove(&(id, delivery.id));
        }
        Ok(true)
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        state: Option<DeliveryState>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let before = Delivery::cursor(page)?;
        let inner = self.lock();
        if inner.outbox.webhook(tenant, webhook).is_none() {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let low = (webhook, DeliveryId::from_bytes([0; 16]));
        let high = (
            webhook,
            before.unwrap_or(DeliveryId::from_bytes([0xff; 16])),
        );
        let mut items: Vec<Delivery> = inner
            .outbox
            .deliveries
            .range(low..high)
            .rev()
            .map(|(_, d)| d)
            .filter(|d| state.is_none_or(|s| d.state == s))
            .take(page.limit.saturating_add(1))
            .cloned()
            .collect();
        let next = (items.len() > page.limit).then(|| {
            items.truncate(page.limit);
            items.last().map(|d| d.id.to_string())
        });
        Ok(Page {
            items,
            next: next.flatten(),
        })
    }

    async fn take_due_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[WebhookId],
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let outbox = &mut inner.outbox;
        let keys: Vec<(WebhookId, DeliveryId)> = outbox
            .due
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .filter(|(_, webhook, _)| !skip.contains(webhook))
            .take(limit)
            .map(|(_, webhook, id)| (*webhook, *id))
            .collect();
        let mut taken = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(mut delivery) = outbox.deliveries.get(&key).cloned() {
                delivery.take(now, lease);
                outbox.save(delivery.clone());
                taken.push(delivery);
            }
        }
        Ok(taken)
    }

    async fn record_attempt(
        &self,
        webhook: WebhookId,
        id: DeliveryId,
        attempt: u32,
        outcome: AttemptOutcome,
    ) -> Result<Delivery, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let outbox = &mut inner.outbox;
        let mut delivery = outbox
            .deliveries
            .get(&(webhook, id))
            .cloned()
            .ok_or_else(|| delivery_not_found(id))?;
        delivery.record(attempt, outcome, now)?;
        outbox.save(delivery.clone());
        Ok(delivery)
    }

    async fn resend_delivery(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let mut delivery = inner.outbox.delivery(tenant, webhook, id)?;
        delivery.resend(now)?;
        inner.outbox.save(delivery.clone());
        Ok(delivery)
    }

    async fn outbox_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError> {
        let inner = self.lock();
        let outbox = &inner.outbox;
        let next_due = outbox.due.first().map(|(at, _, _)| *at);
        let oldest = outbox
            .due
            .iter()
            .filter_map(|(_, webhook, id)| outbox.deliveries.get(&(*webhook, *id)))
            .map(|d| d.occurred_at)
            .min();
        Ok((next_due, oldest))
    }
}
