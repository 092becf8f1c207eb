//! The `scenes` product: shot boundaries, from ffmpeg's scene-change detector.
//!
//! # What counts
//!
//! - **A cut** is a frame whose `scdet` score is at least [`ScenesAnalyzer::threshold`]
//!   (default [`DEFAULT_THRESHOLD`], scdet's own). The score is the mean absolute difference
//!   between the frame and the one before, as a percentage of the largest possible difference,
//!   less the previous frame's, so steady motion inside a shot scores low and a change of
//!   picture scores high. The cut's time is the first frame of the new shot.
//! - **A dissolve or a fade** spreads its change over many frames, each below the threshold: it
//!   is not a cut, and the shots on both sides are one shot in the result.
//! - **Shots** run from the start of the asset to its probed duration, split at every cut:
//!   `[[0, c1], [c1, c2], ..., [cn, duration]]`.
//!
//! The whole first video stream (cover pictures excepted) is decoded. A file that decodes more
//! than [`TRUNCATION_TOLERANCE_SECS`] short of its probed duration fails with `analysis_failed`,
//! as adbreaks does.
//!
//! [`TRUNCATION_TOLERANCE_SECS`]: super::TRUNCATION_TOLERANCE_SECS

use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use task_core::error::TaskError;
use task_runner::step::StepContext;

use super::Analyzer;
use super::tools::{self, check_complete, progress_end, round_ms, whole_video};
use crate::media::LocalMedia;
use crate::probe::ProbeOutput;

/// scdet's default threshold, a percentage of the largest possible change between frames.
pub const DEFAULT_THRESHOLD: f64 = 10.0;

/// One cut: where a new shot starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cut {
    /// Seconds from the start: the first frame of the new shot.
    pub time: f64,
    /// scdet's score of the change, 0-100.
    pub score: f64,
}

/// The stored data of a scenes result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenesData {
    /// The asset's duration, seconds.
    pub duration_secs: f64,
    /// The threshold the cuts passed.
    pub threshold: f64,
    /// The shots as `[start, end]` in seconds, in order, covering the whole asset.
    pub shots: Vec<[f64; 2]>,
    /// The cuts between them, in order: `cuts[i]` starts `shots[i + 1]`.
    pub cuts: Vec<Cut>,
}

/// The ffmpeg-based scenes analyzer.
#[derive(Debug, Clone)]
pub struct ScenesAnalyzer {
    /// The ffmpeg executable.
    pub program: String,
    /// The ffprobe executable (the stream listing).
    pub ffprobe: String,
    /// The least scdet score that counts as a cut (0-100).
    pub threshold: f64,
}

impl Default for ScenesAnalyzer {
    fn default() -> Self {
        Self {
            program: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

impl ScenesAnalyzer {
    /// Finds the shots of a local file whose probed duration is `duration_secs`.
    ///
    /// Fails with `analysis_failed` when the file has no video, when ffmpeg fails, or when it
    /// decodes more than a second less than `duration_secs`.
    pub async fn detect(&self, path: &Path, duration_secs: f64) -> Result<ScenesData, TaskError> {
        let streams = tools::streams(&self.ffprobe, path).await?;
        if !streams.video {
            return Err(TaskError::AnalysisFailed {
                message: "the asset has no video stream to find shots in".into(),
            });
        }
        let filter = format!("scdet=threshold={}", self.threshold);
        let printed = whole_video(&self.program, path, &filter, "the scene pass").await?;
        check_complete(progress_end(&printed.stdout), duration_secs)?;
        let mut cuts = parse_cuts(&printed.stderr);
        cuts.retain(|cut| cut.time < round_ms(duration_secs));
        Ok(ScenesData {
            duration_secs,
            threshold: self.threshold,
            shots: shots(&cuts, duration_secs),
            cuts,
        })
    }
}

/// The cuts scdet logged (`lavfi.scd.score: 21.9, lavfi.scd.time: 3`), in order, none at or
/// before 0. ffmpeg's filters count from the container's start time, so the times are already
/// on the asset's time line.
fn parse_cuts(log: &str) -> Vec<Cut> {
    let value = |line: &str, marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).find(|v| !v.is_empty()))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let mut cuts: Vec<Cut> = log
        .lines()
        .filter_map(|line| {
            let score = value(line, "lavfi.scd.score:")?;
            let time = value(line, "lavfi.scd.time:")?;
            (time > 0.0).then(|| Cut {
                time: round_ms(time),
                score: round_ms(score),
            })
        })
        .collect();
    cuts.sort_by(|a, b| a.time.total_cmp(&b.time));
    cuts.dedup_by(|b, a| a.time == b.time);
    cuts
}

/// The shots between the cuts, from 0 to `duration_secs`.
fn shots(cuts: &[Cut], duration_secs: f64) -> Vec<[f64; 2]> {
    let end = round_ms(duration_secs);
    let mut bounds: Vec<f64> = vec![0.0];
    bounds.extend(cuts.iter().map(|c| c.time).filter(|t| *t < end));
    bounds.push(end.max(0.0));
    bounds.windows(2).map(|w| [w[0], w[1]]).collect()
}

#[async_trait]
impl Analyzer for ScenesAnalyzer {
    async fn analyze(
        &self,
        _ctx: &StepContext,
        probe: &ProbeOutput,
        media: &LocalMedia,
    ) -> Result<serde_json::Value, TaskError> {
        let data = self.detect(media.path(), probe.duration_secs).await?;
        tools::result_data("scenes", &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[scdet @ 0x55ae] lavfi.scd.score: 21.935, lavfi.scd.time: 3\n\
        frame=  475 fps=0.0 q=-0.0 Lsize=N/A\n\
        [scdet @ 0x55ae] lavfi.scd.score: 30.623, lavfi.scd.time: 6.04\n\
        [scdet @ 0x55ae] lavfi.scd.score: nan, lavfi.scd.time: 7\n\
        [scdet @ 0x55ae] lavfi.scd.score: 12.5, lavfi.scd.time: 1.4\n";

    #[test]
    fn cuts_are_read_in_order() {
        let cuts = parse_cuts(LOG);
        let times: Vec<f64> = cuts.iter().map(|c| c.time).collect();
        assert_eq!(
            times,
            vec![1.4, 3.0, 6.04],
            "unreadable scores are left out"
        );
        assert_eq!(cuts[1].score, 21.935);
    }

    #[test]
    fn shots_cover_the_asset_between_the_cuts() {
        let cuts = parse_cuts(LOG);
        assert_eq!(
            shots(&cuts, 10.0),
            vec![[0.0, 1.4], [1.4, 3.0], [3.0, 6.04], [6.04, 10.0]]
        );
        assert_eq!(shots(&[], 7.5), vec![[0.0, 7.5]]);
        let late = [Cut {
            time: 9.0,
            score: 50.0,
        }];
        assert_eq!(
            shots(&late, 8.0),
            vec![[0.0, 8.0]],
            "a cut past the end is dropped"
        );
    }
}
