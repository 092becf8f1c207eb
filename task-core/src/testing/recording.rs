//! A store wrapper for tests of store clients (the runner and its batcher): it records the
//! writes it is asked for and can hold `apply_many` calls until the test lets them through.

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, broadcast};

use crate::catalog::{CatalogItem, DeletedItem, ItemUpsert};
use crate::ids::{InventoryId, ProductName, TaskId, TenantId, Version};
use crate::machine::TaskEvent;
use crate::results::AnalysisResult;
use crate::stats::{ActivityBucket, StatusCount};
use crate::store::{
    ApplyRequest, CatalogStore, ClaimRequest, CreateOutcome, NewTask, Page, PageRequest,
    ResultStore, Store, StoreError, TaskChange, TaskFilter, TaskStore,
};
use crate::task::{HistoryEntry, Task, TaskKey};
use crate::time::Timestamp;
use crate::webhooks::{
    AttemptOutcome, Delivery, DeliveryId, DeliveryState, Webhook, WebhookId, WebhookStore,
};

/// The writes a [`RecordingStore`] was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCalls {
    /// `claim` calls.
    pub claims: usize,
    /// `claim` calls that did not start the first step.
    pub claims_without_start: usize,
    /// `apply` calls.
    pub applies: usize,
    /// The number of entries of each `apply_many` call, in order.
    pub batches: Vec<usize>,
}

/// Any store, with its writes recorded (see [`StoreCalls`]). A gated one holds each
/// `apply_many` until [`RecordingStore::release`] lets it through.
pub struct RecordingStore<S> {
    inner: S,
    calls: Mutex<StoreCalls>,
    gate: Option<Semaphore>,
    apply_many_called: Notify,
}

impl<S: Store> RecordingStore<S> {
    /// Records the writes made to `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            calls: Mutex::default(),
            gate: None,
            apply_many_called: Notify::new(),
        }
    }

    /// Records the writes made to `inner` and holds every `apply_many`.
    pub fn gated(inner: S) -> Self {
        Self {
            gate: Some(Semaphore::new(0)),
            ..Self::new(inner)
        }
    }

    /// Lets `calls` held `apply_many` calls (or later ones) through.
    pub fn release(&self, calls: usize) {
        if let Some(gate) = &self.gate {
            gate.add_permits(calls);
        }
    }

    /// Returns once an `apply_many` call has arrived (been recorded) since the last time.
    pub async fn apply_many_arrived(&self) {
        self.apply_many_called.notified().await;
    }

    /// The writes recorded so far.
    pub fn calls(&self) -> StoreCalls {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, StoreCalls> {
        // Counters only: a panic elsewhere cannot leave them half-updated.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl<S: Store> TaskStore for RecordingStore<S> {
    async fn create_task(&self, new: NewTask) -> Result<CreateOutcome, StoreError> {
        self.inner.create_task(new).await
    }
    async fn create_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<CreateOutcome>, StoreError> {
        self.inner.create_tasks(batch).await
    }
    async fn get_task(&self, tenant: &TenantId, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.inner.get_task(tenant, id).await
    }
    async fn latest_task(&self, key: &TaskKey) -> Result<Option<Task>, StoreError> {
        self.inner.latest_task(key).await
    }
    async fn list_tasks(
        &self,
        tenant: &TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>, StoreError> {
        self.inner.list_tasks(tenant, filter, page).await
    }
    async fn request_cancel(&self, tenant: &TenantId, id: TaskId) -> Result<Task, StoreError> {
        self.inner.request_cancel(tenant, id).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Task>, StoreError> {
        {
            let mut calls = self.lock();
            calls.claims += 1;
            calls.claims_without_start += usize::from(!request.start_first_step);
        }
        self.inner.claim(request).await
    }
    async fn apply(
        &self,
        id: TaskId,
        epoch: u64,
        events: &[TaskEvent],
    ) -> Result<Task, StoreError> {
        self.lock().applies += 1;
        self.inner.apply(id, epoch, events).await
    }
    async fn apply_many(
        &self,
        batch: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        self.lock().batches.push(batch.len());
        self.apply_many_called.notify_one();
        if let Some(gate) = &self.gate {
            gate.acquire()
                .await
                .map_err(|_| StoreError::Conflict("the test's gate was closed".into()))?
                .forget();
        }
        self.inner.apply_many(batch).await
    }
    async fn requeue_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        self.inner.requeue_expired().await
    }
    async fn history(
        &self,
        tenant: &TenantId,
        id: TaskId,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.history(tenant, id).await
    }
    async fn next_wakeup(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_wakeup().await
    }
    fn subscribe(&self) -> broadcast::Receiver<TaskChange> {
        self.inner.subscribe()
    }

    fn outage(&self) -> Option<String> {
        self.inner.outage()
    }
    async fn status_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        self.inner.status_counts(tenant).await
    }
    async fn activity(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        self.inner.activity(tenant, since).await
    }
}

#[async_trait]
impl<S: Store> CatalogStore for RecordingStore<S> {
    async fn upsert_item(&self, item: ItemUpsert) -> Result<(CatalogItem, bool), StoreError> {
        self.inner.upsert_item(item).await
    }
    async fn get_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
        include_deleted: bool,
    ) -> Result<Option<CatalogItem>, StoreError> {
        self.inner.get_item(tenant, id, include_deleted).await
    }
    async fn list_items(
        &self,
        tenant: &TenantId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        self.inner.list_items(tenant, include_deleted, page).await
    }
    async fn list_children(
        &self,
        tenant: &TenantId,
        parent: &InventoryId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>, StoreError> {
        self.inner
            .list_children(tenant, parent, include_deleted, page)
            .await
    }
    async fn delete_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<DeletedItem, StoreError> {
        self.inner.delete_item(tenant, id).await
    }
}

#[async_trait]
impl<S: Store> ResultStore for RecordingStore<S> {
    async fn put_result(&self, result: AnalysisResult) -> Result<(), StoreError> {
        self.inner.put_result(result).await
    }
    async fn get_result(
        &self,
        tenant: &TenantId,
        product: &ProductName,
        inventory_id: &InventoryId,
        version: Option<&Version>,
    ) -> Result<Option<AnalysisResult>, StoreError> {
        self.inner
            .get_result(tenant, product, inventory_id, version)
            .await
    }
    async fn cache_get(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.inner.cache_get(key).await
    }
    async fn cache_put(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        self.inner.cache_put(key, value).await
    }
}

#[async_trait]
impl<S: Store> WebhookStore for RecordingStore<S> {
    async fn put_webhook(&self, webhook: Webhook) -> Result<(), StoreError> {
        self.inner.put_webhook(webhook).await
    }
    async fn get_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        self.inner.get_webhook(tenant, id).await
    }
    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError> {
        self.inner.list_webhooks(tenant).await
    }
    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<bool, StoreError> {
        self.inner.delete_webhook(tenant, id).await
    }
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        state: Option<DeliveryState>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        self.inner
            .list_deliveries(tenant, webhook, state, page)
            .await
    }
    async fn take_due_deliveries(
        &self,
        limit: usize,
        lease: std::time::Duration,
        skip: &[WebhookId],
    ) -> Result<Vec<Delivery>, StoreError> {
        self.inner.take_due_deliveries(limit, lease, skip).await
    }
    async fn record_attempt(
        &self,
        webhook: WebhookId,
        id: DeliveryId,
        attempt: u32,
        outcome: AttemptOutcome,
    ) -> Result<Delivery, StoreError> {
        self.inner
            .record_attempt(webhook, id, attempt, outcome)
            .await
    }
    async fn resend_delivery(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, StoreError> {
        self.inner.resend_delivery(tenant, webhook, id).await
    }
    async fn outbox_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError> {
        self.inner.outbox_times().await
    }
}
