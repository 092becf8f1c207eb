//! What a task costs in store writes: its claim starts the first step, and each later step
//! transition goes through the runner's write batcher as an entry of `apply_many`.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use task_core::prelude::*;
use task_runner::Runner;
use tokio::sync::broadcast;

use support::{Steps, config, finished, submit, tenant};

/// What the runner asked of the store.
#[derive(Debug, Default)]
struct Calls {
    applies: usize,
    batches: Vec<usize>,
    claims: usize,
    claims_without_start: usize,
}

/// A memory store that records the runner's writes.
struct Counting {
    inner: MemoryStore,
    calls: Mutex<Calls>,
}

impl Counting {
    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap()
    }
}

#[async_trait]
impl TaskStore for Counting {
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
            let mut calls = self.calls();
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
        self.calls().applies += 1;
        self.inner.apply(id, epoch, events).await
    }
    async fn apply_many(
        &self,
        batch: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        self.calls().batches.push(batch.len());
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
}

#[async_trait]
impl CatalogStore for Counting {
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
    async fn delete_item(
        &self,
        tenant: &TenantId,
        id: &InventoryId,
    ) -> Result<DeletedItem, StoreError> {
        self.inner.delete_item(tenant, id).await
    }
}

#[async_trait]
impl ResultStore for Counting {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_one_claim_and_four_batched_entries() {
    let store = Arc::new(Counting {
        inner: MemoryStore::default(),
        calls: Mutex::default(),
    });
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

    let calls = std::mem::take(&mut *store.calls());
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
