//! Asset URLs: `s3://bucket/key`, `file://` under a configured root, and `memory://`.

use std::collections::HashMap;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::MediaError;

/// Where the S3 endpoint and credentials come from. Unset fields fall back to the standard
/// AWS environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// A custom endpoint such as `http://127.0.0.1:9000` (plain HTTP is then allowed).
    pub endpoint: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret key.
    pub secret_access_key: Option<String>,
    /// How long one request may take before it fails as retryable.
    pub request_timeout: Option<Duration>,
}

/// Turns asset URLs into an object store and a path, within what the deployment allows.
#[derive(Clone)]
pub struct AssetLocator {
    s3: S3Settings,
    file_root: Option<PathBuf>,
    memory: Arc<InMemory>,
    buckets: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
    scratch_dir: Option<PathBuf>,
}

impl std::fmt::Debug for AssetLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssetLocator")
            .field("file_root", &self.file_root)
            .field("s3_endpoint", &self.s3.endpoint)
            .finish_non_exhaustive()
    }
}

/// A parsed asset URL: the store that holds it and its path there.
#[derive(Clone)]
pub struct AssetLocation {
    /// The URL as given.
    pub url: String,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The object's path in the store.
    pub path: Path,
    /// The file on local disk, for `file://` URLs (tools read it in place).
    pub local_file: Option<PathBuf>,
    /// Where a download for the tools goes (None: the system's temporary directory).
    pub scratch_dir: Option<PathBuf>,
}

impl std::fmt::Debug for AssetLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssetLocation")
            .field("url", &self.url)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Checks the shape of an asset URL (scheme, bucket, key) without touching any store: what the
/// service calls when an item is ingested.
pub fn validate_asset_url(url: &str) -> Result<(), MediaError> {
    split(url).map(|_| ())
}

enum Parsed<'a> {
    S3 { bucket: &'a str, key: &'a str },
    File { path: &'a str },
    Memory { key: &'a str },
}

fn split(url: &str) -> Result<Parsed<'_>, MediaError> {
    let invalid = |reason: &str| MediaError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected s3://bucket/key"))?;
        if bucket.is_empty() || key.is_empty() {
            return Err(invalid("expected s3://bucket/key"));
        }
        Ok(Parsed::S3 { bucket, key })
    } else if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(invalid("a file URL needs an absolute path (file:///...)"));
        }
        Ok(Parsed::File { path })
    } else if let Some(key) = url.strip_prefix("memory://") {
        let key = key.trim_start_matches('/');
        if key.is_empty() {
            return Err(invalid("expected memory:///key"));
        }
        Ok(Parsed::Memory { key })
    } else {
        Err(invalid("the scheme must be s3://, file:// or memory://"))
    }
}

impl AssetLocator {
    /// A locator for S3 with `s3`, files under `file_root` (None: `file://` is refused), and an
    /// empty in-memory store.
    pub fn new(s3: S3Settings, file_root: Option<PathBuf>) -> Self {
        Self {
            s3,
            file_root,
            memory: Arc::new(InMemory::new()),
            buckets: Arc::new(Mutex::new(HashMap::new())),
            scratch_dir: None,
        }
    }

    /// Downloads objects that the tools must read from local disk into `dir` (a volume with
    /// room for the largest video) instead of the system's temporary directory.
    pub fn with_scratch_dir(mut self, dir: PathBuf) -> Self {
        self.scratch_dir = Some(dir);
        self
    }

    /// Serves `s3://bucket/...` from `store` instead of building an S3 client: a wrapped store
    /// (fault injection, throttling) or one configured elsewhere.
    pub fn with_bucket(self, bucket: &str, store: Arc<dyn ObjectStore>) -> Self {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bucket.to_owned(), store);
        self
    }

    /// The in-memory store behind `memory://` URLs (tests and examples put objects there).
    pub fn memory(&self) -> Arc<InMemory> {
        self.memory.clone()
    }

    /// Resolves `url` to its store and path.
    pub fn locate(&self, url: &str) -> Result<AssetLocation, MediaError> {
        let (store, path, local_file) = match split(url)? {
            Parsed::S3 { bucket, key } => (self.bucket(bucket)?, parse_path(url, key)?, None),
            Parsed::Memory { key } => (
                self.memory.clone() as Arc<dyn ObjectStore>,
                parse_path(url, key)?,
                None,
            ),
            Parsed::File { path } => {
                let (root, file) = self.confine(url, path)?;
                let relative = file.strip_prefix(&root).map_err(|_| escape(url))?;
                let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| {
                    MediaError::InvalidUrl {
                        url: url.to_owned(),
                        reason: format!("the media root cannot be opened: {e}"),
                    }
                })?;
                let key = relative.to_string_lossy().into_owned();
                (
                    Arc::new(store) as Arc<dyn ObjectStore>,
                    parse_path(url, &key)?,
                    Some(file),
                )
            }
        };
        Ok(AssetLocation {
            url: url.to_owned(),
            store,
            path,
            local_file,
            scratch_dir: self.scratch_dir.clone(),
        })
    }

    /// The canonical root and the canonical file, refusing anything outside the root (`..`
    /// components, or a symlink that points out of it).
    fn confine(&self, url: &str, path: &str) -> Result<(PathBuf, PathBuf), MediaError> {
        let root = self
            .file_root
            .as_ref()
            .ok_or_else(|| MediaError::InvalidUrl {
                url: url.to_owned(),
                reason: "file:// URLs are not enabled (no media root is configured)".into(),
            })?;
        let root = root.canonicalize().map_err(|e| MediaError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("the media root {} cannot be resolved: {e}", root.display()),
        })?;
        let requested = FsPath::new(path);
        if requested.components().any(|c| c == Component::ParentDir) {
            return Err(escape(url));
        }
        let file = match requested.canonicalize() {
            Ok(file) => file,
            // A missing file is reported by the S3 check as not found, if it is under the root.
            Err(_) if requested.starts_with(&root) => requested.to_path_buf(),
            Err(_) => return Err(escape(url)),
        };
        if !file.starts_with(&root) {
            return Err(escape(url));
        }
        Ok((root, file))
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, MediaError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = buckets.get(bucket) {
            return Ok(store.clone());
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut options = ClientOptions::new()
            .with_timeout(self.s3.request_timeout.unwrap_or(Duration::from_secs(30)))
            .with_connect_timeout(Duration::from_secs(5));
        if let Some(endpoint) = &self.s3.endpoint {
            // allow_http must live in the client options: setting options later drops it.
            options = options.with_allow_http(endpoint.starts_with("http://"));
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &self.s3.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &self.s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        // One quick retry inside a call; the engine's own retry policy handles the rest.
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 1,
            retry_timeout: Duration::from_secs(10),
        };
        let store = builder
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|e| MediaError::InvalidUrl {
                url: format!("s3://{bucket}/"),
                reason: format!("the S3 client cannot be built: {e}"),
            })?;
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        buckets.insert(bucket.to_owned(), store.clone());
        Ok(store)
    }
}

fn parse_path(url: &str, key: &str) -> Result<Path, MediaError> {
    Path::parse(key).map_err(|e| MediaError::InvalidUrl {
        url: url.to_owned(),
        reason: format!("invalid object key: {e}"),
    })
}

fn escape(url: &str) -> MediaError {
    MediaError::InvalidUrl {
        url: url.to_owned(),
        reason: "the path is outside the configured media root".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_validated() {
        assert!(validate_asset_url("s3://bucket/movies/a.mp4").is_ok());
        assert!(validate_asset_url("memory:///a.mp4").is_ok());
        assert!(validate_asset_url("file:///media/a.mp4").is_ok());
        for bad in [
            "http://x/a.mp4",
            "s3://bucket",
            "s3:///key",
            "file://relative/a.mp4",
            "memory://",
            "a.mp4",
        ] {
            let err = validate_asset_url(bad).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn files_are_confined_to_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("a.mp4"), b"x").expect("write");
        std::fs::write(outside.path().join("secret.mp4"), b"x").expect("write");
        std::os::unix::fs::symlink(
            outside.path().join("secret.mp4"),
            root.path().join("link.mp4"),
        )
        .expect("symlink");
        let locator = AssetLocator::new(S3Settings::default(), Some(root.path().to_path_buf()));
        let root_url = |name: &str| format!("file://{}/{name}", root.path().display());
        let found = locator.locate(&root_url("a.mp4")).expect("inside the root");
        assert_eq!(found.path.as_ref(), "a.mp4");
        for bad in [
            root_url("../x.mp4"),
            root_url("link.mp4"),
            format!("file://{}/secret.mp4", outside.path().display()),
        ] {
            let err = locator.locate(&bad).expect_err(&bad);
            assert!(
                err.to_string()
                    .contains("outside the configured media root"),
                "{err}"
            );
        }
        let no_root = AssetLocator::new(S3Settings::default(), None);
        assert!(no_root.locate(&root_url("a.mp4")).is_err());
    }
}
