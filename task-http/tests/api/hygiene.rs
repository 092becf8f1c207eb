//! Input hygiene: ambiguous credentials, duplicate JSON keys, bodies that are not JSON, ids
//! that only look like ids, and 500s that say nothing of the service's insides.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{KEY_A, KEY_B, Server};

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ambiguous_credentials_are_refused_by_name() {
    let s = Server::start().await;
    let item = "/catalog/v1/item";
    let cases = [
        (
            s.http
                .get(s.url(item))
                .header("X-API-Key", KEY_A)
                .header("X-API-Key", KEY_A),
            "more than once",
        ),
        (
            s.http
                .get(s.url(&format!("{item}?key={KEY_A}&key={KEY_B}"))),
            "more than once",
        ),
        (
            s.http
                .get(s.url(&format!("{item}?key={KEY_B}")))
                .header("X-API-Key", KEY_A),
            "differ",
        ),
    ];
    for (request, phrase) in cases {
        let (status, body) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("Ambiguous credentials") && detail.contains(phrase),
            "{detail}"
        );
    }
    // The same key in both places is not ambiguous.
    let same = s
        .http
        .get(s.url(&format!("{item}?key={KEY_A}")))
        .header("X-API-Key", KEY_A);
    assert_eq!(send(same).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bodies_must_be_json_without_duplicate_keys() {
    let s = Server::start().await;
    let put = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = s
            .http
            .put(s.url("/catalog/v1/item"))
            .header("X-API-Key", KEY_A)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request
    };
    let item = r#"{"id": "m", "type": "standalone", "title": "t", "asset_url": "s3://b/k"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, body) = send(put(item, content_type)).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {body}"
        );
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("application/json")
        );
    }
    let duplicate =
        r#"{"id": "m", "id": "n", "type": "standalone", "title": "t", "asset_url": "s3://b/k"}"#;
    let (status, body) = send(put(duplicate, Some("application/json"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.to_string().contains("duplicate key \\\"id\\\""),
        "{body}"
    );
    let (status, _) = send(put(item, Some("application/json; charset=utf-8"))).await;
    assert!(status.is_success());
    // A read-only field sent as null was kept as an extra field and shown in place of the time.
    let null_time = r#"{"id": "m", "type": "standalone", "title": "t", "asset_url": "s3://b/k", "updated_at": null}"#;
    let (status, body) = send(put(null_time, Some("application/json"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("read-only"), "{body}");
}

#[tokio::test]
async fn blank_and_bidi_inventory_ids_are_refused() {
    let s = Server::start().await;
    for id in ["   ", "movie\u{202e}4pm", "\u{2067}x"] {
        let item = serde_json::json!({"id": id, "type": "standalone", "title": "t", "asset_url": "s3://b/k"});
        let (status, body) = s.put("/catalog/v1/item", item).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{id:?}: {body}");
        assert!(
            body.to_string().contains("inventory_id") || body.to_string().contains("\"id\""),
            "{body}"
        );
    }
}
