//! The Task API mounted inside your own axum application, beside your own routes and your own
//! auth, over the embedded sled store, with the runner in the same process.
//!
//! Your routes (`/`, `/me`) use your session check (a bearer token here); the Task API is
//! nested under `/media` with its own API keys and links that carry the prefix. The example
//! serves on a free local port, calls both as a client would, and stops.
//!
//! `cargo run --example embed_http`

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use media_task_engine::core::prelude::*;
use media_task_engine::sled::SledStore;
use task_http::{ServiceConfig, TaskApi};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Your own auth: a bearer token on your own routes.
async fn require_session(request: Request, next: Next) -> Response {
    let authorised = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == "Bearer session-of-alice");
    if authorised {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "sign in first").into_response()
    }
}

/// Your application: its routes behind its auth, and the Task API under `/media`.
fn app(store: Arc<SledStore>) -> Result<Router, Error> {
    let config = ServiceConfig::new()
        .with_api_key("media-key-of-acme", TenantId::new("acme")?)
        .with_product(ProductName::new("adbreaks")?)
        .with_base_path("/media");
    let tasks = TaskApi::new(store, config);
    let own = Router::new()
        .route("/", get(|| async { "the home page of your application" }))
        .route("/me", get(|| async { "alice" }))
        .layer(middleware::from_fn(require_session));
    Ok(own.nest("/media", tasks.router()))
}

async fn run() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SledStore::open(dir.path().join("tasks"))?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(axum::serve(listener, app(store)?).into_future());
    let http = reqwest::Client::new();

    let me = http.get(format!("{base}/me")).send().await?;
    println!("GET /me without a session: {}", me.status());
    assert_eq!(me.status(), 401);
    let me = http
        .get(format!("{base}/me"))
        .bearer_auth("session-of-alice")
        .send()
        .await?;
    println!(
        "GET /me with a session: {} {}",
        me.status(),
        me.text().await?
    );

    let item = serde_json::json!({"id": "movie-42", "type": "standalone", "title": "Movie",
        "asset_url": "s3://media/movie-42.mp4"});
    let put = http
        .put(format!("{base}/media/catalog/v1/item"))
        .header("X-API-Key", "media-key-of-acme")
        .json(&item)
        .send()
        .await?;
    println!("PUT /media/catalog/v1/item: {}", put.status());
    assert_eq!(put.status(), 201);
    let task: serde_json::Value = http
        .post(format!("{base}/media/task"))
        .header("X-API-Key", "media-key-of-acme")
        .json(
            &serde_json::json!({"inventory_id": "movie-42", "product": "adbreaks",
            "version": "1.0.1", "priority": "high"}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let href = task["_links"]["self"]["href"].as_str().unwrap_or_default();
    println!(
        "POST /media/task: {} {}, its link {href}",
        task["task_id"], task["status"]
    );
    assert!(href.starts_with("/media/task/"), "links carry the prefix");
    let again = http
        .get(format!("{base}{href}"))
        .header("X-API-Key", "media-key-of-acme")
        .send()
        .await?;
    assert_eq!(again.status(), 200);
    let refused = http.get(format!("{base}{href}")).send().await?;
    println!("the same without the API key: {}", refused.status());
    assert_eq!(refused.status(), 401);
    server.abort();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run().await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_example_runs() {
        if let Err(err) = super::run().await {
            panic!("embed_http failed: {err}");
        }
    }
}
