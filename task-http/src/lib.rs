//! The Task API of the media task engine as an [axum] router that you mount in your own service,
//! over any [`Store`] (the in-memory one, sled, or yours).
//!
//! It implements the contract of the Task API: the catalog (`/catalog/v1/item`), tasks by id and
//! by natural key, batches, history, server-sent events, long-poll, and results with per-product
//! presentation. Every route needs an API key (the `X-API-Key` header or the `key` query
//! parameter) mapped to a tenant in the [`ServiceConfig`]; `/healthz`, `/readyz` and
//! `/openapi.json` do not. See [`TaskApi::openapi`] for the full document.
//!
//! The crate runs no tasks: pair it with a runner (`task-runner`) over the same store, as the
//! `taskd` daemon does. Asset URL checks and result presentation are hooks of the configuration,
//! so the crate does not depend on the media steps.
//!
//! ```
//! use std::sync::Arc;
//! use task_core::prelude::*;
//! use task_http::{ServiceConfig, TaskApi};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::default());
//! let config = ServiceConfig::new()
//!     .with_api_key("secret-key", TenantId::new("acme")?)
//!     .with_product(ProductName::new("adbreaks")?);
//! let api = TaskApi::new(store, config);
//!
//! // Serve it (here on a free local port) and call it over HTTP.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(axum::serve(listener, api.router()).into_future());
//!
//! let mut stream = tokio::net::TcpStream::connect(addr).await?;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let body = r#"{"id": "movie-1", "type": "standalone", "title": "Movie", "asset_url": "s3://b/m.mp4"}"#;
//! let request = format!(
//!     "PUT /catalog/v1/item HTTP/1.1\r\nhost: x\r\nx-api-key: secret-key\r\n\
//!      content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
//!     body.len()
//! );
//! stream.write_all(request.as_bytes()).await?;
//! let mut response = String::new();
//! stream.read_to_string(&mut response).await?;
//! assert!(response.starts_with("HTTP/1.1 201"), "{response}");
//! assert!(response.contains(r#""id":"movie-1""#));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod auth;
mod body;
pub mod config;
mod contract;
pub mod error;
mod openapi;
mod routes;
mod sse;
mod state;
mod strict_json;
mod trace;
pub mod views;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use task_core::store::Store;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::API_KEY_HEADER;
pub use config::{
    ApiKey, AssetUrlValidator, ProductConfig, QueryParams, ResultPresenter, ServiceConfig,
};
pub use error::{ApiError, FieldError, LocItem};

use crate::body::{BodyLimit, BodyReadTimeout};
use crate::error::ApiError as Error;
use crate::routes::{batch, catalog, fingerprint, health, natural, results, tasks, webhooks};
use crate::state::ApiState;

/// The service: its router, its OpenAPI document and its drain switch.
#[derive(Clone)]
pub struct TaskApi {
    state: ApiState,
    openapi: Arc<OnceLock<serde_json::Value>>,
}

impl std::fmt::Debug for TaskApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskApi")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl TaskApi {
    /// The service over `store` with `config`.
    pub fn new<S: Store>(store: Arc<S>, config: ServiceConfig) -> Self {
        Self::from_dyn(store, config)
    }

    /// The service over a shared store object.
    pub fn from_dyn(store: Arc<dyn Store>, config: ServiceConfig) -> Self {
        let openapi = Arc::new(OnceLock::new());
        let state = ApiState {
            store,
            config: Arc::new(config),
            drain: CancellationToken::new(),
            openapi: openapi.clone(),
        };
        Self { state, openapi }
    }

    /// The router with every route of the API; mount it with `Router::merge` or
    /// `Router::nest` (set [`ServiceConfig::base_path`] to the nesting prefix for `_links`).
    pub fn router(&self) -> Router {
        let (router, doc) = self.parts();
        let _ = self.openapi.set(doc);
        router
    }

    /// The OpenAPI 3.1 document of [`TaskApi::router`], as JSON.
    pub fn openapi(&self) -> serde_json::Value {
        self.openapi
            .get()
            .cloned()
            .unwrap_or_else(|| self.parts().1)
    }

    /// Ends every event stream and long-poll and turns `/readyz` to 503, so that a graceful
    /// shutdown (which waits for in-flight requests) completes promptly. Call it when the
    /// shutdown signal arrives.
    pub fn drain(&self) {
        self.state.drain.cancel();
    }

    fn parts(&self) -> (Router, serde_json::Value) {
        let keys = Arc::new(self.state.config.api_keys.clone());
        let limit = self.state.config.body_limit;
        let api = OpenApiRouter::<ApiState>::with_openapi(openapi::ApiDoc::openapi())
            .routes(routes!(catalog::put_item, catalog::list_items))
            .routes(routes!(catalog::get_item, catalog::delete_item))
            .routes(routes!(tasks::post_task))
            .routes(routes!(tasks::get_task, tasks::delete_task))
            .routes(routes!(tasks::get_history))
            .routes(routes!(sse::task_events))
            .routes(routes!(
                natural::post_by_key,
                natural::get_by_key,
                natural::delete_by_key
            ))
            .routes(routes!(natural::item_tasks))
            .routes(routes!(batch::post_batch))
            .routes(routes!(results::get_result))
            .routes(routes!(fingerprint::match_fingerprints))
            .routes(routes!(webhooks::post_webhook, webhooks::list_webhooks))
            .routes(routes!(webhooks::get_webhook, webhooks::delete_webhook))
            .routes(routes!(webhooks::list_deliveries))
            .routes(routes!(webhooks::resend_delivery))
            .layer(middleware::from_fn_with_state(keys, auth::authenticate));
        let public = OpenApiRouter::<ApiState>::new()
            .routes(routes!(health::healthz))
            .routes(routes!(health::readyz))
            .routes(routes!(openapi::openapi_json));
        let (router, doc) = api.merge(public).split_for_parts();
        let mut doc = serde_json::to_value(&doc).unwrap_or_default();
        contract::apply(&mut doc, &self.state.config);
        let router = router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self.state.clone())
            .layer(DefaultBodyLimit::max(limit))
            .layer(axum::Extension(BodyLimit(limit)))
            .layer(axum::Extension(BodyReadTimeout(
                self.state.config.body_read_timeout,
            )))
            .layer(middleware::from_fn(trace::trace_request));
        (router, doc)
    }
}

async fn not_found() -> Error {
    Error::NotFound("Not Found".to_owned())
}

async fn method_not_allowed() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = axum::Json(error::MessageBody {
        detail: "Method Not Allowed".to_owned(),
    });
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}
