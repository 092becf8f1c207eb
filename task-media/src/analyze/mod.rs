//! The `analyze` step: one [`Analyzer`] per product, results written idempotently.

pub mod adbreaks;
pub mod fingerprint;
pub mod markers;
pub mod scenes;
pub mod thumbnails;
mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::warn;

use task_core::error::TaskError;
use task_core::results::AnalysisResult;
use task_core::task::Step;
use task_core::time::{Clock, SystemClock};
use task_runner::step::{StepContext, StepOutput, TaskStep};

use crate::asset_url::AssetLocator;
use crate::media::LocalMedia;
use crate::probe::ProbeOutput;
use crate::s3_check::AssetInfo;

/// How much less than the probed duration an analysis may decode before the file counts as
/// truncated, seconds.
pub const TRUNCATION_TOLERANCE_SECS: f64 = 1.0;

/// A product's analysis of one asset.
#[async_trait]
pub trait Analyzer: Send + Sync + 'static {
    /// Analyses `media` (described by `probe`) and returns the product's result data. Must stop
    /// promptly when its future is dropped (child processes killed on drop).
    async fn analyze(
        &self,
        ctx: &StepContext,
        probe: &ProbeOutput,
        media: &LocalMedia,
    ) -> Result<serde_json::Value, TaskError>;

    /// For an analyzer whose result depends only on the object's bytes and on what this
    /// names (its algorithm and settings), a name under which results are kept in the step
    /// cache: a task of any product version (or product) with an analyzer of the same name
    /// reuses the result of an unchanged object (same URL, ETag and size) without fetching
    /// it. None (the default): always analysed.
    fn reuse_key(&self) -> Option<String> {
        None
    }
}

/// The checkpoint of the analyze step: where the result went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzeSummary {
    /// Bytes downloaded to analyse (0 for local files).
    pub downloaded_bytes: u64,
    /// Size of the stored result data, in bytes of JSON.
    pub result_bytes: usize,
}

/// Stores `data` as the result of the task of `ctx` (replacing any of the same key); returns
/// its size in bytes of JSON.
pub(crate) async fn store_result(
    ctx: &StepContext,
    data: serde_json::Value,
) -> Result<usize, TaskError> {
    let result_bytes = data.to_string().len();
    let key = &ctx.task.key;
    let result = AnalysisResult {
        tenant: key.tenant.clone(),
        product: key.product.clone(),
        inventory_id: key.inventory_id.clone(),
        version: key.version.clone(),
        task_id: ctx.task.id,
        updated_at: SystemClock.now(),
        data,
    };
    ctx.store
        .put_result(result)
        .await
        .map_err(|e| TaskError::Transient {
            step: Step::Analyze,
            message: format!("the result could not be stored: {e}"),
        })?;
    Ok(result_bytes)
}

/// The `analyze` step for one product: fetch the media, run the analyzer, store the result.
pub struct AnalyzeStep {
    locator: Arc<AssetLocator>,
    analyzer: Arc<dyn Analyzer>,
}

impl std::fmt::Debug for AnalyzeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyzeStep").finish_non_exhaustive()
    }
}

impl AnalyzeStep {
    /// The step running `analyzer` on assets found through `locator`.
    pub fn new(locator: Arc<AssetLocator>, analyzer: Arc<dyn Analyzer>) -> Self {
        Self { locator, analyzer }
    }
}

#[async_trait]
impl TaskStep for AnalyzeStep {
    fn step(&self) -> Step {
        Step::Analyze
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let info: AssetInfo = ctx.output(Step::S3Check)?;
        let probe: ProbeOutput = ctx.output(Step::Probe)?;
        let reuse_key = self
            .analyzer
            .reuse_key()
            .map(|name| info.cache_key(&format!("analysis:{name}")));
        let cached = match &reuse_key {
            Some(key) => ctx.store.cache_get(key).await.unwrap_or_else(|err| {
                warn!(error = %err, "analysis cache unreadable; analysing again");
                None
            }),
            None => None,
        };
        let reused = cached.is_some();
        let (data, downloaded_bytes) = match cached {
            Some(data) => (data, 0),
            None => {
                let location = self.locator.locate(&info.url)?;
                // The download (if any) is removed when `media` drops: on success, failure
                // or cancel.
                let work = async {
                    let media = LocalMedia::fetch(&location, Step::Analyze).await?;
                    let data = self.analyzer.analyze(ctx, &probe, &media).await?;
                    Ok::<_, TaskError>((data, media.downloaded()))
                };
                tokio::select! {
                    result = work => result?,
                    _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
                }
            }
        };
        if let (Some(key), false) = (&reuse_key, reused)
            && let Err(err) = ctx.store.cache_put(key, data.clone()).await
        {
            warn!(error = %err, "analysis result not cached");
        }
        let result_bytes = store_result(ctx, data).await?;
        StepOutput::with_reuse(
            &AnalyzeSummary {
                downloaded_bytes,
                result_bytes,
            },
            reused,
        )
    }
}
