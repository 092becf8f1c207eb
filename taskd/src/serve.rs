//! The daemon's nodes, until SIGTERM or SIGINT: `taskd serve` (the Task API and the runner),
//! `taskd serve --no-runner` (the API only) and `taskd worker` (the runner, with `/healthz` and
//! `/readyz` only), over a sled directory or a PostgreSQL database. At the signal a node stops
//! accepting, finishes in-flight requests (event streams and long-polls end at once), and shuts
//! its runner down, releasing the leases it still holds so another worker takes them at once.
//! On sled it then closes the store with a fresh recovery snapshot.
//!
//! The node itself ([`node`]) is generic over the store, instantiated once for each backend.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use task_core::ids::TenantId;
use task_core::ids::WorkerId;
use task_core::store::Store;
use task_http::{ServiceConfig, TaskApi};
use task_media::analyze::markers::MarkersStep;
use task_media::asset_url::{AssetLocator, AssetScope, S3Settings, validate_asset_url};
use task_media::probe_step::ProberChoice;
use task_runner::{Runner, RunnerConfig};
use task_store_sled::{SledOptions, SledStore};

use crate::config::Settings;
use crate::error::TaskdError;
use crate::health::Health;
use crate::presenter::AdbreaksPresenter;
use crate::store::StoreSetting;

fn service_config(settings: &Settings) -> ServiceConfig {
    let scopes: std::collections::HashMap<TenantId, AssetScope> =
        settings.asset_scopes.iter().cloned().collect();
    let allow_memory = settings.allow_memory_urls;
    let mut config = ServiceConfig::new().with_tenant_asset_url_validator(move |tenant, url| {
        match scopes.get(tenant) {
            Some(scope) => scope.check(url),
            None if !allow_memory && url.starts_with("memory://") => {
                Err(task_media::MediaError::InvalidUrl {
                    url: url.to_owned(),
                    reason: "memory:// URLs are not enabled in this deployment (allow_memory_urls)"
                        .into(),
                })
            }
            None => validate_asset_url(url),
        }
        .map_err(|e| e.to_string())
    });
    for (key, tenant) in &settings.api_keys {
        config = config.with_api_key(key.clone(), tenant.clone());
    }
    config.webhook_policy = settings.webhooks.policy();
    for product in &settings.products {
        config = match &product.versions {
            Some(versions) => config.with_product_versions(product.name.clone(), versions.clone()),
            None => config.with_product(product.name.clone()),
        };
        if product.name.as_str() == "adbreaks" {
            config = config.with_presenter(product.name.clone(), AdbreaksPresenter);
        }
    }
    if let Some(limit) = settings.http.body_limit {
        config = config.with_body_limit(limit);
    }
    if let Some(secs) = settings.http.max_wait_secs {
        config.max_wait = Duration::from_secs(secs);
    }
    if let Some(max) = settings.http.max_batch {
        config.max_batch = max;
    }
    if let Some(secs) = settings.http.body_read_timeout_secs {
        config.body_read_timeout = Duration::from_secs(secs);
    }
    config
}

fn pipeline(settings: &Settings) -> Result<task_runner::Pipeline, TaskdError> {
    let s3 = S3Settings {
        endpoint: settings.s3.endpoint.clone(),
        region: settings.s3.region.clone(),
        access_key_id: settings.s3.access_key_id.clone(),
        secret_access_key: settings.s3.secret_access_key.clone(),
        request_timeout: None,
    };
    let root = std::path::absolute(&settings.media_root)
        .map_err(|e| TaskdError::io(format!("media root {}", settings.media_root.display()), e))?;
    let mut locator =
        AssetLocator::new(s3.clone(), Some(root)).with_memory_urls(settings.allow_memory_urls);
    for (tenant, scope) in &settings.asset_scopes {
        locator = locator.with_scope(tenant.as_str(), scope.clone());
    }
    if let Some(dir) = &settings.scratch_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| TaskdError::io(format!("scratch directory {}", dir.display()), e))?;
        locator = locator.with_scratch_dir(dir.clone());
    }
    let locator = Arc::new(locator);
    let mut analyzers = Vec::new();
    let mut markers = None;
    for product in &settings.products {
        if product.name.as_str() == "markers" {
            let version =
                product
                    .fingerprint_version
                    .clone()
                    .ok_or_else(|| TaskdError::Setting {
                        field: "products.markers.fingerprint_version".into(),
                        reason: "missing".into(),
                    })?;
            markers = Some((product.name.clone(), MarkersStep::new(version)));
            continue;
        }
        let options = task_media::AnalyzerOptions {
            s3: s3.clone(),
            ..product.analyzer.clone()
        };
        let analyzer = task_media::builtin_analyzer_with(&product.name, &options)
            .map_err(|e| TaskdError::Setting {
                field: format!("products.{}.{}", product.name, e.field),
                reason: e.reason,
            })?
            .ok_or_else(|| TaskdError::Setting {
                field: "products".into(),
                reason: format!(
                    "no analyzer for {} in this build (available: {})",
                    product.name,
                    task_media::BUILTIN_PRODUCTS.join(", ")
                ),
            })?;
        analyzers.push((product.name.clone(), analyzer));
    }
    let mut pipeline = task_media::pipeline(locator, ProberChoice::Auto, analyzers)?;
    if let Some((name, step)) = markers {
        pipeline = pipeline.with_analyzer(name, Arc::new(step))?;
    }
    Ok(pipeline)
}

/// Waits for SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM handler unavailable; waiting for SIGINT");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `taskd serve`: the API and the runner.
    Full,
    /// `taskd serve --no-runner`: the API only; workers elsewhere run the tasks.
    Api,
    /// `taskd worker`: the runner, answering only `/healthz` and `/readyz`.
    Worker,
}

impl Role {
    fn serves_api(self) -> bool {
        self != Role::Worker
    }

    fn runs_tasks(self) -> bool {
        self != Role::Api
    }

    fn name(self) -> &'static str {
        match self {
            Role::Full => "api+runner",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// Runs a node with `role` until a shutdown signal.
pub async fn serve(settings: Settings, role: Role) -> Result<(), TaskdError> {
    if role != Role::Full && !settings.store.is_shared() {
        let what = if role == Role::Worker {
            "taskd worker"
        } else {
            "taskd serve --no-runner"
        };
        return Err(TaskdError::Setting {
            field: "store".into(),
            reason: format!(
                "{what} needs a store that several processes share, and {} is \
                 single-process: set store to a postgres:// URL, or run `taskd serve`, \
                 which serves the API and runs the tasks in one process",
                settings.store.describe()
            ),
        });
    }
    match &settings.store {
        StoreSetting::Sled { dir } => {
            let mut options = SledOptions::default();
            if let Some(retention) = settings.retention {
                options = options.with_retention(retention);
            }
            let store = Arc::new(SledStore::open_with(dir, options)?);
            node(&store, &settings, role).await?;
            match Arc::try_unwrap(store) {
                // Closing makes sled save its recovery snapshot, so the next start does not
                // replay everything this run wrote; it takes about what that replay would.
                Ok(store) => {
                    let took = tokio::task::spawn_blocking(move || store.close())
                        .await
                        .map_err(|e| {
                            TaskdError::io("closing the store", std::io::Error::other(e))
                        })??;
                    tracing::info!(?took, "store closed with a fresh recovery snapshot");
                }
                Err(store) => {
                    tracing::warn!(
                        "store still shared at shutdown: closed without a fresh snapshot"
                    );
                    drop(store);
                }
            }
        }
        StoreSetting::Postgres(pg) => {
            let store = Arc::new(pg.open(settings.retention).await?);
            node(&store, &settings, role).await?;
            // Every lease is released by now: close the connections rather than let the
            // server notice them gone.
            store.pool().close().await;
        }
    }
    println!("taskd stopped cleanly");
    Ok(())
}

/// This host's name, for worker ids ("host" if it cannot be read).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().chars().take(64).collect::<String>())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "host".to_owned())
}

/// The runner's configuration; its worker id names the host, the process and the port, so
/// that the workers of a deployment never share one.
fn runner_config(settings: &Settings, addr: SocketAddr) -> Result<RunnerConfig, TaskdError> {
    let worker = format!(
        "taskd-{}-{}-{}",
        hostname(),
        std::process::id(),
        addr.port()
    );
    let id = WorkerId::new(worker.clone()).map_err(|e| TaskdError::Setting {
        field: "worker_id".into(),
        reason: format!("{worker:?}: {e}"),
    })?;
    let mut config = RunnerConfig::new(id);
    config.concurrency = settings.concurrency;
    config.lease = settings.lease;
    for product in &settings.products {
        config = config.with_product(product.settings.clone());
    }
    Ok(config)
}

/// One node over `store` until the shutdown signal: the listener, the runner if `role` runs
/// tasks, the API or only the health routes, then the graceful stop. Every clone of `store`
/// it made is dropped when it returns.
pub async fn node<S: Store>(
    store: &Arc<S>,
    settings: &Settings,
    role: Role,
) -> Result<(), TaskdError> {
    let mut limits = settings.http.limits()?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| TaskdError::io(format!("listen on {}", settings.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| TaskdError::io(format!("local address of {}", settings.listen), e))?;
    let runner = if role.runs_tasks() {
        std::fs::create_dir_all(&settings.media_root).map_err(|e| {
            TaskdError::io(format!("media root {}", settings.media_root.display()), e)
        })?;
        let pipeline = pipeline(settings)?;
        let config = runner_config(settings, addr)?;
        tracing::info!(worker = %config.worker_id, "runner starting");
        Some(Runner::start(store.clone(), pipeline, config)?)
    } else {
        None
    };
    let dispatcher = crate::webhooks::start(store.clone(), &settings.webhooks).await?;
    let (router, drain): (axum::Router, Box<dyn FnOnce() + Send>) = if role.serves_api() {
        let api = TaskApi::new(store.clone(), service_config(settings));
        let shared: Arc<dyn Store> = store.clone();
        let console = settings.console.build(shared, service_config(settings))?;
        let mut router = api.router();
        if let Some(console) = &console {
            router = router.merge(console.router());
        }
        let drain = move || {
            api.drain();
            if let Some(console) = console {
                console.drain();
            }
        };
        (router, Box::new(drain))
    } else {
        let health = Health::new(store.clone());
        (health.router(), Box::new(move || health.drain()))
    };
    let products = settings.products.iter().map(|p| p.name.clone()).collect();
    let metrics = crate::exporter::start(store, &settings.metrics, products).await?;
    let router = match metrics.as_ref().and_then(|m| m.keyed_routes.clone()) {
        Some(routes) => router.merge(routes),
        None => router,
    };
    if role.serves_api() {
        if settings.dev_key {
            tracing::warn!(
                "no API keys configured: the development key of tenant {} is accepted on this loopback address",
                crate::config::DEV_TENANT
            );
        }
        for (_, tenant) in &settings.api_keys {
            if !settings.asset_scopes.iter().any(|(t, _)| t == tenant) {
                tracing::info!(%tenant, "no [tenants] scope: this tenant may name any bucket and any file under the media root");
            }
        }
    }
    let products: Vec<&str> = settings.products.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(%addr, store = %settings.store.describe(), role = role.name(), products = ?products, "taskd serving");
    // The line scripts and tests wait for.
    println!("taskd listening on http://{addr}");
    if role.serves_api() && settings.console.enabled.unwrap_or(true) {
        tracing::info!("console at http://{addr}{}", crate::console::CONSOLE_PATH);
    }
    limits.shutdown_grace = settings.shutdown_grace.max(Duration::from_secs(1));
    crate::http_server::serve(listener, router, limits, async move {
        shutdown_signal().await;
        tracing::info!("shutdown: no new connections; finishing in-flight requests");
        drain();
    })
    .await;
    if let Some(metrics) = metrics {
        metrics.stop().await;
    }
    if let Some((stop, handle)) = dispatcher {
        stop.cancel();
        if handle.await.is_err() {
            tracing::error!("the webhook dispatcher panicked");
        }
    }
    if let Some(runner) = runner {
        tracing::info!("requests finished; stopping the runner");
        let metrics = runner.shutdown(settings.shutdown_grace).await?;
        tracing::info!(?metrics, "runner stopped, its leases released");
    }
    Ok(())
}
