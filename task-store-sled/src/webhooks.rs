//! [`WebhookStore`] for [`SledStore`]: subscriptions, deliveries and the outbox index are
//! keyspaces of the data tree, so the committer writes a status change's deliveries in the
//! same atomic batch as the change.

use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use task_core::ids::TenantId;
use task_core::store::{Page, PageRequest, StoreError};
use task_core::task::{HistoryEntry, Task};
use task_core::time::Timestamp;
use task_core::webhooks::{
    AttemptOutcome, Delivery, DeliveryId, DeliveryState, Webhook, WebhookId, WebhookStore,
    deliveries_for,
};

use crate::codec::{decode, encode};
use crate::committer::{Done, Op};
use crate::error::Ctx;
use crate::layout::{Tk, Trees, prefixed, tree};
use crate::stage::Stage;
use crate::{SledStore, keys, unexpected};

/// At most this many pending deliveries are read to find the oldest undelivered one.
const OLDEST_SCAN: usize = 10_000;

fn webhook_key(tenant: &TenantId, id: WebhookId) -> Vec<u8> {
    let mut key = keys::strings(&[tenant.as_str()]);
    key.extend_from_slice(&id.to_bytes());
    key
}

/// (webhook, delivery id inverted): a forward scan lists a webhook's newest first.
fn delivery_key(webhook: WebhookId, id: DeliveryId) -> Vec<u8> {
    let mut key = webhook.to_bytes().to_vec();
    key.extend(id.to_bytes().iter().map(|b| !b));
    key
}

fn outbox_key(at: Timestamp, webhook: WebhookId, id: DeliveryId) -> Vec<u8> {
    let mut key = at.as_millis().to_be_bytes().to_vec();
    key.extend_from_slice(&webhook.to_bytes());
    key.extend_from_slice(&id.to_bytes());
    key
}

/// The index entries a stored delivery has: its outbox key while pending and due, its
/// [`Tk::Ended`] key once ended (for the consistency check).
pub(crate) fn index_keys(delivery: &Delivery) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let key = |at| outbox_key(at, delivery.webhook_id, delivery.id);
    let due = match (delivery.state, delivery.next_attempt_at) {
        (DeliveryState::Pending, Some(at)) => Some(key(at)),
        _ => None,
    };
    (due, delivery.ended_at().map(key))
}

/// Marks (in the meta tree) a database whose ended deliveries are indexed in [`Tk::Ended`].
const ENDED_KEPT_KEY: &[u8] = b"ended_deliveries_kept";

/// Makes sure the ended deliveries are indexed for retention: a database written by a build
/// that did not index them (no marker in the meta tree) gets the index built from its
/// deliveries, once, at open (after the journal replay, before anything else writes). Made
/// durable by the checkpoint that ends the open; a crash before it only means building it again.
pub(crate) fn ensure_ended_index(ctx: &Ctx, trees: &Trees) -> Result<(), StoreError> {
    let marked = trees
        .meta
        .get(ENDED_KEPT_KEY)
        .map_err(|e| ctx.backend("reading the ended deliveries marker", e))?;
    if marked.is_some() {
        return Ok(());
    }
    let prefix = Tk::Ended.prefix().unwrap_or(b'E');
    let mut batch = sled::Batch::default();
    let mut indexed = 0usize;
    for entry in trees.view(Tk::Deliveries).iter() {
        let (key, value) = entry.map_err(|e| ctx.backend("indexing ended deliveries", e))?;
        let delivery: Delivery = decode(ctx, tree::DELIVERIES, &key, &value)?;
        if let (_, Some(ended)) = index_keys(&delivery) {
            batch.insert(prefixed(prefix, &ended), &[] as &[u8]);
            indexed += 1;
        }
    }
    trees
        .data
        .apply_batch(batch)
        .map_err(|e| ctx.backend("indexing ended deliveries", e))?;
    trees
        .meta
        .insert(ENDED_KEPT_KEY, &[1u8][..])
        .map_err(|e| ctx.backend("writing the ended deliveries marker", e))?;
    if indexed > 0 {
        tracing::info!(path = %ctx.path, indexed, "indexed the ended webhook deliveries");
    }
    Ok(())
}

/// The (webhook, delivery) of an outbox key.
fn outbox_ids(key: &[u8]) -> Option<(WebhookId, DeliveryId)> {
    let webhook: [u8; 16] = key.get(8..24)?.try_into().ok()?;
    let id: [u8; 16] = key.get(24..40)?.try_into().ok()?;
    Some((WebhookId::from_bytes(webhook), DeliveryId::from_bytes(id)))
}

fn delivery_not_found(id: DeliveryId) -> StoreError {
    StoreError::NotFound {
        what: "delivery",
        id: id.to_string(),
    }
}

fn prefix_range(prefix: Vec<u8>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = keys::after_prefix(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
    (Bound::Included(prefix), end)
}

impl Stage<'_> {
    /// Writes the deliveries that `entries` (one call's changes of `task`) cause.
    pub fn record_deliveries(
        &mut self,
        task: &Task,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        if entries.iter().all(|e| e.from == Some(e.to)) {
            return Ok(());
        }
        let prefix = keys::strings(&[task.key.tenant.as_str()]);
        let mut webhooks = Vec::new();
        for entry in self.range(Tk::Webhooks, prefix_range(prefix)) {
            let (key, value) = entry?;
            webhooks.push(decode::<Webhook>(self.ctx, tree::WEBHOOKS, &key, &value)?);
        }
        if webhooks.is_empty() {
            return Ok(());
        }
        for entry in entries.iter().filter(|e| e.from != Some(e.to)) {
            for delivery in deliveries_for(&webhooks, &task.key.tenant, task.id, entry) {
                self.save_delivery(None, &delivery)?;
            }
        }
        Ok(())
    }

    fn save_delivery(&mut self, old: Option<&Delivery>, new: &Delivery) -> Result<(), StoreError> {
        if let Some(at) = old.and_then(|o| o.next_attempt_at) {
            self.del(Tk::Outbox, outbox_key(at, new.webhook_id, new.id));
        }
        if let Some(at) = old.and_then(Delivery::ended_at) {
            self.del(Tk::Ended, outbox_key(at, new.webhook_id, new.id));
        }
        if let Some(at) = new.ended_at() {
            self.put(
                Tk::Ended,
                outbox_key(at, new.webhook_id, new.id),
                &[] as &[u8],
            );
        }
        if let (DeliveryState::Pending, Some(at)) = (new.state, new.next_attempt_at) {
            self.put(
                Tk::Outbox,
                outbox_key(at, new.webhook_id, new.id),
                &[] as &[u8],
            );
        }
        self.put(
            Tk::Deliveries,
            delivery_key(new.webhook_id, new.id),
            encode(new)?,
        );
        Ok(())
    }

    fn load_delivery(&self, webhook: WebhookId, id: DeliveryId) -> Result<Delivery, StoreError> {
        let key = delivery_key(webhook, id);
        let bytes = self
            .get(Tk::Deliveries, &key)?
            .ok_or_else(|| delivery_not_found(id))?;
        decode(self.ctx, tree::DELIVERIES, &key, &bytes)
    }

    /// Stores a subscription.
    pub fn put_webhook(&mut self, webhook: &Webhook) -> Result<(), StoreError> {
        self.put(
            Tk::Webhooks,
            webhook_key(&webhook.tenant, webhook.id),
            encode(webhook)?,
        );
        Ok(())
    }

    /// Deletes the tenant's subscription and its deliveries.
    pub fn delete_webhook(&mut self, tenant: &TenantId, id: WebhookId) -> Result<bool, StoreError> {
        let key = webhook_key(tenant, id);
        if self.get(Tk::Webhooks, &key)?.is_none() {
            return Ok(false);
        }
        self.del(Tk::Webhooks, key);
        let mut gone = Vec::new();
        for entry in self.range(Tk::Deliveries, prefix_range(id.to_bytes().to_vec())) {
            let (key, value) = entry?;
            gone.push((
                key.clone(),
                decode::<Delivery>(self.ctx, tree::DELIVERIES, &key, &value)?,
            ));
        }
        for (key, delivery) in gone {
            if let (DeliveryState::Pending, Some(at)) = (delivery.state, delivery.next_attempt_at) {
                self.del(Tk::Outbox, outbox_key(at, id, delivery.id));
            }
            if let Some(at) = delivery.ended_at() {
                self.del(Tk::Ended, outbox_key(at, id, delivery.id));
            }
            self.del(Tk::Deliveries, key);
        }
        Ok(true)
    }

    /// Deletes up to `max` deliveries that ended before `before`; returns how many.
    pub fn prune_ended_deliveries(
        &mut self,
        before: Timestamp,
        max: usize,
    ) -> Result<usize, StoreError> {
        let upto = outbox_key(
            before,
            WebhookId::from_bytes([0; 16]),
            DeliveryId::from_bytes([0; 16]),
        );
        let mut ended = Vec::new();
        for entry in self.range(Tk::Ended, (Bound::Unbounded, Bound::Excluded(upto))) {
            let (key, _) = entry?;
            if ended.len() == max {
                break;
            }
            let Some((webhook, id)) = outbox_ids(&key) else {
                return Err(self.ctx.corrupt(tree::ENDED, &key, "malformed key"));
            };
            ended.push((key, webhook, id));
        }
        for (key, webhook, id) in &ended {
            self.del(Tk::Ended, key.clone());
            self.del(Tk::Deliveries, delivery_key(*webhook, *id));
        }
        Ok(ended.len())
    }

    /// Takes due deliveries ([`WebhookStore::take_due_deliveries`]).
    pub fn take_due(
        &mut self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        skip: &[WebhookId],
    ) -> Result<Vec<Delivery>, StoreError> {
        let upto = outbox_key(
            now,
            WebhookId::from_bytes([0xff; 16]),
            DeliveryId::from_bytes([0xff; 16]),
        );
        let mut due = Vec::new();
        for entry in self.range(Tk::Outbox, (Bound::Unbounded, Bound::Included(upto))) {
            let (key, _) = entry?;
            let Some((webhook, id)) = outbox_ids(&key) else {
                return Err(self.ctx.corrupt(tree::OUTBOX, &key, "malformed key"));
            };
            if !skip.contains(&webhook) {
                due.push((webhook, id));
            }
            if due.len() >= limit {
                break;
            }
        }
        let mut taken = Vec::with_capacity(due.len());
        for (webhook, id) in due {
            let old = self.load_delivery(webhook, id)?;
            let mut delivery = old.clone();
            delivery.take(now, lease);
            self.save_delivery(Some(&old), &delivery)?;
            taken.push(delivery);
        }
        Ok(taken)
    }

    /// Records an attempt's outcome ([`Delivery::record`]).
    pub fn record_attempt(
        &mut self,
        webhook: WebhookId,
        id: DeliveryId,
        attempt: u32,
        outcome: AttemptOutcome,
        now: Timestamp,
    ) -> Result<Delivery, StoreError> {
        let old = self.load_delivery(webhook, id)?;
        let mut delivery = old.clone();
        delivery.record(attempt, outcome, now)?;
        self.save_delivery(Some(&old), &delivery)?;
        Ok(delivery)
    }

    /// Re-sends the tenant's delivery ([`Delivery::resend`]).
    pub fn resend(
        &mut self,
        tenant: &TenantId,
        webhook: WebhookId,
        id: DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, StoreError> {
        let old = self.load_delivery(webhook, id)?;
        if old.tenant != *tenant {
            return Err(delivery_not_found(id));
        }
        let mut delivery = old.clone();
        delivery.resend(now)?;
        self.save_delivery(Some(&old), &delivery)?;
        Ok(delivery)
    }
}

impl SledStore {
    async fn delivery_write(&self, op: Op) -> Result<Delivery, StoreError> {
        match self.live()?.write(op).await? {
            Done::Delivery(delivery) => Ok(delivery),
            other => Err(unexpected(&other)),
        }
    }
}

#[async_trait]
impl WebhookStore for SledStore {
    async fn put_webhook(&self, webhook: Webhook) -> Result<(), StoreError> {
        match self.live()?.write(Op::PutWebhook(webhook)).await? {
            Done::Stored => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        let inner = &self.live()?;
        let key = webhook_key(tenant, id);
        inner
            .trees
            .view(Tk::Webhooks)
            .get(&key)
            .map_err(|e| inner.ctx.backend("reading a webhook", e))?
            .map(|bytes| decode(&inner.ctx, tree::WEBHOOKS, &key, &bytes))
            .transpose()
    }

    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError> {
        let inner = &self.live()?;
        let mut webhooks = Vec::new();
        let prefix = keys::strings(&[tenant.as_str()]);
        for entry in inner.trees.view(Tk::Webhooks).range(prefix_range(prefix)) {
            let (key, value) = entry.map_err(|e| inner.ctx.backend("listing webhooks", e))?;
            webhooks.push(decode(&inner.ctx, tree::WEBHOOKS, &key, &value)?);
        }
        Ok(webhooks)
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<bool, StoreError> {
        match self
            .live()?
            .write(Op::DeleteWebhook(tenant.clone(), id))
            .await?
        {
            Done::WebhookDeleted(deleted) => Ok(deleted),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        state: Option<DeliveryState>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let before = Delivery::cursor(page)?;
        if self.get_webhook(tenant, webhook).await?.is_none() {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let inner = &self.live()?;
        let low = match before {
            Some(id) => Bound::Excluded(delivery_key(webhook, id)),
            None => Bound::Included(webhook.to_bytes().to_vec()),
        };
        let high =
            keys::after_prefix(&webhook.to_bytes()).map_or(Bound::Unbounded, Bound::Excluded);
        let mut items = Vec::new();
        let mut next = None;
        for entry in inner.trees.view(Tk::Deliveries).range((low, high)) {
            let (key, value) = entry.map_err(|e| inner.ctx.backend("listing deliveries", e))?;
            let delivery: Delivery = decode(&inner.ctx, tree::DELIVERIES, &key, &value)?;
            if state.is_some_and(|s| s != delivery.state) {
                continue;
            }
            if items.len() == page.limit.max(1) {
                next = items.last().map(|d: &Delivery| d.id.to_string());
                break;
            }
            items.push(delivery);
        }
        Ok(Page { items, next })
    }

    async fn take_due_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[WebhookId],
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let op = Op::TakeDue {
            limit,
            lease,
            skip: skip.to_vec(),
        };
        match self.live()?.write(op).await? {
            Done::Deliveries(taken) => Ok(taken),
            other => Err(unexpected(&other)),
        }
    }

    async fn record_attempt(
        &self,
        webhook: WebhookId,
        id: DeliveryId,
        attempt: u32,
        outcome: AttemptOutcome,
    ) -> Result<Delivery, StoreError> {
        self.delivery_write(Op::RecordAttempt {
            webhook,
            id,
            attempt,
            outcome,
        })
        .await
    }

    async fn resend_delivery(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, StoreError> {
        self.delivery_write(Op::Resend(tenant.clone(), webhook, id))
            .await
    }

    async fn outbox_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError> {
        let inner = &self.live()?;
        let outbox = inner.trees.view(Tk::Outbox);
        let deliveries = inner.trees.view(Tk::Deliveries);
        let mut next_due = None;
        let mut oldest: Option<Timestamp> = None;
        for entry in outbox
            .range((Bound::Unbounded, Bound::Unbounded))
            .take(OLDEST_SCAN)
        {
            let (key, _) = entry.map_err(|e| inner.ctx.backend("reading the outbox", e))?;
            let Some((webhook, id)) = outbox_ids(&key) else {
                return Err(inner.ctx.corrupt(tree::OUTBOX, &key, "malformed key"));
            };
            let at = key
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(|b| Timestamp::from_millis(u64::from_be_bytes(b)));
            next_due = next_due.or(at);
            let dkey = delivery_key(webhook, id);
            if let Some(bytes) = deliveries
                .get(&dkey)
                .map_err(|e| inner.ctx.backend("reading a delivery", e))?
            {
                let delivery: Delivery = decode(&inner.ctx, tree::DELIVERIES, &dkey, &bytes)?;
                oldest = Some(oldest.map_or(delivery.occurred_at, |o| o.min(delivery.occurred_at)));
            }
        }
        Ok((next_due, oldest))
    }
}
