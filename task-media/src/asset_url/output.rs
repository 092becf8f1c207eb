//! Where products that make files (the thumbnails' stills) write them: an S3 bucket and prefix
//! (`s3://bucket/prefix`) or a local directory (`file:///absolute/dir`), through object_store.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::S3Settings;
use super::parse::{Parsed, bucket_rule_broken, key_rule_broken, split};
use crate::error::MediaError;

/// An output root: a store, a prefix inside it, and how its objects are named as URLs.
#[derive(Clone)]
pub struct OutputRoot {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url_base: String,
}

impl std::fmt::Debug for OutputRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputRoot")
            .field("prefix", &self.prefix)
            .field("url_base", &self.url_base)
            .finish_non_exhaustive()
    }
}

/// An output URL taken apart.
enum Target {
    S3 { bucket: String, prefix: String },
    File { dir: PathBuf },
}

fn target(url: &str) -> Result<Target, MediaError> {
    let invalid = |reason: String| MediaError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        if let Some(rule) = bucket_rule_broken(bucket) {
            return Err(invalid(format!("bucket name {bucket:?}: {rule}")));
        }
        if let Some(rule) = (!prefix.is_empty())
            .then(|| key_rule_broken(prefix))
            .flatten()
        {
            return Err(invalid(format!("prefix {prefix:?}: {rule}")));
        }
        return Ok(Target::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    if url.starts_with("file://") {
        return match split(url)? {
            Parsed::File { path } => Ok(Target::File { dir: path }),
            _ => Err(invalid("expected file:///absolute/dir".into())),
        };
    }
    Err(invalid(
        "expected s3://bucket/prefix or file:///absolute/dir".into(),
    ))
}

impl OutputRoot {
    /// Checks the shape of an output URL (`s3://bucket[/prefix]` or `file:///absolute/dir`)
    /// without touching any store: what a configuration check calls.
    pub fn validate(url: &str) -> Result<(), MediaError> {
        target(url).map(|_| ())
    }

    /// Opens the output at `url`: an S3 client with `s3` (the assets' settings), or the
    /// directory, created if missing (empty directories left by deletes are removed).
    pub fn open(url: &str, s3: &S3Settings) -> Result<Self, MediaError> {
        let invalid = |reason: String| MediaError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        match target(url)? {
            Target::S3 { bucket, prefix } => {
                let store = super::s3_client(s3, &bucket)
                    .map_err(|e| invalid(format!("the S3 client cannot be built: {e}")))?;
                Ok(Self {
                    store,
                    prefix: Path::from(prefix),
                    url_base: format!("s3://{bucket}/"),
                })
            }
            Target::File { dir } => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    invalid(format!(
                        "the directory {} cannot be made: {e}",
                        dir.display()
                    ))
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| invalid(format!("the directory cannot be opened: {e}")))?
                    .with_automatic_cleanup(true);
                let base = dir.to_string_lossy();
                Ok(Self {
                    store: Arc::new(store),
                    prefix: Path::default(),
                    url_base: format!("file://{}/", base.trim_end_matches('/')),
                })
            }
        }
    }

    /// An output on any store (an in-memory one, a wrapped one in tests): objects go under
    /// `prefix`, and an object's URL is `url_base` followed by its key.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: Path, url_base: &str) -> Self {
        Self {
            store,
            prefix,
            url_base: url_base.to_owned(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of `parts` under the prefix; each part is one path segment (characters that
    /// cannot stand in a segment, such as `/`, are percent-encoded).
    pub fn key<'a>(&self, parts: impl IntoIterator<Item = &'a str>) -> Path {
        parts
            .into_iter()
            .fold(self.prefix.clone(), |key, part| key.join(part))
    }

    /// The URL of the object at `key`: `s3://bucket/key` or `file:///dir/key`.
    pub fn url(&self, key: &Path) -> String {
        format!("{}{key}", self.url_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_urls_are_checked() {
        assert!(OutputRoot::validate("s3://stills/thumbs/").is_ok());
        assert!(OutputRoot::validate("s3://stills").is_ok());
        assert!(OutputRoot::validate("file:///srv/stills").is_ok());
        for bad in [
            "s3://UPPER/x",
            "s3://stills/a//b",
            "file://relative",
            "https://x/y",
        ] {
            assert!(OutputRoot::validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_sit_under_the_prefix_with_each_part_one_segment() {
        let s3 = S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            ..S3Settings::default()
        };
        let root = OutputRoot::open("s3://stills/thumbs/", &s3).unwrap_or_else(|e| panic!("{e}"));
        let key = root.key(["acme", "a/b", "thumbnails", "1.0", "001.jpg"]);
        assert_eq!(key.as_ref(), "thumbs/acme/a%2Fb/thumbnails/1.0/001.jpg");
        assert_eq!(
            root.url(&key),
            "s3://stills/thumbs/acme/a%2Fb/thumbnails/1.0/001.jpg"
        );
    }
}
