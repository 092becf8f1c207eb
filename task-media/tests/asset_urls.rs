//! Asset URLs as the steps resolve them: directories, percent-encoded and `..` file URLs, and
//! S3 bucket names that would have reached other buckets (against a real S3 server, moto).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStoreExt;
use task_core::error::TaskError;
use task_core::prelude::MemoryStore;
use task_core::store::Store;
use task_media::asset_url::{AssetLocator, S3Settings};
use task_media::s3_check::{S3Check, head_asset};
use task_runner::step::TaskStep;

use support::*;

/// Runs the S3 check step on `url`, as the runner would.
async fn s3_check(locator: &Arc<AssetLocator>, url: &str) -> Result<u64, TaskError> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let ctx = context(store, url, vec![], Duration::ZERO);
    let output = S3Check::new(locator.clone()).run(&ctx).await?;
    Ok(output.value["size"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_an_invalid_url_at_once_not_an_outage() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("season-1")).unwrap();
    let locator = Arc::new(AssetLocator::new(
        S3Settings::default(),
        Some(root.path().to_path_buf()),
    ));
    let base = format!("file://{}", root.path().display());
    for (url, what) in [
        (base.clone(), "the media root itself"),
        (format!("{base}/"), "the media root itself"),
        (format!("{base}/season-1"), "a directory"),
    ] {
        let err = s3_check(&locator, &url).await.unwrap_err();
        assert_eq!(err.code(), "invalid_asset_url", "{url}: {err:?}");
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains(&format!("is {what}, not a file")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_urls_are_percent_decoded_and_dot_dot_stays_inside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::create_dir(root_path.join("sub")).unwrap();
    std::fs::write(root_path.join("My Film.mp4"), b"12345").unwrap();
    std::fs::write(root_path.join("a.mp4"), b"123").unwrap();
    let locator = Arc::new(AssetLocator::new(
        S3Settings::default(),
        Some(root_path.clone()),
    ));
    let base = root_path.display().to_string();
    // What Python's Path.as_uri() writes, with and without the localhost authority.
    for url in [
        format!("file://{base}/My%20Film.mp4"),
        format!("file://localhost{base}/My%20Film.mp4"),
    ] {
        assert_eq!(s3_check(&locator, &url).await.unwrap(), 5, "{url}");
    }
    // `..` is resolved lexically: inside the root it is accepted...
    let inside = format!("file://{base}/sub/../a.mp4");
    assert_eq!(s3_check(&locator, &inside).await.unwrap(), 3);
    let location = locator.locate(&inside).unwrap();
    assert_eq!(location.local_file, Some(root_path.join("a.mp4")));
    // ...and out of it, refused as outside the root.
    let outside = format!("file://{base}/../a.mp4");
    let err = s3_check(&locator, &outside).await.unwrap_err();
    assert_eq!(err.code(), "invalid_asset_url");
    assert!(
        err.to_string()
            .contains("outside the configured media root"),
        "{err}"
    );
    let err = s3_check(&locator, &format!("file://{base}/a%2Fb.mp4"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("encoded '/' (%2F)"), "{err}");
}

/// Bucket names are spliced into path-style requests: `..` or `%2e%2e` as a bucket read an
/// object of another bucket, and a space made object_store panic. They are refused when the
/// step resolves the URL (an older build may have stored them), before any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_names_cannot_reach_other_buckets() {
    let server = seeded().await;
    let locator = Arc::new(AssetLocator::new(server.settings(), None));
    assert!(s3_check(&locator, &s3_url("short.mp4")).await.is_ok());
    for (url, rule) in [
        (
            format!("s3://../{BUCKET}/short.mp4"),
            "a bucket name has 3 to 63 characters, not 2",
        ),
        (
            format!("s3://%2e%2e/{BUCKET}/short.mp4"),
            "'%' is not allowed in a bucket name",
        ),
        (
            format!("s3://{BUCKET} a/short.mp4"),
            "' ' is not allowed in a bucket name",
        ),
        (
            format!("s3://{BUCKET}?x=/short.mp4"),
            "takes no query or fragment",
        ),
        (
            format!("s3://{BUCKET}/../{BUCKET}/short.mp4"),
            "no '.' or '..' segments",
        ),
    ] {
        let err = s3_check(&locator, &url).await.unwrap_err();
        assert_eq!(err.code(), "invalid_asset_url", "{url}: {err:?}");
        assert!(err.to_string().contains(rule), "{url}: {err}");
        assert!(locator.locate(&url).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_urls_can_be_turned_off() {
    let locator = AssetLocator::new(S3Settings::default(), None);
    locator
        .memory()
        .put(&"a.mp4".into(), vec![1u8; 4].into())
        .await
        .unwrap();
    assert_eq!(
        head_asset(&locator.locate("memory:///a.mp4").unwrap())
            .await
            .unwrap()
            .size,
        4
    );
    let off = locator.with_memory_urls(false);
    let err = TaskError::from(off.locate("memory:///a.mp4").unwrap_err());
    assert_eq!(
        err.to_string(),
        "Invalid asset URL \"memory:///a.mp4\": memory:// URLs are not enabled in this deployment"
    );
}
