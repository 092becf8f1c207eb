//! The console's router over the in-memory store, without a browser: headers, cookies,
//! refusals and error pages, and the catalog hierarchy on asset pages.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use task_console::{Console, ConsoleOptions};
use task_core::prelude::*;
use task_http::ServiceConfig;
use tower::ServiceExt;

const KEY: &str = "the-secret-key-1";

fn console() -> axum::Router {
    console_over(Arc::new(MemoryStore::default()))
}

fn console_over(store: Arc<MemoryStore>) -> axum::Router {
    let config = ServiceConfig::new().with_api_key(KEY, TenantId::new("acme").unwrap());
    Console::new(store, config, ConsoleOptions::default())
        .unwrap()
        .router()
}

async fn send(router: &axum::Router, request: Request<Body>) -> (Response, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        Response::from_parts(parts, Body::empty()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn sign_in(extra: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post("/ui/sign-in")
        .header(header::HOST, "console.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(Body::from(format!("key={KEY}"))).unwrap()
}

fn cookie_of(response: &Response) -> String {
    response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let router = console();
    let (_, cookie) = {
        let (response, _) = send(&router, sign_in(&[])).await;
        let cookie = cookie_of(&response);
        (response, cookie.split(';').next().unwrap().to_owned())
    };
    for path in [
        "/ui",
        "/ui/sign-in",
        "/ui/tasks",
        "/ui/nothing-here",
        "/ui/static/console.js",
    ] {
        let request = Request::get(path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap();
        let (response, body) = send(&router, request).await;
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"].to_str().unwrap(),
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        assert!(!body.contains(KEY), "{path}");
        if path == "/ui/nothing-here" {
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            assert!(body.contains("<h1>404 Not Found</h1>"), "{body}");
        }
    }
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_secure_behind_https() {
    let router = console();
    let (response, body) = send(&router, sign_in(&[])).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(!body.contains(KEY));
    let cookie = cookie_of(&response);
    assert!(cookie.starts_with("taskd_console="), "{cookie}");
    assert!(!cookie.contains(KEY), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let (response, _) = send(&router, sign_in(&[("x-forwarded-proto", "https")])).await;
    assert!(cookie_of(&response).ends_with("; Secure"));
}

#[tokio::test]
async fn a_cross_site_sign_in_and_a_wrong_key_are_refused() {
    let router = console();
    let (response, _) = send(&router, sign_in(&[("origin", "https://evil.test")])).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!response.headers().contains_key(header::SET_COOKIE));
    let (response, _) = send(&router, sign_in(&[("sec-fetch-site", "cross-site")])).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (response, _) = send(&router, sign_in(&[("origin", "http://console.test")])).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let wrong = Request::post("/ui/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("key=the-secret-key-2"))
        .unwrap();
    let (response, body) = send(&router, wrong).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !body.contains("the-secret-key-2"),
        "a refused key is not echoed"
    );
}

#[tokio::test]
async fn a_forged_session_is_sent_to_sign_in() {
    let router = console();
    let request = Request::get("/ui/tasks")
        .header(header::COOKIE, "taskd_console=acme.00.99999999999999.00.00")
        .body(Body::empty())
        .unwrap();
    let (response, _) = send(&router, request).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/ui/sign-in");
}

#[tokio::test]
async fn an_asset_links_its_parent_and_lists_its_children() {
    let store = Arc::new(MemoryStore::default());
    for (name, item_type, parent) in [
        ("show", ItemType::Series, None),
        ("show-s1", ItemType::Season, Some("show")),
        ("show-s1e1", ItemType::Episode, Some("show-s1")),
        ("show-s1e2", ItemType::Episode, Some("show-s1")),
    ] {
        let item = task_core::testing::catalog_item("acme", name, item_type, parent);
        store.upsert_item(item).await.unwrap();
    }
    let router = console_over(store);
    let (response, _) = send(&router, sign_in(&[])).await;
    let cookie = cookie_of(&response).split(';').next().unwrap().to_owned();
    let page = |path: &str| {
        Request::get(path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };

    let (response, episode) = send(&router, page("/ui/assets/show-s1e1")).await;
    assert_eq!(response.status(), StatusCode::OK, "{episode}");
    assert!(episode.contains("href=\"/ui/assets/show-s1\""), "{episode}");
    assert!(
        !episode.contains("id=\"children-title\""),
        "an episode has no children"
    );
    let (_, season) = send(&router, page("/ui/assets/show-s1")).await;
    assert!(season.contains("href=\"/ui/assets/show\""), "{season}");
    assert!(season.contains("Episodes"), "{season}");
    for child in ["show-s1e1", "show-s1e2"] {
        assert!(
            season.contains(&format!("href=\"/ui/assets/{child}\"")),
            "{season}"
        );
    }
    let (_, series) = send(&router, page("/ui/assets/show")).await;
    assert!(series.contains("Seasons"), "{series}");
    assert!(series.contains("href=\"/ui/assets/show-s1\""), "{series}");
}
