//! The `probe` step: the pure-Rust MP4 prober for MP4/MOV (recognised by their first bytes),
//! ffprobe for the rest and for what the MP4 prober cannot read, and reuse of an earlier probe
//! of the same unchanged object.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{debug, warn};

use task_core::error::TaskError;
use task_core::task::Step;
use task_runner::step::{StepContext, StepOutput, TaskStep};

use crate::asset_url::{AssetLocation, AssetLocator};
use object_store::ObjectStoreExt;

use crate::error::storage_error;
use crate::probe::{
    Container, FfprobeProber, Mp4Prober, Mp4Verdict, ProbeOutput, Prober, SNIFF_LEN, probe_failed,
    sniff,
};
use crate::s3_check::AssetInfo;

/// Which prober the probe step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProberChoice {
    /// The MP4 prober for files whose first bytes are an MP4/MOV box (ffprobe for fragmented
    /// files and for those it cannot read), ffprobe otherwise.
    #[default]
    Auto,
    /// Always ffprobe.
    Ffprobe,
}

/// The `probe` step.
#[derive(Debug, Clone)]
pub struct ProbeStep {
    locator: Arc<AssetLocator>,
    ffprobe: FfprobeProber,
    choice: ProberChoice,
}

impl ProbeStep {
    /// The step over `locator`.
    pub fn new(locator: Arc<AssetLocator>, ffprobe: FfprobeProber, choice: ProberChoice) -> Self {
        Self {
            locator,
            ffprobe,
            choice,
        }
    }

    /// Probes `location` (of `size` bytes) with the configured choice of prober.
    ///
    /// With [`ProberChoice::Auto`] the container is recognised by its first bytes, not its
    /// name: MP4/MOV goes to the MP4 prober, everything else to ffprobe. When the MP4 prober
    /// cannot read a file (fragmented, or a layout it refuses) ffprobe gets it; if ffprobe
    /// refuses it too, the probe fails with both reasons.
    pub async fn probe(
        &self,
        location: &AssetLocation,
        size: u64,
    ) -> Result<ProbeOutput, TaskError> {
        if self.choice == ProberChoice::Ffprobe || size == 0 {
            return self.ffprobe.probe(location, size).await;
        }
        let head = location
            .store
            .get_range(&location.path, 0..size.min(SNIFF_LEN))
            .await
            .map_err(|e| storage_error(&location.url, e))?;
        let container = sniff(&head);
        if container != Container::IsoBmff {
            debug!(?container, "not an MP4/MOV file: ffprobe reads it");
            return self.ffprobe.probe(location, size).await;
        }
        let reason = match Mp4Prober.probe_or_decline(location, size).await? {
            Ok(output) => return output.validated(),
            Err(Mp4Verdict::Fragmented) => {
                debug!("fragmented MP4: handing over to ffprobe");
                return self.ffprobe.probe(location, size).await;
            }
            Err(Mp4Verdict::Unreadable(reason)) => reason,
        };
        debug!(%reason, "the MP4 prober cannot read it: handing over to ffprobe");
        match self.ffprobe.probe(location, size).await {
            Err(TaskError::ProbeFailed { message }) => Err(probe_failed(format!(
                "{message} (the MP4 prober could not read it either: {reason})"
            ))),
            other => other,
        }
    }
}

#[async_trait]
impl TaskStep for ProbeStep {
    fn step(&self) -> Step {
        Step::Probe
    }

    async fn run(&self, ctx: &StepContext) -> Result<StepOutput, TaskError> {
        let info: AssetInfo = ctx.output(Step::S3Check)?;
        let key = info.cache_key("probe");
        match ctx.store.cache_get(&key).await {
            Ok(Some(cached)) => {
                return StepOutput::with_reuse(&cached, true);
            }
            Ok(None) => {}
            Err(err) => warn!(error = %err, "probe cache unreadable; probing again"),
        }
        let location = self.locator.locate(&info.url)?;
        let output = tokio::select! {
            output = self.probe(&location, info.size) => output?,
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
        };
        let step_output = StepOutput::new(&output)?;
        if let Err(err) = ctx.store.cache_put(&key, step_output.value.clone()).await {
            warn!(error = %err, "probe result not cached");
        }
        Ok(step_output)
    }
}
