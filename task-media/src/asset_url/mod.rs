//! Asset URLs: `s3://bucket/key`, `file://` under a configured root, and `memory://`.
//!
//! Every URL is checked by [`validate_asset_url`] at ingest and again when a step resolves it
//! ([`AssetLocator::locate`]), so a URL stored by an older build is refused before any request:
//! bucket names by S3's naming rules, keys by object_store's path rules, `file://` URLs
//! percent-decoded per RFC 8089 with `.`/`..` resolved lexically. [`AssetScope`] limits what
//! one tenant may name. [`OutputRoot`] is where products that make files write them.

mod output;
mod parse;
mod scope;

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

pub use self::output::OutputRoot;
use self::parse::{Parsed, split};
pub use self::scope::AssetScope;
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
    allow_memory: bool,
    scopes: Arc<HashMap<String, AssetScope>>,
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
            allow_memory: true,
            scopes: Arc::new(HashMap::new()),
        }
    }

    /// Limits what `tenant` may name to `scope`, checked by [`AssetLocator::locate_for`] (a
    /// tenant without a scope may name anything the locator serves).
    pub fn with_scope(mut self, tenant: impl Into<String>, scope: AssetScope) -> Self {
        Arc::make_mut(&mut self.scopes).insert(tenant.into(), scope);
        self
    }

    /// [`AssetLocator::locate`] for a URL named by `tenant`: refused first if it lies outside
    /// the tenant's scope, so a URL stored before the scope was set is refused before any
    /// request is made.
    pub fn locate_for(&self, tenant: &str, url: &str) -> Result<AssetLocation, MediaError> {
        if let Some(scope) = self.scopes.get(tenant) {
            scope.check(url)?;
        }
        self.locate(url)
    }

    /// Whether `memory://` URLs are served (the default, for tests and examples); a deployment
    /// that serves real assets turns them off, and they are then refused as invalid.
    pub fn with_memory_urls(mut self, allowed: bool) -> Self {
        self.allow_memory = allowed;
        self
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
            Parsed::Memory { .. } if !self.allow_memory => {
                return Err(MediaError::InvalidUrl {
                    url: url.to_owned(),
                    reason: "memory:// URLs are not enabled in this deployment".into(),
                });
            }
            Parsed::Memory { key } => (
                self.memory.clone() as Arc<dyn ObjectStore>,
                parse_path(url, key)?,
                None,
            ),
            Parsed::File { path } => {
                let (root, file) = self.confine(url, &path)?;
                if file.is_dir() {
                    let what = if file == root {
                        "the media root itself"
                    } else {
                        "a directory"
                    };
                    return Err(MediaError::InvalidUrl {
                        url: url.to_owned(),
                        reason: format!("{} is {what}, not a file", file.display()),
                    });
                }
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

    /// The canonical root and the canonical file, refusing anything outside the root (`path`
    /// has its `..` segments resolved lexically already; a symlink may still point out of it).
    fn confine(&self, url: &str, path: &FsPath) -> Result<(PathBuf, PathBuf), MediaError> {
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
        let requested = path;
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
        let store = s3_client(&self.s3, bucket).map_err(|e| MediaError::InvalidUrl {
            url: format!("s3://{bucket}/"),
            reason: format!("the S3 client cannot be built: {e}"),
        })?;
        buckets.insert(bucket.to_owned(), store.clone());
        Ok(store)
    }
}

/// An S3 client for `bucket` with the deployment's settings: a 30 s request timeout unless
/// set, one quick retry inside a call (the engine's own retry policy handles the rest).
pub(crate) fn s3_client(
    s3: &S3Settings,
    bucket: &str,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let mut options = ClientOptions::new()
        .with_timeout(s3.request_timeout.unwrap_or(Duration::from_secs(30)))
        .with_connect_timeout(Duration::from_secs(5));
    if let Some(endpoint) = &s3.endpoint {
        // allow_http must live in the client options: setting options later drops it.
        options = options.with_allow_http(endpoint.starts_with("http://"));
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &s3.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_access_key {
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
        .build()?;
    Ok(Arc::new(store))
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
            let task = task_core::error::TaskError::from(err);
            assert!(task.to_string().contains(bad), "{task}");
        }
    }

    /// The HTTP layer answers 422 with `Invalid asset URL "<url>": <reason>` from the
    /// validator's message, and a task fails with the same text from TaskError: the reason must
    /// not carry the prefix again.
    #[test]
    fn refusals_do_not_repeat_their_prefix() {
        let url = "s3://media a/long.mp4";
        let err = validate_asset_url(url).expect_err(url);
        let http = format!("Invalid asset URL {url:?}: {err}");
        let task = task_core::error::TaskError::from(validate_asset_url(url).expect_err(url));
        for message in [http, task.to_string()] {
            assert_eq!(
                message.to_lowercase().matches("invalid asset url").count(),
                1,
                "{message}"
            );
            assert_eq!(message.matches(url).count(), 1, "{message}");
        }
        assert_eq!(
            task.to_string(),
            "Invalid asset URL \"s3://media a/long.mp4\": bucket name \"media a\": ' ' is not \
             allowed in a bucket name (only lowercase letters, digits, dots and hyphens)"
        );
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
