//! Request bodies of every route that takes one, through the real router over the in-memory
//! store: any bytes get an answer below 500, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use task_core::ids::{ProductName, TenantId};
use task_core::memory::MemoryStore;
use task_http::{ServiceConfig, TaskApi};
use tower::ServiceExt;

const KEY: &str = "fuzz-key-0123456789";

fn fixture() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static FIXTURE: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = ServiceConfig::new()
            .with_api_key(KEY, TenantId::new("acme").expect("tenant"))
            .with_product(ProductName::new("adbreaks").expect("product"))
            .with_asset_url_validator(|url| {
                task_media::asset_url::validate_asset_url(url).map_err(|e| e.to_string())
            });
        let router = TaskApi::new(Arc::new(MemoryStore::default()), config).router();
        (runtime, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, router) = fixture();
    for (method, path) in [
        ("PUT", "/catalog/v1/item"),
        ("POST", "/task"),
        ("POST", "/tasks/batch"),
        ("POST", "/tasks/catalog-item/m1/product/adbreaks/version/1"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", KEY)
            .header("content-type", "application/json")
            .body(Body::from(data.to_vec()))
            .expect("request");
        let status = runtime.block_on(router.clone().oneshot(request)).expect("answer").status();
        assert!(status.as_u16() < 500, "{method} {path}: {status}");
    }
});
