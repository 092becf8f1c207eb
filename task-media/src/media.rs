//! Access to an asset's bytes as a local file, for tools that need a path.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;

use task_core::error::TaskError;
use task_core::task::Step;

use crate::asset_url::AssetLocation;
use crate::error::storage_error;

/// An asset as a local file: the file itself for `file://` URLs, otherwise a temporary download
/// that is removed when this value is dropped (on success, failure or cancellation alike).
#[derive(Debug)]
pub struct LocalMedia {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
    downloaded: u64,
}

impl LocalMedia {
    /// Makes `location` readable as a local file.
    pub async fn fetch(location: &AssetLocation, step: Step) -> Result<Self, TaskError> {
        if let Some(file) = &location.local_file {
            return Ok(Self {
                path: file.clone(),
                _temp: None,
                downloaded: 0,
            });
        }
        let suffix = extension(location.path.as_ref());
        let mut builder = tempfile::Builder::new();
        builder.prefix("media-task-").suffix(&suffix);
        let created = match &location.scratch_dir {
            Some(dir) => builder.tempfile_in(dir),
            None => builder.tempfile(),
        };
        let temp = created
            .map_err(|e| TaskError::Transient {
                step,
                message: format!("cannot create a temporary file: {e}"),
            })?
            .into_temp_path();
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| TaskError::Transient {
                step,
                message: format!("cannot open {}: {e}", temp.display()),
            })?;
        let object = location
            .store
            .get(&location.path)
            .await
            .map_err(|e| storage_error(&location.url, e))?;
        let mut stream = object.into_stream();
        let mut downloaded = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| storage_error(&location.url, e))?;
            downloaded += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| TaskError::Transient {
                    step,
                    message: format!("cannot write {}: {e}", temp.display()),
                })?;
        }
        file.flush().await.map_err(|e| TaskError::Transient {
            step,
            message: format!("cannot write {}: {e}", temp.display()),
        })?;
        Ok(Self {
            path: temp.to_path_buf(),
            _temp: Some(temp),
            downloaded,
        })
    }

    /// The local path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes downloaded (0 for a local file).
    pub fn downloaded(&self) -> u64 {
        self.downloaded
    }
}

fn extension(key: &str) -> String {
    Path::new(key)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default()
}
