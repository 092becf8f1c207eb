//! The `adbreaks` product: candidate ad-break points where black frames and silence coincide.
//!
//! # What counts
//!
//! - **Black**: ffmpeg's `blackdetect` (`pix_th=0.1`, 98% of the picture) on the first video
//!   stream that is not a cover picture, for at least [`AdbreaksAnalyzer::min_interval_secs`].
//! - **Silence**: ffmpeg's `silencedetect` (`n=-50dB`) for at least the same minimum (less
//!   [`SILENCE_EDGE_SECS`], what an audio codec shaves off the edges of a cut), on **every
//!   audio track**: a stretch is silent only if it is silent on all audio streams of the asset
//!   (and on all channels of each). A track that ends before the others counts as silent from its
//!   end on. An asset without audio has no silence, hence no candidates.
//! - **Candidate**: every overlap of a black interval with a silent one, placed at the middle
//!   of the overlap, with the overlap's length in seconds as its `score` (longer is a likelier
//!   break). Candidates are stored best (highest score) first, equal scores by time.
//!
//! # How: audio first
//!
//! A break needs both, and decoding the audio costs about 1% of decoding the video, so the
//! default [`AdbreaksMode::AudioFirst`] finds the silence from the audio alone (one `-vn` pass
//! per track), reads the video's keyframe index (demuxing, no decoding), and decodes the video
//! only in windows around each silent interval to find the black there (each window is decoded
//! from the keyframe before its silence and analysed from two frames before it to two frames
//! after it, and again with a minimum interval more each side in the rare case that black cut by
//! those edges might count; overlapping windows are merged, and several windows share one ffmpeg
//! process). Before the analysed part of a window, the H.264 pictures that no analysed picture
//! depends on are not decoded (MP4/MOV files): those that nothing refers to are left out, and
//! reference pictures that the slice headers show no analysed picture reaches keep only those
//! headers. It gives the candidates of [`AdbreaksMode::Full`], which decodes the whole video,
//! within a few milliseconds, at a fraction of its cost (BENCHMARKS.md).
//!
//! # Truncated or damaged files
//!
//! Both modes know how far ffmpeg decoded (its progress report, and in audio-first mode also the
//! end of the last video packet). When that falls more than [`TRUNCATION_TOLERANCE_SECS`] short
//! of the probed duration, the analysis fails with `analysis_failed`, naming both figures: a cut
//! file would otherwise finish with its header's duration and silently miss every gap of its
//! missing part.

mod filter;
mod h264;
mod lead;
mod matroska;
mod references;
mod silence;
mod video;

use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use task_core::error::TaskError;
use task_runner::step::StepContext;

pub use self::filter::{AdbreakFilter, AdbreakGroup, filter_adbreaks};
use super::Analyzer;
use super::tools::{self, check_complete, round_ms};
use crate::media::LocalMedia;
use crate::probe::ProbeOutput;

pub use super::TRUNCATION_TOLERANCE_SECS;

/// How much shorter than the minimum interval a silence may be: an audio codec's transform
/// shaves a few milliseconds off each edge of a cut to silence (a 0.5 s gap in AAC is 0.499 s).
pub const SILENCE_EDGE_SECS: f64 = 0.02;

/// One candidate ad-break point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Seconds from the start: the middle of the overlap of black and silence.
    pub time: f64,
    /// Seconds of black and silence together around it (the overlap's length).
    pub score: f64,
}

/// The stored data of an adbreaks result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdbreaksData {
    /// The asset's duration, seconds.
    pub duration_secs: f64,
    /// Candidates, best (highest score) first, equal scores by time.
    pub candidates: Vec<Candidate>,
}

/// How much work an analysis did (for benchmarks and logs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdbreaksWork {
    /// Intervals silent on every audio track, at least the minimum long.
    pub silences: usize,
    /// Video windows decoded around them (audio first), after merging.
    pub windows: usize,
    /// ffmpeg processes that decoded video.
    pub video_runs: usize,
    /// Windows decoded again with wide margins (audio first): a black run cut by a narrow
    /// window's edge might have been long enough to count.
    pub windows_widened: usize,
    /// Seconds of video decoded (the whole video in full mode).
    pub video_secs: f64,
    /// Pictures that nothing refers to, dropped from the windows' leads unread by the decoder.
    pub frames_dropped: usize,
    /// Reference pictures of the windows' leads that no analysed picture depends on, cut to
    /// their slice headers.
    pub frames_cut: usize,
}

/// Which video the analysis decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdbreaksMode {
    /// Silence from the audio alone, then the video only in windows around each silent
    /// interval. The default: its cost grows with the number of silent intervals and the
    /// keyframe interval, 0.048x a bare decode's CPU with 1.4 silences a minute and a keyframe
    /// every 2 s, 0.084x with one every 10 s (1080p, 30 minutes, BENCHMARKS.md).
    #[default]
    AudioFirst,
    /// The whole video through `blackdetect`: the reference, at the cost of a full decode.
    Full,
}

/// The ffmpeg-based adbreaks analyzer.
#[derive(Debug, Clone)]
pub struct AdbreaksAnalyzer {
    /// The ffmpeg executable.
    pub program: String,
    /// The ffprobe executable (stream listing and the video's keyframe index).
    pub ffprobe: String,
    /// Shortest black or silent interval that counts, seconds.
    pub min_interval_secs: f64,
    /// Audio first (default) or a full decode.
    pub mode: AdbreaksMode,
}

impl Default for AdbreaksAnalyzer {
    fn default() -> Self {
        Self {
            program: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            min_interval_secs: 0.5,
            mode: AdbreaksMode::default(),
        }
    }
}

impl AdbreaksAnalyzer {
    /// This analyzer in another mode.
    pub fn with_mode(self, mode: AdbreaksMode) -> Self {
        Self { mode, ..self }
    }

    /// Runs the detection on a local file whose probed duration is `duration_secs`.
    ///
    /// Fails with `analysis_failed` when ffmpeg fails, or when it decodes more than
    /// [`TRUNCATION_TOLERANCE_SECS`] less than `duration_secs` (a truncated or damaged file).
    pub async fn detect(&self, path: &Path, duration_secs: f64) -> Result<AdbreaksData, TaskError> {
        Ok(self.detect_with_work(path, duration_secs).await?.0)
    }

    /// [`Self::detect`], also saying how much work it took.
    pub async fn detect_with_work(
        &self,
        path: &Path,
        duration_secs: f64,
    ) -> Result<(AdbreaksData, AdbreaksWork), TaskError> {
        let d = self.min_interval_secs;
        let quiet = (d - SILENCE_EDGE_SECS).max(0.0);
        let streams = tools::streams(&self.ffprobe, path).await?;
        if !streams.video {
            return Err(TaskError::AnalysisFailed {
                message: "the asset has no video stream to look for black frames in".into(),
            });
        }
        let audio = futures::future::try_join_all(
            (0..streams.audio_tracks)
                .map(|t| silence::track_silence(&self.program, path, t, quiet)),
        );
        let index = tools::video_index(&self.ffprobe, path, streams.start_time);
        let mut work = AdbreaksWork::default();
        let candidates = match self.mode {
            AdbreaksMode::Full => {
                let (tracks, index, video) =
                    futures::try_join!(audio, index, video::full_pass(&self.program, path, d))?;
                let end = video.decoded_to.max(index.end);
                let silence = silence::common_silence(&tracks, end, quiet);
                check_complete(silence.decoded_to.max(end), duration_secs)?;
                work.silences = silence.intervals.len();
                work.video_runs = 1;
                work.video_secs = video.decoded_to;
                coincide(&reach_the_end(video.black, &index), &silence.intervals)
            }
            AdbreaksMode::AudioFirst => {
                let (tracks, index) = futures::try_join!(audio, index)?;
                let silence = silence::common_silence(&tracks, index.end, quiet);
                check_complete(silence.decoded_to.max(index.end), duration_secs)?;
                let windows = video::plan(&silence.intervals, &index, d);
                tracing::debug!(
                    silences = silence.intervals.len(),
                    windows = windows.len(),
                    "adbreaks: decoding the video around the silent intervals only"
                );
                work.silences = silence.intervals.len();
                work.windows = windows.len();
                let source = video::Source {
                    program: &self.program,
                    path,
                    index: &index,
                    start_time: streams.start_time,
                    avcc: streams.video_extradata.as_deref(),
                    drop_leads: lead::qualifies(
                        streams.video_codec.as_deref(),
                        &streams.container,
                        path,
                    ),
                };
                let decoded = video::windows_pass(&source, windows, d, &mut work).await?;
                let mut candidates: Vec<Candidate> = decoded
                    .into_iter()
                    .flat_map(|(window, black)| {
                        coincide(&reach_the_end(black, &index), &window.silences)
                    })
                    .collect();
                sort_best_first(&mut candidates);
                candidates
            }
        };
        Ok((
            AdbreaksData {
                duration_secs,
                candidates,
            },
            work,
        ))
    }
}

/// For the `h264_leads` fuzz target only: what a window's lead copy would leave out and cut to
/// slice headers of `units` (H.264 access units in MP4 form of the stream whose `avcC` is
/// `avcc`, the first decoded first and the last analysed), as `(left out, cut)`.
#[doc(hidden)]
pub fn fuzz_lead_copy(avcc: &[u8], units: &[Vec<u8>]) -> (usize, usize) {
    lead::spare(avcc, units)
}

/// `blackdetect` ends a black run that lasts to the end of the video at its last frame's start;
/// it ends at the video's end.
fn reach_the_end(mut black: Vec<(f64, f64)>, index: &tools::VideoIndex) -> Vec<(f64, f64)> {
    for run in &mut black {
        if run.1 < index.end && run.1 >= index.end - 1.5 * index.frame {
            run.1 = index.end;
        }
    }
    black
}

/// Overlaps of black and silent intervals, best (longest) first.
fn coincide(black: &[(f64, f64)], silence: &[(f64, f64)]) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = black
        .iter()
        .flat_map(|b| silence.iter().map(move |s| (b.0.max(s.0), b.1.min(s.1))))
        .filter(|(start, end)| end > start)
        .map(|(start, end)| Candidate {
            time: round_ms((start + end) / 2.0),
            score: round_ms(end - start),
        })
        .collect();
    sort_best_first(&mut candidates);
    candidates
}

fn sort_best_first(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.time.total_cmp(&b.time)));
}

#[async_trait]
impl Analyzer for AdbreaksAnalyzer {
    async fn analyze(
        &self,
        _ctx: &StepContext,
        probe: &ProbeOutput,
        media: &LocalMedia,
    ) -> Result<serde_json::Value, TaskError> {
        let data = self.detect(media.path(), probe.duration_secs).await?;
        tools::result_data("adbreaks", &data)
    }
}

#[cfg(test)]
mod tests {
    use super::tools::intervals;
    use super::*;

    const LOG: &str = "[blackdetect @ 0x1] black_start:119.8 black_end:122.2 black_duration:2.4\n\
        [silencedetect @ 0x2] silence_start: 120.0\n\
        [silencedetect @ 0x2] silence_end: 122.0 | silence_duration: 2.0\n\
        [blackdetect @ 0x1] black_start:400 black_end:401 black_duration:1\n\
        [silencedetect @ 0x2] silence_start: 500\n\
        [silencedetect @ 0x2] silence_end: 501 | silence_duration: 1\n";

    #[test]
    fn only_coinciding_black_and_silence_are_candidates() {
        let black = intervals(LOG, "black_start:", "black_end:");
        let silence = intervals(LOG, "silence_start:", "silence_end:");
        assert_eq!(black, vec![(119.8, 122.2), (400.0, 401.0)]);
        assert_eq!(silence, vec![(120.0, 122.0), (500.0, 501.0)]);
        assert_eq!(
            coincide(&black, &silence),
            vec![Candidate {
                time: 121.0,
                score: 2.0
            }]
        );
    }

    #[test]
    fn a_second_short_of_the_duration_is_tolerated_and_more_is_not() {
        assert!(check_complete(599.2, 600.0).is_ok());
        let err = check_complete(301.24, 600.0).unwrap_err();
        assert_eq!(err.code(), "analysis_failed");
        assert_eq!(
            err.to_string(),
            "Analysis failed: decoded 301.2 s of a 600.0 s asset: the file ends early or is damaged"
        );
    }
}
