//! Bulk cancel over the in-memory store, without a browser: one action cancels at most
//! `MAX_BULK` tasks, and the confirmation gives the exact count from the store's counters.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use task_console::{Console, ConsoleOptions};
use task_core::prelude::*;
use task_core::store::NewTask;
use task_http::ServiceConfig;
use tower::ServiceExt;

const KEY: &str = "the-secret-key-1";
const HOST: &str = "console.test";

async fn call(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, String, Option<String>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned(), cookie)
}

fn post(path: &str, cookie: Option<&str>, form: String) -> Request<Body> {
    let mut request = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(form)).unwrap()
}

fn attribute<'a>(body: &'a str, marker: &str) -> &'a str {
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {body}"));
    body[at + marker.len()..].split('"').next().unwrap()
}

#[tokio::test]
async fn one_action_cancels_at_most_the_cap_and_says_how_many_match() {
    let store = Arc::new(MemoryStore::default());
    let tenant = TenantId::new("acme").unwrap();
    let total = task_console::MAX_BULK + 3;
    let task = |i: usize, product: &str| NewTask {
        key: TaskKey {
            tenant: tenant.clone(),
            inventory_id: InventoryId::new(format!("item-{i}")).unwrap(),
            product: ProductName::new(product).unwrap(),
            version: Version::new("1").unwrap(),
        },
        priority: Priority::Low,
    };
    let mut batch: Vec<NewTask> = (0..total).map(|i| task(i, "adbreaks")).collect();
    batch.extend((0..2).map(|i| task(i, "scenes")));
    store.create_tasks(batch).await.unwrap();
    let config = ServiceConfig::new().with_api_key(KEY, tenant.clone());
    let router = Console::new(store.clone(), config, ConsoleOptions::default())
        .unwrap()
        .router();

    let (status, _, cookie) = call(&router, post("/ui/sign-in", None, format!("key={KEY}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    let list = Request::get("/ui/tasks")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (_, page, _) = call(&router, list).await;
    let csrf = attribute(&page, "name=\"csrf\" value=\"").to_owned();
    let form = format!("csrf={csrf}&product=adbreaks");

    let (status, confirm, _) = call(
        &router,
        post("/ui/tasks/cancel", Some(&cookie), form.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    assert_eq!(
        attribute(&confirm, "data-count=\""),
        total.to_string(),
        "the exact count, from the counters"
    );
    assert!(confirm.contains("One action cancels at most"), "{confirm}");

    let (status, done, _) = call(
        &router,
        post("/ui/tasks/cancel/confirm", Some(&cookie), form.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        attribute(&done, "id=\"bulk-cancelled\" data-count=\""),
        task_console::MAX_BULK.to_string()
    );
    assert!(done.contains("id=\"bulk-more\""), "{done}");
    let count = |counts: &[task_core::stats::StatusCount], product: &str, status: Status| {
        counts
            .iter()
            .find(|c| c.product.as_str() == product && c.status == status)
            .map_or(0, |c| c.count)
    };
    let counts = store.status_counts(Some(&tenant)).await.unwrap();
    assert_eq!(
        count(&counts, "adbreaks", Status::Cancelled),
        task_console::MAX_BULK as u64
    );
    assert_eq!(count(&counts, "adbreaks", Status::Pending), 3);
    assert_eq!(
        count(&counts, "scenes", Status::Pending),
        2,
        "another product is left alone"
    );

    let (_, again, _) = call(
        &router,
        post("/ui/tasks/cancel", Some(&cookie), form.clone()),
    )
    .await;
    assert_eq!(attribute(&again, "data-count=\""), "3");
    let (_, rest, _) = call(
        &router,
        post("/ui/tasks/cancel/confirm", Some(&cookie), form),
    )
    .await;
    assert_eq!(attribute(&rest, "id=\"bulk-cancelled\" data-count=\""), "3");
    assert!(!rest.contains("id=\"bulk-more\""), "{rest}");
}
