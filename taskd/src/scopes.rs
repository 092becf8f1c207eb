//! Per-tenant asset scopes from the config: which buckets (or prefixes), which directory under
//! the media root, and whether `memory://` URLs may be named.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use task_core::ids::TenantId;
use task_media::asset_url::AssetScope;

use crate::error::TaskdError;

/// `[tenants.NAME]`: what one tenant's asset URLs may point at.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// Buckets the tenant may read, each `bucket` or `bucket/prefix` (default: none).
    #[serde(default)]
    pub buckets: Vec<String>,
    /// The tenant's directory for `file://` URLs, relative to the media root or absolute
    /// inside it (default: no `file://` URLs).
    pub file_root: Option<PathBuf>,
}

/// The scopes of the tenants that have a `[tenants.NAME]` entry, checked against `media_root`
/// (absolute). `allow_memory` is the deployment's `allow_memory_urls`.
pub fn resolve(
    entries: &std::collections::BTreeMap<String, TenantEntry>,
    media_root: &Path,
    allow_memory: bool,
) -> Result<Vec<(TenantId, AssetScope)>, TaskdError> {
    let setting = |name: &str, field: &str, reason: String| TaskdError::Setting {
        field: format!("tenants.{name}.{field}"),
        reason,
    };
    let mut scopes = Vec::new();
    for (name, entry) in entries {
        let tenant =
            TenantId::new(name.clone()).map_err(|e| setting(name, "name", e.to_string()))?;
        for bucket in &entry.buckets {
            // Checked as a URL is, so a typo in the config fails at start, not at each task.
            let probe = format!("s3://{}/x", bucket.trim_end_matches('/'));
            task_media::asset_url::validate_asset_url(&probe)
                .map_err(|e| setting(name, "buckets", format!("{bucket:?}: {e}")))?;
        }
        let file_root = entry
            .file_root
            .as_ref()
            .map(|root| inside(media_root, root))
            .transpose()
            .map_err(|reason| setting(name, "file_root", reason))?;
        scopes.push((
            tenant,
            AssetScope {
                buckets: entry.buckets.clone(),
                file_root,
                allow_memory,
            },
        ));
    }
    Ok(scopes)
}

/// `root` resolved against `media_root`, refused unless it stays inside it.
fn inside(media_root: &Path, root: &Path) -> Result<PathBuf, String> {
    let joined = media_root.join(root);
    let mut normal = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    if normal.starts_with(media_root) && normal != media_root {
        Ok(normal)
    } else {
        Err(format!(
            "{} is not a directory inside the media root {}",
            root.display(),
            media_root.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_at_start() {
        let root = Path::new("/srv/media");
        let mut entries = std::collections::BTreeMap::new();
        entries.insert(
            "acme".to_owned(),
            TenantEntry {
                buckets: vec!["media-a".into(), "shared/trailers".into()],
                file_root: Some("acme".into()),
            },
        );
        let scopes = resolve(&entries, root, false).unwrap();
        assert_eq!(scopes[0].0.as_str(), "acme");
        assert_eq!(
            scopes[0].1.file_root.as_deref(),
            Some(Path::new("/srv/media/acme"))
        );
        for (bucket, root_dir, field) in [
            ("Bad_Bucket", "acme", "buckets"),
            ("media-a", "../elsewhere", "file_root"),
            ("media-a", "/etc", "file_root"),
        ] {
            entries.insert(
                "acme".to_owned(),
                TenantEntry {
                    buckets: vec![bucket.into()],
                    file_root: Some(root_dir.into()),
                },
            );
            let err = resolve(&entries, root, false).unwrap_err().to_string();
            assert!(err.contains(&format!("tenants.acme.{field}")), "{err}");
        }
    }
}
