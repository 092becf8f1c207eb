//! The `thumbnails` product: one representative still per shot, as JPEG files in an output
//! store.
//!
//! # What is chosen
//!
//! - **Shots** are the scenes product's ([`ScenesAnalyzer::detect`]: cuts by scdet, threshold
//!   10), which decodes the whole video once.
//! - **At most [`ThumbnailsAnalyzer::max_stills`]** (default [`DEFAULT_MAX_STILLS`], at most
//!   [`MAX_STILLS_LIMIT`]): the longest shots are tried first (equal lengths: the earlier
//!   first) until that many stills are kept; the stills are stored in time order.
//! - **Within a shot**, ffmpeg decodes the shot alone (`-ss start -t length`), samples it down
//!   to [`BATCH_FRAMES`] frames spread over the shot (`fps`), scales them to at most
//!   [`ThumbnailsAnalyzer::max_width`] pixels wide (default [`DEFAULT_MAX_WIDTH`], aspect
//!   kept; narrower video keeps its size), and lets the `thumbnail` filter pick the frame
//!   closest to the batch's mean colour histogram. At most that batch of scaled frames is held.
//! - **Never black**: the chosen frame's mean luma (signalstats `YAVG`, full range 0-255) must
//!   be at least [`ThumbnailsAnalyzer::min_mean_luma`] (default [`MIN_MEAN_LUMA`]); a black or
//!   near-black shot gives no still.
//!
//! # Where the stills go
//!
//! JPEG (ffmpeg's mjpeg, `-q:v 3`) to the [`OutputRoot`] under
//! `{prefix}/{tenant}/{inventory_id}/thumbnails/{version}/{NNN}.jpg` (`NNN` = `001`, `002`... in
//! time order; each id is one path segment, `/` and other characters a key cannot hold
//! percent-encoded). A run of the same version overwrites those keys and deletes whatever else
//! is under `{version}/`; a run that fails or is cancelled leaves none of its stills: each
//! run stages them under `{version}/.staging/{task_id}/` and copies them to their keys only
//! once all are written, and a failed or dropped run deletes what it staged or copied (a
//! dropped run in a spawned cleanup, see [`ThumbnailsAnalyzer::cleanups_finished`]). One limit: a cancel that lands while the final copies are being made (after
//! every still is staged) removes the stills copied so far, so an earlier result of that
//! version may then name keys that are gone until the version runs again.

mod staging;

use std::ffi::OsString;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use task_core::error::TaskError;
use task_runner::step::StepContext;

use super::Analyzer;
use super::scenes::ScenesAnalyzer;
use super::tools::{self, ffmpeg_args, round_ms, run_raw};
use crate::asset_url::OutputRoot;
use crate::media::LocalMedia;
use crate::probe::ProbeOutput;
use staging::Staging;

/// Stills per asset unless configured.
pub const DEFAULT_MAX_STILLS: usize = 20;
/// The most stills an asset may have (`NNN` has three digits).
pub const MAX_STILLS_LIMIT: usize = 999;
/// The widest still unless configured, pixels; narrower video keeps its width.
pub const DEFAULT_MAX_WIDTH: u32 = 640;
/// The least mean luma (0-255, full range) of a kept still: below it a frame is black or
/// near-black (10% of white is 25.5; pure blue is 29).
pub const MIN_MEAN_LUMA: f64 = 24.0;
/// The frames of a shot the `thumbnail` filter chooses among.
pub const BATCH_FRAMES: u32 = 24;

/// One still.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Still {
    /// Seconds from the start of the asset: the chosen frame.
    pub time_secs: f64,
    /// The shot it represents, `[start, end]` in seconds.
    pub shot: [f64; 2],
    /// Its key in the output store.
    pub key: String,
    /// Its URL: `s3://bucket/key` or `file:///dir/key`.
    pub url: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// The frame's mean luma, 0-255 (full range).
    pub mean_luma: f64,
}

/// The stored data of a thumbnails result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailsData {
    /// The asset's duration, seconds.
    pub duration_secs: f64,
    /// How many shots the asset has.
    pub shots: usize,
    /// The stills, in time order.
    pub stills: Vec<Still>,
}

/// The ffmpeg-based thumbnails analyzer.
#[derive(Debug, Clone)]
pub struct ThumbnailsAnalyzer {
    /// The ffmpeg executable.
    pub program: String,
    /// How shots are found.
    pub scenes: ScenesAnalyzer,
    /// Where the stills go.
    pub output: OutputRoot,
    /// The most stills per asset (1 to [`MAX_STILLS_LIMIT`]).
    pub max_stills: usize,
    /// The widest still, pixels.
    pub max_width: u32,
    /// The least mean luma of a kept still (0-255).
    pub min_mean_luma: f64,
    cleanups: TaskTracker,
}

/// The frame chosen in one shot.
struct Pick {
    shot: [f64; 2],
    time_secs: f64,
    mean_luma: f64,
    jpeg: Vec<u8>,
}

impl ThumbnailsAnalyzer {
    /// The analyzer writing to `output`, with the defaults.
    pub fn new(output: OutputRoot) -> Self {
        Self {
            program: "ffmpeg".into(),
            scenes: ScenesAnalyzer::default(),
            output,
            max_stills: DEFAULT_MAX_STILLS,
            max_width: DEFAULT_MAX_WIDTH,
            min_mean_luma: MIN_MEAN_LUMA,
            cleanups: TaskTracker::new(),
        }
    }

    /// The same with at most `max` stills per asset (clamped to 1..=[`MAX_STILLS_LIMIT`]).
    pub fn with_max_stills(mut self, max: usize) -> Self {
        self.max_stills = max.clamp(1, MAX_STILLS_LIMIT);
        self
    }

    /// Waits until the cleanups of dropped (cancelled) runs have finished: for tests and for a
    /// shutdown that wants no staged object left.
    pub async fn cleanups_finished(&self) {
        self.cleanups.close();
        self.cleanups.wait().await;
        self.cleanups.reopen();
    }

    /// Chooses the stills of a local file whose probed duration is `duration_secs` and writes
    /// them for the task in `ctx`. Stops with `cancelled` when `ctx.cancel` trips, leaving no
    /// still behind.
    pub async fn stills(
        &self,
        ctx: &StepContext,
        path: &Path,
        duration_secs: f64,
    ) -> Result<ThumbnailsData, TaskError> {
        let shots = self.scenes.detect(path, duration_secs).await?.shots;
        let mut picks = Vec::new();
        for shot in longest_first(&shots) {
            if picks.len() >= self.max_stills {
                break;
            }
            if ctx.cancel.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            if let Some(pick) = self.pick(path, shot).await?
                && pick.mean_luma >= self.min_mean_luma
            {
                picks.push(pick);
            }
        }
        picks.sort_by(|a, b| a.time_secs.total_cmp(&b.time_secs));
        let key = &ctx.task.key;
        let dir = self.output.key([
            key.tenant.as_str(),
            key.inventory_id.as_str(),
            "thumbnails",
            key.version.as_str(),
        ]);
        let staging = Staging::new(
            self.output.clone(),
            dir,
            &ctx.task.id.to_string(),
            self.cleanups.clone(),
        );
        let stills = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Err(TaskError::Cancelled),
            written = self.write(staging, picks, &ctx.cancel) => written?,
        };
        Ok(ThumbnailsData {
            duration_secs,
            shots: shots.len(),
            stills,
        })
    }

    /// Stages every still, then commits them unless `cancel` has tripped (a store that answers
    /// at once never lets the caller's select see it); on an error or a cancel deletes what was
    /// written.
    async fn write(
        &self,
        mut staging: Staging,
        picks: Vec<Pick>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Still>, TaskError> {
        let mut sized = Vec::with_capacity(picks.len());
        let mut outcome = Ok(());
        for (i, pick) in picks.into_iter().enumerate() {
            let Some((width, height)) = jpeg_dimensions(&pick.jpeg) else {
                outcome = Err(TaskError::AnalysisFailed {
                    message: format!("ffmpeg wrote no readable JPEG for {:.3} s", pick.time_secs),
                });
                break;
            };
            let name = format!("{:03}.jpg", i + 1);
            if let Err(e) = staging.put(&name, Bytes::from(pick.jpeg)).await {
                outcome = Err(e);
                break;
            }
            sized.push((pick.shot, pick.time_secs, pick.mean_luma, width, height));
        }
        let keys = match outcome {
            Ok(()) if cancel.is_cancelled() => Err(TaskError::Cancelled),
            Ok(()) => staging.commit().await,
            Err(e) => Err(e),
        };
        let keys = match keys {
            Ok(keys) => keys,
            Err(e) => {
                staging.discard().await;
                return Err(e);
            }
        };
        Ok(sized
            .into_iter()
            .zip(keys)
            .map(|((shot, time_secs, mean_luma, width, height), key)| Still {
                time_secs,
                shot,
                url: self.output.url(&key),
                key: key.to_string(),
                width,
                height,
                mean_luma,
            })
            .collect())
    }

    /// The `thumbnail` filter's choice in `shot`, with its mean luma, as a JPEG; None when the
    /// shot decodes to no frame (a sliver shorter than a frame).
    async fn pick(&self, path: &Path, shot: [f64; 2]) -> Result<Option<Pick>, TaskError> {
        let length = shot[1] - shot[0];
        if length <= 0.0 {
            return Ok(None);
        }
        let rate = f64::from(BATCH_FRAMES) / length;
        let width = self.max_width;
        let filter = format!(
            "fps=fps={rate:.6},scale=w='if(gt(iw,{width}),{width},iw)':h='if(gt(iw,{width}),-2,ih)',\
             format=yuvj420p,thumbnail=n={},signalstats,\
             metadata=mode=print:key=lavfi.signalstats.YAVG",
            BATCH_FRAMES + 4
        );
        let mut args = ffmpeg_args(["-ss", &format!("{:.6}", shot[0])]);
        args.extend(["-t", &format!("{length:.6}"), "-an", "-sn", "-dn", "-i"].map(OsString::from));
        args.push(path.as_os_str().to_owned());
        args.extend(
            [
                "-map",
                "0:V:0",
                "-vf",
                &filter,
                "-frames:v",
                "1",
                "-c:v",
                "mjpeg",
                "-q:v",
                "3",
                "-f",
                "image2pipe",
                "-",
            ]
            .map(OsString::from),
        );
        let what = format!("the still of the shot at {:.3} s", shot[0]);
        let (jpeg, log) = run_raw("ffmpeg", &self.program, args, path, &what).await?;
        let Some((offset, mean_luma)) = parse_choice(&log) else {
            return Ok(None);
        };
        if jpeg.is_empty() {
            return Ok(None);
        }
        let time_secs = round_ms((shot[0] + offset).clamp(shot[0], shot[1]));
        Ok(Some(Pick {
            shot,
            time_secs,
            mean_luma: round_ms(mean_luma),
            jpeg,
        }))
    }
}

/// The shots, longest first (equal lengths: the earlier first).
fn longest_first(shots: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut order = shots.to_vec();
    order.sort_by(|a, b| {
        (b[1] - b[0])
            .total_cmp(&(a[1] - a[0]))
            .then(a[0].total_cmp(&b[0]))
    });
    order
}

/// The first frame the metadata filter printed: its time from the start of the decoded
/// window, and its `YAVG`.
fn parse_choice(log: &str) -> Option<(f64, f64)> {
    let time = log
        .lines()
        .find_map(|l| l.split("pts_time:").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())?;
    let luma = log
        .lines()
        .find_map(|l| l.split("lavfi.signalstats.YAVG=").nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())?;
    Some((time.max(0.0), luma))
}

/// The width and height of a baseline or progressive JPEG, from its start-of-frame marker.
pub fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    loop {
        while *bytes.get(at)? != 0xFF {
            at += 1;
        }
        while *bytes.get(at)? == 0xFF {
            at += 1;
        }
        let marker = *bytes.get(at)?;
        at += 1;
        if matches!(marker, 0xD0..=0xD9 | 0x01) {
            continue;
        }
        let length = usize::from(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
        let start_of_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if start_of_frame {
            let h = u16::from_be_bytes([*bytes.get(at + 3)?, *bytes.get(at + 4)?]);
            let w = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            return Some((u32::from(w), u32::from(h)));
        }
        at += length;
    }
}

#[async_trait]
impl Analyzer for ThumbnailsAnalyzer {
    async fn analyze(
        &self,
        ctx: &StepContext,
        probe: &ProbeOutput,
        media: &LocalMedia,
    ) -> Result<serde_json::Value, TaskError> {
        let data = self.stills(ctx, media.path(), probe.duration_secs).await?;
        tools::result_data("thumbnails", &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_shots_come_first_and_ties_go_to_the_earlier() {
        let shots = [[0.0, 2.0], [2.0, 7.0], [7.0, 9.0], [9.0, 10.0]];
        assert_eq!(
            longest_first(&shots),
            vec![[2.0, 7.0], [0.0, 2.0], [7.0, 9.0], [9.0, 10.0]]
        );
    }

    #[test]
    fn the_choice_is_read_from_the_metadata_log() {
        let log = "  Metadata:\n[Parsed_metadata_5 @ 0x56] frame:0    pts:6       pts_time:0.75\n\
            [Parsed_metadata_5 @ 0x56] lavfi.signalstats.YAVG=123.31\n\
            [Parsed_metadata_5 @ 0x56] frame:1    pts:7       pts_time:0.875\n";
        assert_eq!(parse_choice(log), Some((0.75, 123.31)));
        assert_eq!(parse_choice("frame:0 pts:0 pts_time:0\n"), None);
    }

    #[test]
    fn jpeg_dimensions_come_from_the_start_of_frame() {
        // SOI, an APP0 segment of 4 bytes, SOF0 (precision 8, 180 high, 320 wide).
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00,
            0xB4, 0x01, 0x40, 0x03,
        ];
        assert_eq!(jpeg_dimensions(&jpeg), Some((320, 180)));
        assert_eq!(jpeg_dimensions(&jpeg[..12]), None);
        assert_eq!(jpeg_dimensions(b"not a jpeg"), None);
    }
}
