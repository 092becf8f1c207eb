//! A worker node's HTTP face: `/healthz` (the process answers) and `/readyz` (the store answers
//! and the node is not shutting down), answered like the API's own, and nothing else: every
//! other path is a 404 in the API's error shape. Neither route needs an API key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use task_core::store::TaskStore;

/// The health routes of a node that serves no API.
#[derive(Clone)]
pub struct Health {
    store: Arc<dyn TaskStore>,
    draining: Arc<AtomicBool>,
}

impl Health {
    /// Health routes reporting on `store`.
    pub fn new(store: Arc<dyn TaskStore>) -> Self {
        Self {
            store,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on `/readyz` answers 503 `draining` (a load balancer stops sending work).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `/healthz` and `/readyz`; 404 and 405 otherwise.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .fallback(|| async { status(StatusCode::NOT_FOUND, "detail", "Not Found") })
            .method_not_allowed_fallback(|| async {
                status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "detail",
                    "Method Not Allowed",
                )
            })
            .with_state(self.clone())
    }
}

fn status(code: StatusCode, field: &str, value: &str) -> (StatusCode, Json<Value>) {
    (code, Json(json!({ field: value })))
}

async fn healthz() -> (StatusCode, Json<Value>) {
    status(StatusCode::OK, "status", "ok")
}

async fn readyz(State(health): State<Health>) -> (StatusCode, Json<Value>) {
    if health.draining.load(Ordering::Relaxed) {
        return status(StatusCode::SERVICE_UNAVAILABLE, "status", "draining");
    }
    let unavailable = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": reason })),
        )
    };
    if let Some(outage) = health.store.outage() {
        return unavailable(&outage);
    }
    match health.store.next_wakeup().await {
        Ok(_) => status(StatusCode::OK, "status", "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            unavailable("the store does not answer reads")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(router: &Router, method: &str, path: &str) -> (u16, Value) {
        let response = router
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (code, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn only_health_is_answered_and_draining_turns_readiness_off() {
        let store = Arc::new(task_core::memory::MemoryStore::default());
        let health = Health::new(store);
        let router = health.router();
        assert_eq!(
            call(&router, "GET", "/healthz").await,
            (200, json!({"status": "ok"}))
        );
        assert_eq!(
            call(&router, "GET", "/readyz").await,
            (200, json!({"status": "ready"}))
        );
        for path in ["/task", "/openapi.json", "/catalog/v1/item"] {
            assert_eq!(
                call(&router, "GET", path).await,
                (404, json!({"detail": "Not Found"})),
                "{path}"
            );
        }
        assert_eq!(call(&router, "POST", "/healthz").await.0, 405);
        health.drain();
        assert_eq!(
            call(&router, "GET", "/readyz").await,
            (503, json!({"status": "draining"}))
        );
        assert_eq!(call(&router, "GET", "/healthz").await.0, 200);
    }
}
