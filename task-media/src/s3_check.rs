//! The S3 check: the object exists, and what it is (size, ETag, last modified).

use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tracing::debug;

use task_core::error::TaskError;
use task_core::task::Step;
use task_runner::step::{StepContext, StepOutput, TaskStep};

use crate::asset_url::{AssetLocation, AssetLocator};
use crate::error::storage_error;

/// The checkpoint of the S3 check: enough to notice later that the object changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetInfo {
    /// The asset URL.
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's ETag, if it gives one.
    pub etag: Option<String>,
    /// Last modification time, RFC 3339.
    pub last_modified: String,
}

impl AssetInfo {
    /// The key under which outputs computed from this exact object are cached.
    pub fn cache_key(&self, what: &str) -> String {
        format!(
            "{what}:{}:{}:{}",
            self.url,
            self.etag.as_deref().unwrap_or("-"),
            self.size
        )
    }
}

/// HEADs an asset and describes it.
pub async fn head_asset(location: &AssetLocation) -> Result<AssetInfo, TaskError> {
    let meta = location
        .store
        .head(&location.path)
        .await
        .map_err(|e| storage_error(&location.url, e))?;
    Ok(AssetInfo {
        url: location.url.clone(),
        size: meta.size,
        etag: meta.e_tag,
        last_modified: meta.last_modified.to_rfc3339(),
    })
}

/// The `s3_check` step.
#[derive(Debug, Clone)]
pub struct S3Check {
    locator: Arc<AssetLocator>,
}

impl S3Check {
    /// The step over `locator`.
    pub fn new(locator: Arc<AssetLocator>) -> Self {
        Self { locator }
    }
}

#[async_trait]
impl TaskStep for S3Check {
    fn step(&self) -> Step {
        Step::S3Check
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let tenant = ctx.task.key.tenant.as_str();
        let location = self.locator.locate_for(tenant, &ctx.item.item.asset_url)?;
        let info = tokio::select! {
            info = head_asset(&location) => info?,
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        };
        debug!(size = info.size, etag = ?info.etag, "asset found");
        StepOutput::new(&info)
    }
}
