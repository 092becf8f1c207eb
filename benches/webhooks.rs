//! Webhooks: the runner's throughput with a subscription to every status change (three
//! deliveries per task, written with the changes, sent while the runner runs) against none,
//! alternated in one run; then how fast the dispatcher drains a full outbox into a local
//! receiver. sled strict, no-op four-step tasks, 64 workers.
//! `cargo bench --bench webhooks [-- TASKS]` (default 5,000).

#[path = "support/noop_pipeline.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use media_task_engine::core::prelude::*;
use media_task_engine::sled::{SledOptions, SledStore};
use task_webhooks::{Dispatcher, DispatcherConfig, UrlPolicy};
use tokio_util::sync::CancellationToken;

/// Counts the requests it acknowledges.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, count)
}

fn dispatcher(store: Arc<SledStore>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let config = DispatcherConfig {
        policy: UrlPolicy {
            allow_private: true,
        },
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(store, config).expect("dispatcher");
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(dispatcher.run(stop)))
}

async fn subscribe(store: &SledStore, url: &str) {
    store
        .put_webhook(Webhook {
            id: WebhookId::generate(),
            tenant: support::tenant(),
            url: url.to_owned(),
            events: vec![WebhookEvent::TaskStatusChanged],
            secret: "bench-secret-0123456789".into(),
            created_at: Timestamp::from_millis(0),
        })
        .await
        .expect("subscribe");
}

async fn wait_for(count: &AtomicUsize, expected: usize) -> Instant {
    while count.load(Ordering::Relaxed) < expected {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Instant::now()
}

/// One round: tasks/s of the runner, and with webhooks the deliveries/s while it ran.
async fn round(tasks: usize, webhooks: bool) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open_with(dir.path(), SledOptions::default()).expect("open"));
    let batch = support::ingest(&*store, tasks).await;
    let mut sending = None;
    if webhooks {
        let (url, count) = receiver().await;
        subscribe(&store, &url).await;
        sending = Some((dispatcher(store.clone()), count));
    }
    let started = Instant::now();
    let run = support::run_through(store.clone(), batch, 64).await;
    match sending {
        None => println!("webhooks off: {}", run.summary),
        Some(((stop, handle), count)) => {
            let expected = tasks * 3;
            let last = wait_for(&count, expected).await;
            stop.cancel();
            handle.await.expect("dispatcher");
            let took = last.duration_since(started).as_secs_f64();
            println!(
                "webhooks on (every status change, {expected} deliveries): {}; all delivered {:.2} s after the first create ({:.0} deliveries/s)",
                run.summary,
                took,
                expected as f64 / took
            );
        }
    }
    run.rate
}

/// The outbox filled while no dispatcher runs, then drained into a local receiver.
async fn drain(tasks: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open_with(dir.path(), SledOptions::default()).expect("open"));
    let batch = support::ingest(&*store, tasks).await;
    let (url, count) = receiver().await;
    subscribe(&store, &url).await;
    support::run_through(store.clone(), batch, 64).await;
    let expected = tasks * 3;
    let started = Instant::now();
    let (stop, handle) = dispatcher(store.clone());
    let last = wait_for(&count, expected).await;
    stop.cancel();
    handle.await.expect("dispatcher");
    let took = last.duration_since(started).as_secs_f64();
    println!(
        "outbox drain: {expected} deliveries in {took:.2} s = {:.0} deliveries/s (32 in flight, sled strict records each attempt)",
        expected as f64 / took
    );
}

fn main() {
    let tasks = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut off = Vec::new();
        let mut on = Vec::new();
        for _ in 0..2 {
            off.push(round(tasks, false).await);
            on.push(round(tasks, true).await);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "runner throughput, webhooks on / off: {:.0} / {:.0} tasks/s = {:.2}x",
            mean(&on),
            mean(&off),
            mean(&on) / mean(&off)
        );
        drain(tasks).await;
    });
}
