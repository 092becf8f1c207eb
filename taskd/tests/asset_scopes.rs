//! Per-tenant asset scopes and `memory://` URLs, at ingest through the real daemon.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use serde_json::{Value, json};
use support::Daemon;

const CONFIG: &str = r#"
allow_memory_urls = false
[[api_keys]]
key = "acme-key-0123456789"
tenant = "acme"
[[api_keys]]
key = "beta-key-0123456789"
tenant = "beta"
[tenants.acme]
buckets = ["media-a", "shared/trailers"]
file_root = "acme"
[products.adbreaks]
"#;

async fn put(daemon: &Daemon, key: &str, url: &str) -> (u16, Value) {
    let item = json!({"id": "m1", "type": "standalone", "title": "t", "asset_url": url});
    let response = reqwest::Client::new()
        .put(daemon.url("/catalog/v1/item"))
        .header("X-API-Key", key)
        .json(&item)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_tenant_names_only_assets_in_its_scope() {
    let daemon = Daemon::start(CONFIG);
    let media = daemon.root().join("media");
    let acme = "acme-key-0123456789";
    for ok in [
        "s3://media-a/films/a.mp4".to_owned(),
        "s3://shared/trailers/t.mp4".to_owned(),
        format!("file://{}/acme/a.mp4", media.display()),
    ] {
        let (status, body) = put(&daemon, acme, &ok).await;
        assert!(status == 200 || status == 201, "{ok}: {body}");
    }
    for (refused, phrase) in [
        (
            "s3://media-b/a.mp4".to_owned(),
            "not among the buckets allowed",
        ),
        ("s3://shared/other/t.mp4".to_owned(), "outside the prefixes"),
        (
            format!("file://{}/beta/a.mp4", media.display()),
            "outside this tenant",
        ),
        ("memory:///a.mp4".to_owned(), "memory://"),
        ("s3://../media-a/a.mp4".to_owned(), "bucket"),
    ] {
        let (status, body) = put(&daemon, acme, &refused).await;
        assert_eq!(status, 422, "{refused}: {body}");
        let text = body.to_string();
        assert!(text.contains(phrase), "{refused}: {text}");
    }
    // A tenant without a scope may name any bucket, but memory:// is off for everyone.
    let beta = "beta-key-0123456789";
    assert_eq!(put(&daemon, beta, "s3://media-b/a.mp4").await.0, 201);
    let (status, body) = put(&daemon, beta, "memory:///a.mp4").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("allow_memory_urls"), "{body}");
}
