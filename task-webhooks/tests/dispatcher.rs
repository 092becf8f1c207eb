//! The dispatcher against real HTTP receivers on loopback, over the in-memory store: a
//! receiver that never answers holds only its subscription's share of the slots, and another
//! tenant's delivery goes out meanwhile; each request is signed.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use task_core::memory::MemoryStore;
use task_core::prelude::*;
use task_core::testing::{claim_one, key, run_to_done};
use task_webhooks::{Dispatcher, DispatcherConfig, UrlPolicy, verify};
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver at `/hook` that records each request; it never answers if `hang`.
async fn receiver(hang: bool) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push((headers, body));
                if hang {
                    std::future::pending::<()>().await;
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn webhook(tenant: &str, url: &str, secret: &str) -> Webhook {
    Webhook {
        id: WebhookId::generate(),
        tenant: TenantId::new(tenant).unwrap(),
        url: url.to_owned(),
        events: WebhookEvent::ENDS.to_vec(),
        secret: secret.to_owned(),
        created_at: Timestamp::from_millis(0),
    }
}

async fn finish(store: &MemoryStore, tenant: &str, item: &str) {
    store
        .create_task(NewTask {
            key: key(tenant, item, "adbreaks", "1"),
            priority: Priority::High,
        })
        .await
        .unwrap();
    let task = claim_one(store, "w").await;
    run_to_done(store, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_holds_only_its_share_and_others_are_served() {
    let store = Arc::new(MemoryStore::default());
    let (dead_url, _) = receiver(true).await;
    let (live_url, live) = receiver(false).await;
    store
        .put_webhook(webhook("slow-tenant", &dead_url, "dead-secret"))
        .await
        .unwrap();
    store
        .put_webhook(webhook("quick-tenant", &live_url, "live-secret"))
        .await
        .unwrap();
    for i in 0..10 {
        finish(&store, "slow-tenant", &format!("item-{i}")).await;
    }
    finish(&store, "quick-tenant", "item-0").await;

    let config = DispatcherConfig {
        max_in_flight: 8,
        max_in_flight_per_webhook: 4,
        request_timeout: Duration::from_secs(60),
        policy: UrlPolicy {
            allow_private: true,
        },
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone(), config).unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(stop.clone()));

    let started = Instant::now();
    while live.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The dead receiver's subscription has exactly its share in flight; the rest wait.
    let slow = TenantId::new("slow-tenant").unwrap();
    let slow_hook = store.list_webhooks(&slow).await.unwrap()[0].id;
    let page = store
        .list_deliveries(&slow, slow_hook, None, &PageRequest::first(100))
        .await
        .unwrap();
    let taken = page.items.iter().filter(|d| d.attempts > 0).count();
    assert_eq!(taken, 4, "at most its share of the slots: {:?}", page.items);
    assert_eq!(page.items.len(), 10);
    let (headers, body) = live.lock().unwrap()[0].clone();
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    verify(
        "live-secret",
        header("webhook-timestamp").parse().unwrap(),
        &header("webhook-signature"),
        &body,
        now,
        300,
    )
    .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["event"], "task.done");
    assert_eq!(payload["task"]["status"], "done");
    assert_eq!(payload["delivery_id"], header("webhook-id").as_str());
    stop.cancel();
    running.await.unwrap();
}
