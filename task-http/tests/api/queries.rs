//! No query value of any route panics a handler or answers 500: a property test over every
//! query parameter that the OpenAPI document declares (and the API key's), in-process.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use task_core::memory::MemoryStore;
use task_http::TaskApi;
use tower::ServiceExt;

use crate::common::{KEY_A, config};

/// Values that have broken parsers before, beside arbitrary text.
const EDGES: [&str; 22] = [
    "1e20",
    "1e308",
    "1e400",
    "-1",
    "-0",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e-400",
    "18446744073709551616",
    "-9223372036854775809",
    "0x10",
    "",
    " ",
    "+5",
    "1_000",
    "true ",
    "\u{202e}1",
    "%00",
    "0.0000001",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(EDGES.to_vec()).prop_map(str::to_owned),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i128>().prop_map(|i| i.to_string()),
        "\\PC{0,24}",
        "[0-9]{300,400}",
    ]
}

fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every GET path of the document with its query parameters, path parameters filled with
/// things that exist (so that handlers get as far as their query).
fn routes(doc: &Value, task_id: &str) -> Vec<(String, Vec<String>)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(get) = item.get("get") else { continue };
        let params: Vec<String> = get["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .chain(["key".to_owned()])
            .collect();
        let concrete = path
            .replace("{task_id}", task_id)
            .replace("{id}", task_id)
            .replace("{inventory_id}", "m1")
            .replace("{product}", "adbreaks")
            .replace("{version}", "1")
            .replace("{type}", "standalone");
        routes.push((concrete, params));
    }
    routes
}

#[test]
fn no_query_value_panics_or_answers_500() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut service = config();
    service.max_wait = Duration::from_millis(20);
    let api = TaskApi::new(Arc::new(MemoryStore::default()), service);
    let router = api.router();
    let call = |method: &str, uri: String, body: &str| {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", KEY_A)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let router = router.clone();
        runtime.block_on(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            // Event streams never end: the head is the answer.
            (status, response.headers().get("content-type").cloned())
        })
    };
    let item = r#"{"id": "m1", "type": "standalone", "title": "M", "asset_url": "s3://b/m.mp4"}"#;
    assert!(call("PUT", "/catalog/v1/item".into(), item).0.is_success());
    let created = runtime.block_on(async {
        let request = Request::builder()
            .method("POST")
            .uri("/task")
            .header("x-api-key", KEY_A)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"inventory_id": "m1", "product": "adbreaks", "version": "1"}"#,
            ))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    });
    let task_id = created["task_id"].as_str().expect("task id").to_owned();
    let cases: Vec<(String, String)> = routes(&api.openapi(), &task_id)
        .into_iter()
        .flat_map(|(path, params)| params.into_iter().map(move |p| (path.clone(), p)))
        .collect();
    assert!(cases.iter().any(|(_, p)| p == "wait"), "{cases:?}");
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    for (path, param) in cases {
        for edge in EDGES {
            let query = format!("{param}={}", encode(edge));
            let (status, _) = call("GET", format!("{path}?{query}"), "");
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "GET {path}?{query}"
            );
        }
        runner
            .run(&(value(), value()), |(first, second)| {
                // One value, and the same parameter twice.
                for query in [
                    format!("{param}={}", encode(&first)),
                    format!("{param}={}&{param}={}", encode(&first), encode(&second)),
                ] {
                    let (status, _) = call("GET", format!("{path}?{query}"), "");
                    prop_assert!(
                        status != StatusCode::INTERNAL_SERVER_ERROR,
                        "GET {path}?{query} answered 500"
                    );
                }
                Ok(())
            })
            .unwrap_or_else(|failure| panic!("{path} ?{param}: {failure}"));
    }
}
