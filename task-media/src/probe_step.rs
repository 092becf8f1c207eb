//! The `probe` step: the pure-Rust MP4 prober for MP4/MOV, ffprobe for the rest, and reuse of
//! an earlier probe of the same unchanged object.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{debug, warn};

use task_core::error::TaskError;
use task_core::task::Step;
use task_runner::step::{StepContext, StepOutput, TaskStep};

use crate::asset_url::{AssetLocation, AssetLocator};
use crate::probe::Mp4Verdict;
use crate::probe::{FfprobeProber, Mp4Prober, ProbeOutput, Prober};
use crate::s3_check::AssetInfo;

/// Which prober the probe step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProberChoice {
    /// The MP4 prober for `.mp4`/`.mov`/`.m4v` (ffprobe for fragmented files), ffprobe otherwise.
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
    pub async fn probe(
        &self,
        location: &AssetLocation,
        size: u64,
    ) -> Result<ProbeOutput, TaskError> {
        if self.choice == ProberChoice::Auto && is_mp4_family(location.path.as_ref()) {
            match Mp4Prober.probe_or_decline(location, size).await? {
                Ok(output) => return output.validated(),
                Err(Mp4Verdict::Fragmented) => debug!("fragmented MP4: handing over to ffprobe"),
            }
        }
        self.ffprobe.probe(location, size).await
    }
}

fn is_mp4_family(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    [".mp4", ".mov", ".m4v"]
        .iter()
        .any(|ext| lower.ends_with(ext))
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
                return Ok(StepOutput {
                    value: cached,
                    reused: true,
                });
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
