//! Task errors from the object store say what failed, concisely, without the internal endpoint
//! or the client's retry internals (those go to the log).
#![allow(clippy::unwrap_used)]

mod support;

use task_media::asset_url::{AssetLocator, S3Settings};
use task_media::s3_check::head_asset;

use support::*;

/// Failed before: the task error carried object_store's Display, with the endpoint URL and
/// "after N retries".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_not_named_in_the_task_error() {
    let server = seeded().await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = AssetLocator::new(
        S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{dead_port}")),
            ..server.settings()
        },
        None,
    );
    let err = head_asset(&dead.locate(&s3_url("short.mp4")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "storage_unavailable", "{err:?}");
    let shown = err.to_string();
    let stored = serde_json::to_string(&err).unwrap();
    println!("{shown}");
    for text in [&shown, &stored] {
        assert!(!text.contains(&format!("127.0.0.1:{dead_port}")), "{text}");
        assert!(!text.contains(&dead_port.to_string()), "{text}");
        assert!(!text.contains("retries"), "{text}");
    }
    assert!(
        shown.contains(&s3_url("short.mp4")),
        "names the asset: {shown}"
    );
    assert!(shown.contains("S3 request failed"), "{shown}");
}
