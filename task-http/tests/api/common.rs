//! A real server on a free port over a MemoryStore, optionally with a runner whose steps the
//! tests control, and a reqwest client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_core::prelude::*;
use task_http::{FieldError, QueryParams, ResultPresenter, ServiceConfig, TaskApi};
use task_runner::step::{ProductSettings, StepContext, StepOutput, TaskStep};
use task_runner::{Pipeline, Runner, RunnerConfig, RunnerHandle};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY_A: &str = "alpha-key-0123456789";
pub const KEY_B: &str = "beta-key-9876543210";

pub fn tenant_a() -> TenantId {
    TenantId::new("alpha").unwrap()
}

/// Presents adbreaks data with the parsed filters, and refuses a non-numeric filter.
struct EchoFilters;

impl ResultPresenter for EchoFilters {
    fn validate(&self, query: &QueryParams) -> Result<(), Vec<FieldError>> {
        let errors: Vec<FieldError> = query
            .iter()
            .filter(|(k, v)| k.ends_with("_separation") && v.parse::<f64>().is_err())
            .map(|(k, _)| FieldError::query(k, "Input should be a valid number", "float_parsing"))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn present(&self, data: &Value, query: &QueryParams) -> Result<Value, Vec<FieldError>> {
        let mut data = data.clone();
        data["filters"] = json!(query);
        Ok(data)
    }
}

pub fn config() -> ServiceConfig {
    ServiceConfig::new()
        .with_api_key(KEY_A, tenant_a())
        .with_api_key(KEY_B, TenantId::new("beta").unwrap())
        .with_product(ProductName::new("adbreaks").unwrap())
        .with_product(ProductName::new("markers").unwrap())
        .with_product(ProductName::new("semantic").unwrap())
        .with_product_versions(
            ProductName::new("emotions").unwrap(),
            [Version::new("2.0").unwrap()],
        )
        .with_asset_url_validator(|url| {
            if url.starts_with("s3://") || url.starts_with("memory://") {
                Ok(())
            } else {
                Err("the scheme must be s3:// or memory://".into())
            }
        })
        .with_presenter(ProductName::new("adbreaks").unwrap(), EchoFilters)
}

/// What the test steps let a test observe and control.
#[derive(Clone)]
pub struct Probes {
    /// Hanging `markers` analyses that were stopped (their future dropped or cancelled).
    pub stopped: Arc<AtomicUsize>,
    /// Permits that let a `semantic` analysis finish.
    pub gate: Arc<Semaphore>,
}

impl Default for Probes {
    fn default() -> Self {
        Self {
            stopped: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Probes {
    pub fn stopped(&self) -> usize {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// Shared steps failing on purpose by asset URL: `missing` -> asset_not_found, `corrupt` ->
/// probe_failed, `short` -> asset_too_short, `panic` -> the step panics.
struct Shared(Step);

#[async_trait]
impl TaskStep for Shared {
    fn step(&self) -> Step {
        self.0
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let url = ctx.item.item.asset_url.clone();
        match self.0 {
            Step::S3Check if url.contains("missing") => Err(TaskError::AssetNotFound { url }),
            Step::S3Check if url.contains("panic") => panic!("bucket name in {url:?} is not valid"),
            Step::Probe if url.contains("corrupt") => Err(TaskError::ProbeFailed {
                message: "Invalid data found when processing input".into(),
            }),
            Step::LengthGate if url.contains("short") => Err(TaskError::AssetTooShort {
                duration_secs: 3.0,
                minimum_secs: 600.0,
            }),
            _ => StepOutput::new(&json!({"ok": true})),
        }
    }
}

/// Writes an adbreaks result and succeeds.
struct WriteResult;

#[async_trait]
impl TaskStep for WriteResult {
    fn step(&self) -> Step {
        Step::Analyze
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let key = &ctx.task.key;
        let result = AnalysisResult {
            tenant: key.tenant.clone(),
            product: key.product.clone(),
            inventory_id: key.inventory_id.clone(),
            version: key.version.clone(),
            task_id: ctx.task.id,
            updated_at: Timestamp::from_millis(1_700_000_000_000),
            data: json!({"adbreak": [{"rank": 1, "candidates": [61.5, 300.0]}]}),
        };
        ctx.store
            .put_result(result)
            .await
            .map_err(|e| TaskError::Internal {
                message: e.to_string(),
            })?;
        StepOutput::new(&json!({"written": true}))
    }
}

/// Never finishes on its own; counts how often it was stopped.
struct Hang(Arc<AtomicUsize>);

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl TaskStep for Hang {
    fn step(&self) -> Step {
        Step::Analyze
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let _guard = CountOnDrop(self.0.clone());
        ctx.cancel.cancelled().await;
        Err(TaskError::Cancelled)
    }
}

/// Finishes once the test adds a permit to the gate.
struct Gated(Arc<Semaphore>);

#[async_trait]
impl TaskStep for Gated {
    fn step(&self) -> Step {
        Step::Analyze
    }
    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        tokio::select! {
            permit = self.0.acquire() => {
                permit.map_err(|e| TaskError::Internal { message: e.to_string() })?.forget();
                StepOutput::new(&json!({"gated": true}))
            }
            () = ctx.cancel.cancelled() => Err(TaskError::Cancelled),
        }
    }
}

fn pipeline(probes: &Probes) -> Pipeline {
    let product = |name: &str| ProductName::new(name).unwrap();
    Pipeline::new(
        Arc::new(Shared(Step::S3Check)),
        Arc::new(Shared(Step::Probe)),
        Arc::new(Shared(Step::LengthGate)),
    )
    .unwrap()
    .with_analyzer(product("adbreaks"), Arc::new(WriteResult))
    .unwrap()
    .with_analyzer(product("markers"), Arc::new(Hang(probes.stopped.clone())))
    .unwrap()
    .with_analyzer(product("semantic"), Arc::new(Gated(probes.gate.clone())))
    .unwrap()
}

/// A running server.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<MemoryStore>,
    pub api: TaskApi,
    pub probes: Probes,
    pub stop: CancellationToken,
    pub served: Option<JoinHandle<()>>,
    runner: Option<RunnerHandle>,
}

impl Server {
    /// A server without a runner: tasks stay pending.
    pub async fn start() -> Self {
        Self::start_with(config(), false).await
    }

    /// A server with a runner over the same store.
    pub async fn with_runner() -> Self {
        Self::start_with(config(), true).await
    }

    pub async fn start_with(config: ServiceConfig, run: bool) -> Self {
        let store = Arc::new(MemoryStore::default());
        let api = TaskApi::new(store.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let serve = axum::serve(listener, api.router())
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let served = tokio::spawn(async move { serve.await.unwrap() });
        let probes = Probes::default();
        let runner = run.then(|| {
            let mut config = RunnerConfig::new(WorkerId::new("http-tests").unwrap());
            for name in ["adbreaks", "markers", "semantic"] {
                config = config.with_product(ProductSettings::new(ProductName::new(name).unwrap()));
            }
            Runner::start(store.clone(), pipeline(&probes), config).unwrap()
        });
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            store,
            api,
            probes,
            stop,
            served: Some(served),
            runner,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with `key` (if any) in the header; returns status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = key {
            req = req.header("X-API-Key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(KEY_A), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(KEY_A), Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(KEY_A), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(KEY_A), None).await
    }

    /// Ingests `id` with `asset_url` for tenant A.
    pub async fn ingest(&self, id: &str, asset_url: &str) {
        let body = json!({"id": id, "type": "standalone", "title": id, "asset_url": asset_url});
        let (status, json) = self.put("/catalog/v1/item", body).await;
        assert!(status.is_success(), "{status} {json}");
    }

    /// Creates a task for tenant A; returns its body.
    pub async fn create(&self, inventory_id: &str, product: &str, version: &str) -> Value {
        let body = json!({"inventory_id": inventory_id, "product": product, "version": version});
        let (status, json) = self.post("/task", body).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json
    }

    /// Waits (on store notifications) until task `id` of tenant A satisfies `done`.
    pub async fn wait_for(&self, id: &str, done: impl Fn(&Task) -> bool) -> Task {
        let id = TaskId::parse(id).unwrap();
        task_runner::wait_for(&*self.store, &tenant_a(), id, done)
            .await
            .unwrap()
    }

    /// Stops the runner cleanly.
    pub async fn stop_runner(&mut self) {
        if let Some(runner) = self.runner.take() {
            runner
                .shutdown(std::time::Duration::from_secs(5))
                .await
                .unwrap();
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// Reads server-sent events from a streaming response until it ends.
pub struct SseReader {
    resp: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            resp,
            buffer: String::new(),
        }
    }

    /// The next event, or None when the stream closed.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    id: String::new(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                event.data = serde_json::from_str(&data).unwrap();
                return Some(event);
            }
            let chunk = self.resp.chunk().await.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
