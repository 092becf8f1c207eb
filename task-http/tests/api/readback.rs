//! Whatever the API accepts reads back, on the embedded default store: a property test over
//! arbitrary JSON in an item's extra fields, including nesting at and past the limits of the
//! decoders that read stored records.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use task_http::TaskApi;
use task_store_sled::SledStore;
use tower::ServiceExt;

use crate::common::{KEY_A, config};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

/// Arbitrary JSON, sometimes wrapped in up to 200 levels of arrays and objects.
fn value() -> impl Strategy<Value = Value> {
    let tree = leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (tree, 0usize..200, any::<bool>()).prop_map(|(mut value, depth, objects)| {
        for level in 0..depth {
            value = if objects && level % 2 == 0 {
                json!({ "k": value })
            } else {
                json!([value])
            };
        }
        value
    })
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-api-key", KEY_A)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// PUTs an item with `extra`; when accepted, checks that it reads back through every route
/// that touches it. Ok(true) if accepted, Ok(false) if refused with a clear 422.
fn round_trip(
    runtime: &tokio::runtime::Runtime,
    router: &Router,
    id: &str,
    extra: &Value,
) -> Result<bool, TestCaseError> {
    let item = json!({
        "id": id, "type": "standalone", "title": "T", "asset_url": "s3://b/k.mp4",
        "extra": extra,
    });
    let (status, body) = runtime.block_on(call(router, "PUT", "/catalog/v1/item", Some(item)));
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        let text = body.to_string();
        prop_assert!(text.contains("levels"), "{text}");
        return Ok(false);
    }
    prop_assert!(status.is_success(), "PUT answered {status}: {body}");
    let path = format!("/catalog/v1/item/standalone/{id}");
    let (status, got) = runtime.block_on(call(router, "GET", &path, None));
    prop_assert_eq!(status, StatusCode::OK, "GET after an accepted PUT: {}", got);
    prop_assert_eq!(&got["extra"], extra);
    let (status, page) =
        runtime.block_on(call(router, "GET", "/catalog/v1/item?page_size=1000", None));
    prop_assert_eq!(status, StatusCode::OK, "listing: {}", page);
    let task = json!({"inventory_id": id, "product": "adbreaks", "version": "1"});
    let (status, created) = runtime.block_on(call(router, "POST", "/task", Some(task)));
    prop_assert!(
        status.is_success(),
        "POST /task answered {status}: {created}"
    );
    let task_id = created["task_id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = runtime.block_on(call(router, "GET", &format!("/task/{task_id}"), None));
    prop_assert_eq!(status, StatusCode::OK);
    let (status, deleted) = runtime.block_on(call(router, "DELETE", &path, None));
    prop_assert!(status.is_success(), "DELETE answered {status}: {deleted}");
    Ok(true)
}

#[test]
fn every_accepted_item_and_task_reads_back() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let router = TaskApi::new(store, config()).router();
    // Every depth around the decoders' limit of 128, where a stored record holds a few
    // levels more than the request did.
    for depth in 0..135 {
        let mut extra = json!("leaf");
        for _ in 0..depth {
            extra = json!([extra]);
        }
        round_trip(&runtime, &router, &format!("deep-{depth}"), &extra)
            .unwrap_or_else(|e| panic!("depth {depth}: {e}"));
    }
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let accepted = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let case = AtomicUsize::new(0);
    runner
        .run(&value(), |extra| {
            let id = format!("item-{}", case.fetch_add(1, Ordering::SeqCst));
            let counter = if round_trip(&runtime, &router, &id, &extra)? {
                &accepted
            } else {
                &refused
            };
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    let (accepted, refused) = (accepted.into_inner(), refused.into_inner());
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );
}
