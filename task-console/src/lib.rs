//! The web console of the media task engine: server-rendered pages over any [`Store`], as an
//! [axum] router to mount beside the Task API (`taskd` serves it at `/ui`).
//!
//! - **Overview**: tasks by product and status from the counters the store keeps, and the
//!   last hour's throughput, queue wait and step run times as per-minute SVG charts.
//! - **Tasks**: the list filtered by status, product, version, priority, inventory id and
//!   creation time, with cursor paging; cancelling every task that matches, after a
//!   confirmation that says how many.
//! - **A task**: its facts, error and code, probe facts, history timeline and a cancel button,
//!   updated in place from a live stream.
//! - **An asset**: the catalog item, its tasks by product and version, and its adbreak
//!   candidates on a timeline of its duration.
//!
//! Sign-in exchanges one of the API's keys ([`ServiceConfig::api_keys`]) for a signed,
//! stateless session cookie (`HttpOnly; SameSite=Strict`); a session sees only its tenant's
//! data. Every form POST carries an anti-forgery token and cross-site POSTs are refused. The
//! pages need no build step and no network: HTML from [maud] templates compiled into the
//! binary, with a stylesheet and a small script embedded as strings.
//!
//! ```
//! use std::sync::Arc;
//! use task_console::{Console, ConsoleOptions};
//! use task_core::prelude::*;
//! use task_http::{ServiceConfig, TaskApi};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::default());
//! let config = ServiceConfig::new()
//!     .with_api_key("secret-key", TenantId::new("acme")?)
//!     .with_product(ProductName::new("adbreaks")?);
//! let console = Console::new(store.clone(), config.clone(), ConsoleOptions::default())?;
//! let app = TaskApi::new(store, config).router().merge(console.router());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(axum::serve(listener, app).into_future());
//!
//! // Without a session, the console sends the browser to its sign-in page.
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let mut stream = tokio::net::TcpStream::connect(addr).await?;
//! stream.write_all(b"GET /ui HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
//! let mut response = String::new();
//! stream.read_to_string(&mut response).await?;
//! assert!(response.starts_with("HTTP/1.1 303"), "{response}");
//! assert!(response.to_ascii_lowercase().contains("location: /ui/sign-in"));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod charts;
mod error;
mod filter;
mod guard;
mod pages;
mod session;
mod state;
mod statics;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use task_core::store::Store;
use task_http::ServiceConfig;
use tokio_util::sync::CancellationToken;

pub use error::ConsoleError;
pub use pages::bulk::MAX_BULK;
pub use session::Session;

use crate::pages::{asset, bulk, overview, sign_in, task, tasks};
use crate::state::ConsoleState;

/// How the console is mounted and how its sessions work.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// The path the console answers under, e.g. `/ui` (the default); also the cookie's path.
    pub base_path: String,
    /// The key that signs sessions, at least 32 bytes. Nodes behind one load balancer must
    /// share it, or a session signed by one is refused by the others. `None`: a random secret
    /// per process (sessions end when it restarts).
    pub session_secret: Option<Vec<u8>>,
    /// How long a session lasts. Default 12 hours.
    pub session_lifetime: Duration,
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOptions")
            .field("base_path", &self.base_path)
            .field(
                "session_secret",
                &self.session_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("session_lifetime", &self.session_lifetime)
            .finish()
    }
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            base_path: "/ui".to_owned(),
            session_secret: None,
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// The console: its router and its drain switch.
#[derive(Clone)]
pub struct Console {
    state: ConsoleState,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("base_path", &self.state.base)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console over `store`, for the keys, tenants and products of `config` (the API's
    /// configuration). Fails when the session secret is shorter than 32 bytes.
    pub fn new(
        store: Arc<dyn Store>,
        config: ServiceConfig,
        options: ConsoleOptions,
    ) -> Result<Self, ConsoleError> {
        let secret = options
            .session_secret
            .clone()
            .unwrap_or_else(session::random_secret);
        let lifetime = u64::try_from(options.session_lifetime.as_millis()).unwrap_or(u64::MAX);
        let sessions = session::Sessions::new(&secret, lifetime, &config.api_keys)?;
        let base = options.base_path.trim_end_matches('/');
        Ok(Self {
            state: ConsoleState {
                store,
                config: Arc::new(config),
                sessions: Arc::new(sessions),
                base: Arc::from(base),
                drain: CancellationToken::new(),
            },
        })
    }

    /// The router of every console route, under [`ConsoleOptions::base_path`]; merge it into
    /// your service's router with `Router::merge`.
    pub fn router(&self) -> Router {
        let at = |path: &str| self.state.at(path);
        let mut router = Router::new();
        let home = if self.state.base.is_empty() {
            "/".to_owned()
        } else {
            at("")
        };
        router = router
            .route(&home, get(overview::show))
            .route(&at("/"), get(overview::show))
            .route(&at("/sign-in"), get(sign_in::show).post(sign_in::sign_in))
            .route(&at("/sign-out"), post(sign_in::sign_out))
            .route(&at("/tasks"), get(tasks::list))
            .route(&at("/tasks/cancel"), post(bulk::confirm))
            .route(&at("/tasks/cancel/confirm"), post(bulk::cancel))
            .route(&at("/tasks/{id}"), get(task::show))
            .route(&at("/tasks/{id}/cancel"), post(task::cancel))
            .route(&at("/tasks/{id}/events"), get(task::events))
            .route(&at("/assets/{id}"), get(asset::show))
            .route(&at("/static/console.css"), get(statics::css))
            .route(&at("/static/console.js"), get(statics::js))
            .route(
                &at("/{*rest}"),
                get(statics::not_found).post(statics::not_found),
            );
        router
            .layer(middleware::from_fn_with_state(
                self.state.clone(),
                guard::guard,
            ))
            .with_state(self.state.clone())
    }

    /// Ends every live stream, so that a graceful shutdown completes promptly.
    pub fn drain(&self) {
        self.state.drain.cancel();
    }
}
