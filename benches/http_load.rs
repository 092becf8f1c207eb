//! Requests per second and latency of `POST /task` and `GET /task/{id}` over real HTTP at 64
//! connections, against the task-http router served on a local port over sled (strict
//! durability: every create waits for its fsync, shared by group commit) and over the memory
//! store (the HTTP layer alone). The server runs on its own 2-worker runtime, the load client
//! (64 concurrent requests on a reqwest pool: one HTTP/1.1 connection each) on another; both
//! share this machine's cores. Prints a markdown table.
//! `cargo bench --bench http_load [-- POSTS GETS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use media_task_engine::core::prelude::*;
use media_task_engine::sled::SledStore;
use serde_json::json;
use task_http::{ServiceConfig, TaskApi};

const CONNECTIONS: usize = 64;
const ITEMS: usize = 100;
const KEY: &str = "bench-key";

struct Figures {
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Figures {
    fn row(&mut self, store: &str, route: &str) -> String {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
            self.latencies_us[i] as f64 / 1000.0
        };
        format!(
            "| {store} | {route} | {} | {:.0} /s | {:.2} ms | {:.2} ms | {:.2} ms |",
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
        )
    }
}

/// Starts the service over `store` on a dedicated runtime; returns its base URL.
fn serve<S: Store>(store: Arc<S>) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let config = ServiceConfig::new()
        .with_api_key(KEY, TenantId::new("bench").expect("tenant"))
        .with_product(ProductName::new("adbreaks").expect("product"));
    let api = TaskApi::new(store, config);
    let base = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(axum::serve(listener, api.router()).into_future());
        format!("http://{addr}")
    });
    (base, runtime)
}

/// Runs `total` requests from 64 concurrent workers; `make(i)` builds request `i`.
async fn load(
    total: usize,
    make: impl Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
    expect: reqwest::StatusCode,
) -> (Figures, Vec<serde_json::Value>) {
    let make = Arc::new(make);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CONNECTIONS {
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bodies = Vec::new();
            let mut i = w;
            while i < total {
                let sent = Instant::now();
                let resp = make(i).send().await.expect("request");
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.expect("json");
                latencies.push(sent.elapsed().as_micros() as u64);
                assert_eq!(status, expect, "{body}");
                bodies.push(body);
                i += CONNECTIONS;
            }
            (latencies, bodies)
        }));
    }
    let mut latencies_us = Vec::with_capacity(total);
    let mut bodies = Vec::with_capacity(total);
    for worker in workers {
        let (l, b) = worker.await.expect("worker");
        latencies_us.extend(l);
        bodies.extend(b);
    }
    let figures = Figures {
        requests: total,
        elapsed: started.elapsed(),
        latencies_us,
    };
    (figures, bodies)
}

async fn run(base: String, name: &str, posts: usize, gets: usize) -> Vec<String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    for i in 0..ITEMS {
        let body = json!({"id": format!("movie-{i}"), "type": "standalone", "title": "m", "asset_url": "s3://b/m.mp4"});
        let resp = http
            .put(format!("{base}/catalog/v1/item"))
            .header("X-API-Key", KEY)
            .json(&body)
            .send()
            .await
            .expect("ingest");
        assert!(resp.status().is_success());
    }
    // Warm-up: open the 64 connections.
    let (h, b) = (http.clone(), base.clone());
    load(
        CONNECTIONS * 4,
        move |_| h.get(format!("{b}/healthz")),
        reqwest::StatusCode::OK,
    )
    .await;

    let (h, b) = (http.clone(), base.clone());
    let (mut post, bodies) = load(
        posts,
        move |i| {
            let body = json!({"inventory_id": format!("movie-{}", i % ITEMS), "product": "adbreaks", "version": format!("1.{i}")});
            h.post(format!("{b}/task")).header("X-API-Key", KEY).json(&body)
        },
        reqwest::StatusCode::CREATED,
    )
    .await;
    let ids: Arc<Vec<String>> = Arc::new(
        bodies
            .iter()
            .map(|b| b["task_id"].as_str().expect("id").to_owned())
            .collect(),
    );
    let (h, b) = (http.clone(), base.clone());
    let (mut get, _) = load(
        gets,
        move |i| {
            let id = &ids[(i * 7919) % ids.len()];
            h.get(format!("{b}/task/{id}")).header("X-API-Key", KEY)
        },
        reqwest::StatusCode::OK,
    )
    .await;
    vec![
        post.row(name, "POST /task"),
        get.row(name, "GET /task/{id}"),
    ]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let posts = args.first().copied().unwrap_or(10_000);
    let gets = args.get(1).copied().unwrap_or(50_000);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut rows = Vec::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let sled = Arc::new(SledStore::open(dir.path()).expect("open sled"));
    let (base, server) = serve(sled);
    rows.extend(client.block_on(run(base, "sled (strict)", posts, gets)));
    server.shutdown_timeout(Duration::from_secs(1));

    let (base, server) = serve(Arc::new(MemoryStore::default()));
    rows.extend(client.block_on(run(base, "memory", posts, gets)));
    server.shutdown_timeout(Duration::from_secs(1));

    println!(
        "{CONNECTIONS} connections, {posts} POST /task then {gets} GET /task/{{id}} per store"
    );
    println!("| store | route | requests | throughput | p50 | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!("{row}");
    }
}
