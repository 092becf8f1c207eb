//! Asset URL checks on arbitrary strings: validation, a tenant scope and the locator must
//! never panic, an invalid URL is never located, and an accepted S3 URL reaches exactly its
//! key in a bucket whose name uses only the allowed characters.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use task_media::asset_url::{AssetLocator, AssetScope, S3Settings, validate_asset_url};

fuzz_target!(|url: &str| {
    let valid = validate_asset_url(url).is_ok();
    let scope = AssetScope {
        buckets: vec!["media-a".into(), "shared/trailers".into()],
        file_root: Some("/srv/media/tenant-a".into()),
        allow_memory: false,
    };
    let in_scope = scope.check(url).is_ok();
    assert!(valid || !in_scope, "{url:?} is in scope but invalid");
    let mut locator = AssetLocator::new(S3Settings::default(), Some("/srv/media".into()));
    if valid && let Some((bucket, _)) = url.strip_prefix("s3://").and_then(|r| r.split_once('/')) {
        // Building a real S3 client per input would cost ~10 ms; the store does not matter
        // here, only what the locator makes of the URL (tests/asset_urls.rs uses real S3).
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        locator = locator.with_bucket(bucket, store);
    }
    let located = locator.locate(url);
    if !valid {
        assert!(located.is_err(), "{url:?} is invalid but located");
    }
    if let (Some(rest), Ok(location)) = (url.strip_prefix("s3://"), &located) {
        let (bucket, key) = rest.split_once('/').expect("a valid S3 URL has a key");
        assert!(
            bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'),
            "{url:?}: bucket {bucket:?} passed"
        );
        assert_eq!(location.path.as_ref(), key, "{url:?}");
    }
});
