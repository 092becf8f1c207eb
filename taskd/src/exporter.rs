//! `/metrics` in the Prometheus text format: the `[metrics]` section, the recorder, and the
//! routes that serve it.
//!
//! With `listen` set, `/metrics` is served without a key on that address of its own. With
//! `scrape_key` set, it is served on the node's address too, only to `Authorization: Bearer
//! <scrape_key>` (what Prometheus' `authorization` setting sends): the figures cover every
//! tenant, so a tenant's API key never reads them. With neither, no recorder is installed, the
//! engine records nothing (see [`task_core::telemetry`]) and `/metrics` is 404.
//!
//! The task gauge (`taskd_tasks{product,status}`) is read from the store's kept status counts
//! at each scrape, summed over tenants; a store that cannot give them leaves the gauge out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use task_core::ids::ProductName;
use task_core::stats::StatusCount;
use task_core::store::Store;
use task_core::task::Status;
use task_core::telemetry::{self, MetricKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::TaskdError;
use crate::http_server::HttpLimits;

/// The `[metrics]` section of the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsEntry {
    /// `host:port` serving `/metrics` without a key (keep it on a private network).
    pub listen: Option<String>,
    /// The bearer token that reads `/metrics` on the node's own address.
    pub scrape_key: Option<String>,
}

/// The `[metrics]` section, checked.
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// Where `/metrics` is served without a key.
    pub listen: Option<SocketAddr>,
    /// The bearer token of `/metrics` on the node's address.
    pub scrape_key: Option<String>,
}

/// The shortest scrape key accepted.
const MIN_SCRAPE_KEY: usize = 16;

impl MetricsEntry {
    /// Checks the section; the scrape key must differ from every API key in `api_keys`.
    pub fn resolve(
        self,
        api_keys: &[(String, task_core::ids::TenantId)],
    ) -> Result<MetricsSettings, TaskdError> {
        let setting = |field: &str, reason: String| TaskdError::Setting {
            field: format!("metrics.{field}"),
            reason,
        };
        let listen = self
            .listen
            .map(|raw| {
                raw.parse::<SocketAddr>()
                    .map_err(|e| setting("listen", format!("{raw:?}: {e}")))
            })
            .transpose()?;
        if let Some(key) = &self.scrape_key {
            if key.len() < MIN_SCRAPE_KEY {
                return Err(setting(
                    "scrape_key",
                    format!("must be at least {MIN_SCRAPE_KEY} characters"),
                ));
            }
            if let Some((_, tenant)) = api_keys.iter().find(|(api, _)| api == key) {
                return Err(setting(
                    "scrape_key",
                    format!(
                        "is also the API key of tenant {tenant}: the figures cover every tenant, use a key of its own"
                    ),
                ));
            }
        }
        Ok(MetricsSettings {
            listen,
            scrape_key: self.scrape_key,
        })
    }
}

/// The process's recorder: installed once, the first time a node asks for one.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

fn install() -> Result<PrometheusHandle, TaskdError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for metric in telemetry::ALL
        .iter()
        .filter(|m| m.kind == MetricKind::Histogram)
    {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), metric.buckets)
            .map_err(|e| TaskdError::Setting {
                field: "metrics".into(),
                reason: format!("buckets of {}: {e}", metric.name),
            })?;
    }
    let handle = builder
        .install_recorder()
        .map_err(|e| TaskdError::Setting {
            field: "metrics".into(),
            reason: format!("installing the Prometheus recorder: {e}"),
        })?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    telemetry::enable();
    telemetry::describe_all();
    Ok(handle)
}

/// What a scrape reads.
struct Exporter<S> {
    store: Arc<S>,
    handle: PrometheusHandle,
    /// The configured products: their gauges are written (as 0) even before any task.
    products: Vec<ProductName>,
    /// The store's status counts failed once already (said once, then quietly left out).
    counts_failed: AtomicBool,
}

impl<S: Store> Exporter<S> {
    async fn render(&self) -> String {
        match self.store.status_counts(None).await {
            Ok(counts) => {
                for (product, status, count) in gauge_values(&self.products, &counts) {
                    telemetry::tasks_in_status(&product, status, count);
                }
            }
            Err(err) => {
                if !self.counts_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "the store gives no status counts: taskd_tasks is left out of /metrics");
                }
            }
        }
        self.handle.render()
    }
}

/// Every (product, status) of the configured products and of `counts`, summed over tenants
/// (a status without tasks is 0, so a gauge that emptied reads 0, not its last value).
fn gauge_values(products: &[ProductName], counts: &[StatusCount]) -> Vec<(String, Status, u64)> {
    let mut sums: BTreeMap<(String, Status), u64> = BTreeMap::new();
    let named = products
        .iter()
        .map(|p| p.as_str())
        .chain(counts.iter().map(|c| c.product.as_str()));
    for product in named {
        for status in Status::ALL {
            sums.entry((product.to_owned(), status)).or_default();
        }
    }
    for count in counts {
        *sums
            .entry((count.product.as_str().to_owned(), count.status))
            .or_default() += count.count;
    }
    sums.into_iter()
        .map(|((product, status), count)| (product, status, count))
        .collect()
}

async fn open_metrics<S: Store>(State(exporter): State<Arc<Exporter<S>>>) -> Response {
    text(exporter.render().await)
}

async fn keyed_metrics<S: Store>(
    State((exporter, key)): State<(Arc<Exporter<S>>, Arc<str>)>,
    headers: HeaderMap,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(key.as_bytes())) {
        let body = serde_json::json!({ "detail": "Unauthorized: /metrics needs the scrape key" });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(body),
        )
            .into_response();
    }
    text(exporter.render().await)
}

fn text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The metrics of a running node: routes for its own address and what runs beside it.
pub struct Served {
    /// `/metrics` behind the scrape key, to merge into the node's router (None without a key).
    pub keyed_routes: Option<Router>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Served {
    /// Stops the metrics listener and the upkeep.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            if task.await.is_err() {
                tracing::error!("a metrics task panicked");
            }
        }
    }
}

/// Installs the recorder and starts serving `/metrics` as `settings` say; None (and nothing
/// recorded) when neither `listen` nor `scrape_key` is set.
pub async fn start<S: Store>(
    store: &Arc<S>,
    settings: &MetricsSettings,
    products: Vec<ProductName>,
) -> Result<Option<Served>, TaskdError> {
    if settings.listen.is_none() && settings.scrape_key.is_none() {
        return Ok(None);
    }
    let handle = install()?;
    let exporter = Arc::new(Exporter {
        store: store.clone(),
        handle: handle.clone(),
        products,
        counts_failed: AtomicBool::new(false),
    });
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    // Histograms keep their samples until upkeep folds them in; run it between scrapes.
    let upkeep_stop = stop.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => return,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    }));
    if let Some(addr) = settings.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| TaskdError::io(format!("metrics.listen on {addr}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| TaskdError::io(format!("local address of {addr}"), e))?;
        tracing::info!(%bound, "serving /metrics without a key");
        let router = Router::new()
            .route("/metrics", get(open_metrics::<S>))
            .with_state(exporter.clone());
        let done = stop.clone();
        tasks.push(tokio::spawn(async move {
            let limits = HttpLimits {
                max_connections: 16,
                shutdown_grace: Duration::from_secs(1),
                ..HttpLimits::default()
            };
            crate::http_server::serve(listener, router, limits, done.cancelled_owned()).await;
        }));
    }
    let keyed_routes = settings.scrape_key.as_deref().map(|key| {
        Router::new()
            .route("/metrics", get(keyed_metrics::<S>))
            .with_state((exporter, Arc::<str>::from(key)))
    });
    Ok(Some(Served {
        keyed_routes,
        stop,
        tasks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use task_core::ids::TenantId;

    #[test]
    fn gauges_sum_tenants_and_name_every_status_of_every_product() {
        let (adbreaks, other) = (
            ProductName::new("adbreaks").unwrap(),
            ProductName::new("legacy").unwrap(),
        );
        let count = |tenant: &str, product: &ProductName, status, count| StatusCount {
            tenant: TenantId::new(tenant).unwrap(),
            product: product.clone(),
            status,
            count,
        };
        let counts = [
            count("a", &adbreaks, Status::Done, 3),
            count("b", &adbreaks, Status::Done, 4),
            count("a", &other, Status::Failed, 1),
        ];
        let values = gauge_values(std::slice::from_ref(&adbreaks), &counts);
        assert_eq!(values.len(), 2 * Status::ALL.len());
        let get = |product: &str, status| {
            values
                .iter()
                .find(|(p, s, _)| p == product && *s == status)
                .map(|(_, _, c)| *c)
        };
        assert_eq!(get("adbreaks", Status::Done), Some(7));
        assert_eq!(get("adbreaks", Status::Pending), Some(0));
        assert_eq!(get("legacy", Status::Failed), Some(1));
        assert_eq!(get("legacy", Status::Done), Some(0));
    }

    /// The memory store keeps status counts: the gauge sums its tenants at each scrape.
    #[tokio::test]
    async fn a_keyed_scrape_reads_the_task_gauge_from_the_store() {
        use axum::body::Body;
        use axum::http::Request;
        use std::time::Duration;
        use task_core::prelude::*;
        use tower::ServiceExt;

        let store = Arc::new(MemoryStore::default());
        let product = ProductName::new("adbreaks").unwrap();
        for (tenant, item) in [("a", "m1"), ("a", "m2"), ("b", "m1")] {
            let key = TaskKey {
                tenant: TenantId::new(tenant).unwrap(),
                inventory_id: InventoryId::new(item).unwrap(),
                product: product.clone(),
                version: Version::new("1.0").unwrap(),
            };
            let new = NewTask {
                key,
                priority: Priority::Low,
            };
            assert!(store.create_task(new).await.unwrap().created);
        }
        let worker = WorkerId::new("w").unwrap();
        let claimed = store
            .claim_one(worker, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(claimed.is_some());
        let key = "scrape-key-0123456789";
        let settings = MetricsSettings {
            listen: None,
            scrape_key: Some(key.to_owned()),
        };
        let served = start(&store, &settings, vec![product])
            .await
            .unwrap()
            .unwrap();
        let routes = served.keyed_routes.clone().unwrap();
        let scrape = |bearer: &str| {
            let request = Request::get("/metrics")
                .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
                .body(Body::empty())
                .unwrap();
            routes.clone().oneshot(request)
        };
        let refused = scrape("wrong-key-0123456789").await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let response = scrape(key).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        for (status, count) in [
            ("pending", 2),
            ("processing", 1),
            ("done", 0),
            ("failed", 0),
        ] {
            let line = format!("taskd_tasks{{product=\"adbreaks\",status=\"{status}\"}} {count}\n");
            assert!(text.contains(&line), "{line}in\n{text}");
        }
        served.stop().await;
    }

    #[test]
    fn a_scrape_key_must_be_long_and_no_tenants_key() {
        let tenant = TenantId::new("acme").unwrap();
        let keys = vec![("tenant-key-0123456789".to_owned(), tenant)];
        let entry = |key: &str| MetricsEntry {
            listen: None,
            scrape_key: Some(key.to_owned()),
        };
        let err = entry("short").resolve(&keys).unwrap_err().to_string();
        assert!(err.contains("metrics.scrape_key"), "{err}");
        let err = entry("tenant-key-0123456789")
            .resolve(&keys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tenant acme"), "{err}");
        let ok = entry("scrape-key-0123456789").resolve(&keys).unwrap();
        assert_eq!(ok.scrape_key.as_deref(), Some("scrape-key-0123456789"));
        let bad = MetricsEntry {
            listen: Some("nowhere".into()),
            scrape_key: None,
        };
        assert!(bad.resolve(&keys).is_err());
    }
}
