//! The console's views of the products' results and of waiting tasks, over the in-memory store
//! with stored results (the JSON shapes the analyzers write), without a browser.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use task_console::{Console, ConsoleOptions};
use task_core::prelude::*;
use task_core::testing::{catalog_item, key};
use task_http::ServiceConfig;
use tower::ServiceExt;

const KEY: &str = "the-secret-key-1";

struct SignedIn {
    router: axum::Router,
    cookie: String,
}

impl SignedIn {
    async fn over(store: Arc<MemoryStore>) -> Self {
        let config = ServiceConfig::new().with_api_key(KEY, TenantId::new("acme").unwrap());
        let router = Console::new(store, config, ConsoleOptions::default())
            .unwrap()
            .router();
        let request = Request::post("/ui/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("key={KEY}")))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        Self { router, cookie }
    }

    async fn get(&self, path: &str) -> String {
        let request = Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

/// Creates a task of `product` for `item` and stores `data` as its result.
async fn result(store: &MemoryStore, item: &str, product: &str, data: serde_json::Value) {
    let task = store
        .create_task(NewTask {
            key: key("acme", item, product, "1"),
            priority: Priority::Medium,
        })
        .await
        .unwrap()
        .task;
    store
        .put_result(AnalysisResult {
            tenant: task.key.tenant.clone(),
            product: task.key.product.clone(),
            inventory_id: task.key.inventory_id.clone(),
            version: task.key.version.clone(),
            task_id: task.id,
            updated_at: Timestamp::from_millis(1_700_000_000_000),
            data,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_episode_shows_its_shots_stills_fingerprint_and_markers() {
    let store = Arc::new(MemoryStore::default());
    for (name, item_type, parent) in [
        ("show", ItemType::Series, None),
        ("s1", ItemType::Season, Some("show")),
        ("e1", ItemType::Episode, Some("s1")),
        ("e2", ItemType::Episode, Some("s1")),
        ("e3", ItemType::Episode, Some("s1")),
    ] {
        store
            .upsert_item(catalog_item("acme", name, item_type, parent))
            .await
            .unwrap();
    }
    let scenes = json!({"duration_secs": 70.0, "threshold": 10.0,
        "shots": [[0.0, 5.0], [5.0, 25.0], [25.0, 70.0]],
        "cuts": [{"time": 5.0, "score": 40.0}, {"time": 25.0, "score": 80.0}]});
    result(&store, "e1", "scenes", scenes).await;
    let thumbnails = json!({"duration_secs": 70.0, "shots": 3, "stills": [
        {"time_secs": 2.5, "shot": [0.0, 5.0], "key": "acme/e1/thumbnails/1/001.jpg",
         "url": "file:///stills/acme/e1/thumbnails/1/001.jpg", "width": 160, "height": 120, "mean_luma": 90.0},
        {"time_secs": 40.25, "shot": [25.0, 70.0], "key": "acme/e1/thumbnails/1/002.jpg<x>",
         "url": "file:///stills/acme/e1/thumbnails/1/002.jpg", "width": 160, "height": 120, "mean_luma": 80.0}]});
    result(&store, "e1", "thumbnails", thumbnails).await;
    let fingerprint = json!({"algorithm": 1, "item_secs": 0.1238, "duration_secs": 70.0,
        "items": 560, "fingerprint": "SECRET-FINGERPRINT-DATA"});
    result(&store, "e1", "fingerprint", fingerprint).await;
    let markers = json!({"intro": [5.0, 25.0], "credits": [55.0, 70.0],
        "intro_shared_with": ["e2", "e3"], "credits_shared_with": ["e3"],
        "fingerprint_version": "1", "siblings_compared": ["e2", "e3"], "siblings_left_out": {}});
    result(&store, "e1", "markers", markers).await;
    let console = SignedIn::over(store).await;

    let page = console.get("/ui/assets/e1").await;
    // Scenes: the count, a mark per cut, the shots as a table.
    assert!(page.contains("3 shots over 0:01:10"), "{page}");
    assert_eq!(page.matches("class=\"s-cut\"").count(), 2, "{page}");
    assert!(page.contains("<td>25.00</td><td>70.00</td><td>45.00</td>"));
    // Thumbnails: a mark per still, its key and URL as text (escaped), no image.
    assert!(page.contains("2 stills from 3 shots"), "{page}");
    assert_eq!(page.matches("class=\"s-still\"").count(), 2);
    assert!(
        page.contains("acme/e1/thumbnails/1/002.jpg&lt;x&gt;"),
        "{page}"
    );
    assert!(page.contains("file:///stills/acme/e1/thumbnails/1/001.jpg"));
    assert!(page.contains("160×120"));
    assert!(!page.contains("<img"), "no image bytes are served");
    // Fingerprint: seconds covered and items, never the data.
    assert!(page.contains("<dd>69.3</dd>"), "{page}");
    assert!(page.contains("560 (one every 0.1238 s)"), "{page}");
    assert!(!page.contains("SECRET-FINGERPRINT-DATA"));
    // Markers: the intro and the credits on the timeline, the siblings that share them.
    assert_eq!(page.matches("class=\"s-intro\"").count(), 1, "{page}");
    assert_eq!(page.matches("class=\"s-credits\"").count(), 1);
    assert!(page.contains("5.0–25.0 s"), "{page}");
    assert!(page.contains("55.0–70.0 s"), "{page}");
    let shared = "shared with <a class=\"mono\" href=\"/ui/assets/e2\">e2</a>, <a class=\"mono\" href=\"/ui/assets/e3\">e3</a>";
    assert!(page.contains(shared), "{page}");
    assert!(!page.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn results_of_unexpected_shapes_are_shown_plainly() {
    let store = Arc::new(MemoryStore::default());
    store
        .upsert_item(catalog_item("acme", "odd", ItemType::Standalone, None))
        .await
        .unwrap();
    result(&store, "odd", "scenes", json!({"shots": "many"})).await;
    result(
        &store,
        "odd",
        "markers",
        json!({"intro": null, "credits": null}),
    )
    .await;
    result(&store, "odd", "fingerprint", json!([1, 2, 3])).await;
    let page = SignedIn::over(store).await.get("/ui/assets/odd").await;
    assert_eq!(page.matches("Result stored").count(), 3, "{page}");
    assert_eq!(page.matches("none found").count(), 2, "{page}");
    assert!(!page.contains("shots over"), "{page}");
}

#[tokio::test]
async fn a_waiting_task_links_the_tasks_it_waits_for() {
    let store = Arc::new(MemoryStore::default());
    let waiter = store
        .create_task(NewTask {
            key: key("acme", "e1", "markers", "1"),
            priority: Priority::High,
        })
        .await
        .unwrap()
        .task;
    let held = store
        .claim(&ClaimRequest::one(
            WorkerId::new("w").unwrap(),
            Duration::from_secs(30),
        ))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(held.id, waiter.id);
    let mut awaited = Vec::new();
    for item in ["e2", "e3"] {
        let new = NewTask {
            key: key("acme", item, "fingerprint", "1"),
            priority: Priority::Low,
        };
        awaited.push(store.create_task(new).await.unwrap().task.id);
    }
    let events = [
        TaskEvent::StepStarted {
            step: Step::S3Check,
        },
        TaskEvent::WaitingFor {
            tasks: awaited.clone(),
        },
    ];
    let parked = store.apply(held.id, held.epoch, &events).await.unwrap();
    assert_eq!(parked.waiting_for(), &awaited[..]);
    let console = SignedIn::over(store).await;

    let page = console.get(&format!("/ui/tasks/{}", waiter.id)).await;
    assert!(page.contains("Waiting for"), "{page}");
    for (id, item) in awaited.iter().zip(["e2", "e3"]) {
        let link = format!(
            "<a class=\"mono\" href=\"/ui/tasks/{id}\">{id}</a> fingerprint 1 of <a class=\"mono\" href=\"/ui/assets/{item}\">{item}</a> <span class=\"badge\" data-status=\"pending\">pending</span>"
        );
        assert!(page.contains(&link), "{link} in {page}");
    }
    assert!(
        page.contains("<section id=\"waiting\""),
        "the script hides it once the wait ends"
    );
    let other = console.get(&format!("/ui/tasks/{}", awaited[0])).await;
    assert!(!other.contains("Waiting for"), "{other}");
}
