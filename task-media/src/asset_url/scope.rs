//! What one tenant may name as an asset: some buckets (or prefixes in them), a directory, and
//! perhaps the in-memory store.

use std::path::{Path as FsPath, PathBuf};

use super::parse::{Parsed, split};
use crate::error::MediaError;

/// The assets a tenant may use. A URL outside it is refused with the reason, before any store
/// is touched.
///
/// ```
/// use task_media::asset_url::AssetScope;
///
/// let scope = AssetScope {
///     buckets: vec!["media-a".into(), "shared/trailers".into()],
///     file_root: None,
///     allow_memory: false,
/// };
/// assert!(scope.check("s3://media-a/films/a.mp4").is_ok());
/// assert!(scope.check("s3://shared/trailers/t.mp4").is_ok());
/// let refused = scope.check("s3://media-b/a.mp4").unwrap_err();
/// assert_eq!(
///     refused.to_string(),
///     "bucket \"media-b\" is not among the buckets allowed for this tenant: media-a, shared/trailers"
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetScope {
    /// The buckets the tenant may read, each `bucket` (all of it) or `bucket/prefix` (keys
    /// under `prefix/` only).
    pub buckets: Vec<String>,
    /// The directory under which the tenant's `file://` assets lie (None: no `file://` URLs).
    pub file_root: Option<PathBuf>,
    /// Whether `memory://` URLs (tests and examples) are allowed.
    pub allow_memory: bool,
}

impl AssetScope {
    /// Checks that `url` is well formed (as [`super::validate_asset_url`] does) and inside this
    /// scope; the error says which rule or which limit of the scope it breaks.
    pub fn check(&self, url: &str) -> Result<(), MediaError> {
        let refuse = |reason: String| MediaError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        match split(url)? {
            Parsed::S3 { bucket, key } => self.check_s3(bucket, key).map_err(refuse),
            Parsed::File { path } => self.check_file(&path).map_err(refuse),
            Parsed::Memory { .. } if self.allow_memory => Ok(()),
            Parsed::Memory { .. } => Err(refuse(
                "memory:// URLs are not allowed for this tenant".into(),
            )),
        }
    }

    fn check_s3(&self, bucket: &str, key: &str) -> Result<(), String> {
        let entries: Vec<(&str, Option<&str>)> = self
            .buckets
            .iter()
            .map(|entry| match entry.split_once('/') {
                Some((b, prefix)) if !prefix.trim_matches('/').is_empty() => {
                    (b, Some(prefix.trim_matches('/')))
                }
                Some((b, _)) => (b, None),
                None => (entry.as_str(), None),
            })
            .collect();
        let prefixes: Vec<Option<&str>> = entries
            .iter()
            .filter(|(b, _)| *b == bucket)
            .map(|(_, p)| *p)
            .collect();
        if prefixes.is_empty() {
            return Err(if self.buckets.is_empty() {
                format!("bucket {bucket:?} is not allowed: this tenant may use no S3 bucket")
            } else {
                format!(
                    "bucket {bucket:?} is not among the buckets allowed for this tenant: {}",
                    self.buckets.join(", ")
                )
            });
        }
        let inside = |prefix: &Option<&str>| match prefix {
            None => true,
            Some(p) => key
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/')),
        };
        if prefixes.iter().any(inside) {
            return Ok(());
        }
        let allowed: Vec<String> = prefixes.iter().flatten().map(|p| format!("{p}/")).collect();
        Err(format!(
            "key {key:?} is outside the prefixes of bucket {bucket:?} allowed for this tenant: {}",
            allowed.join(", ")
        ))
    }

    /// The path must lie under the root; symlinks are resolved where the files exist, so a
    /// link inside the root cannot lead out of it.
    fn check_file(&self, path: &FsPath) -> Result<(), String> {
        let Some(root) = &self.file_root else {
            return Err("file:// URLs are not allowed for this tenant".into());
        };
        let root = root.canonicalize().unwrap_or_else(|_| root.clone());
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if path.starts_with(&root) && path != root {
            Ok(())
        } else {
            Err(format!(
                "{} is outside this tenant's media root {}",
                path.display(),
                root.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(scope: &AssetScope, url: &str) -> String {
        scope.check(url).expect_err(url).to_string()
    }

    #[test]
    fn buckets_and_prefixes_limit_s3_urls() {
        let scope = AssetScope {
            buckets: vec!["media-a".into(), "shared/trailers/".into()],
            ..AssetScope::default()
        };
        assert!(scope.check("s3://media-a/any/thing.mp4").is_ok());
        assert!(scope.check("s3://shared/trailers/t.mp4").is_ok());
        assert_eq!(
            reason(&scope, "s3://media-b/a.mp4"),
            "bucket \"media-b\" is not among the buckets allowed for this tenant: media-a, \
             shared/trailers/"
        );
        assert_eq!(
            reason(&scope, "s3://shared/trailers2/t.mp4"),
            "key \"trailers2/t.mp4\" is outside the prefixes of bucket \"shared\" allowed for \
             this tenant: trailers/"
        );
        assert!(reason(&scope, "s3://shared/trailers").contains("outside the prefixes"));
        // Malformed URLs are refused for what they are, not for the scope.
        assert!(reason(&scope, "s3://../media-a/a.mp4").contains("bucket name \"..\""));
        let none = AssetScope::default();
        assert!(reason(&none, "s3://media-a/a.mp4").contains("may use no S3 bucket"));
    }

    #[test]
    fn files_and_memory_are_opt_in() {
        let root = tempfile::tempdir().expect("tempdir");
        let scope = AssetScope {
            file_root: Some(root.path().join("tenant-a")),
            ..AssetScope::default()
        };
        let inside = format!("file://{}/tenant-a/film.mp4", root.path().display());
        let sibling = format!("file://{}/tenant-b/film.mp4", root.path().display());
        let climbing = format!(
            "file://{}/tenant-a/../tenant-b/f.mp4",
            root.path().display()
        );
        assert!(scope.check(&inside).is_ok());
        assert!(reason(&scope, &sibling).contains("is outside this tenant's media root"));
        assert!(reason(&scope, &climbing).contains("is outside this tenant's media root"));
        assert_eq!(
            reason(&scope, "memory:///a.mp4"),
            "memory:// URLs are not allowed for this tenant"
        );
        assert_eq!(
            reason(&AssetScope::default(), &inside),
            "file:// URLs are not allowed for this tenant"
        );
        let memory = AssetScope {
            allow_memory: true,
            ..AssetScope::default()
        };
        assert!(memory.check("memory:///a.mp4").is_ok());
    }
}
