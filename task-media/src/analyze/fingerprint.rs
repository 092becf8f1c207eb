//! The `fingerprint` product: the asset's audio fingerprint, from Chromaprint through ffmpeg.
//!
//! The first audio track is decoded to mono and fed to ffmpeg's `chromaprint` muxer
//! (algorithm 1, Chromaprint's default), which writes one 32-bit item every
//! [`CHROMAPRINT_ITEM_SECS`] (4096 / 3 samples at 11,025 Hz). The result stores them compactly
//! with that time base ([`FingerprintData`]: about 43 bytes of JSON a second). Segments shared
//! by two assets are found from the stored fingerprints by `task_fingerprint::shared_segments`
//! (`GET /fingerprint/match` in the HTTP API).

use std::ffi::OsString;
use std::path::Path;

use async_trait::async_trait;

use task_core::error::TaskError;
use task_fingerprint::{Fingerprint, FingerprintData};
use task_runner::step::StepContext;

use super::Analyzer;
use super::tools::{self, check_complete, ffmpeg_args, progress_end, run_raw};
use crate::media::LocalMedia;
use crate::probe::ProbeOutput;

/// Seconds between Chromaprint's items: its 4096-sample frames overlap by two thirds, at
/// 11,025 Hz.
pub const CHROMAPRINT_ITEM_SECS: f64 = 4096.0 / 3.0 / 11_025.0;
/// The Chromaprint algorithm the muxer is asked for.
pub const ALGORITHM: u32 = 1;

/// The ffmpeg-based fingerprint analyzer.
#[derive(Debug, Clone)]
pub struct FingerprintAnalyzer {
    /// The ffmpeg executable.
    pub program: String,
    /// The ffprobe executable (the stream listing).
    pub ffprobe: String,
}

impl Default for FingerprintAnalyzer {
    fn default() -> Self {
        Self {
            program: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

impl FingerprintAnalyzer {
    /// The fingerprint of a local file's first audio track, whose probed duration is
    /// `duration_secs`.
    ///
    /// Fails with `analysis_failed` when the file has no audio, when ffmpeg fails, or when it
    /// decodes more than a second less than `duration_secs`.
    pub async fn fingerprint(
        &self,
        path: &Path,
        duration_secs: f64,
    ) -> Result<FingerprintData, TaskError> {
        let streams = tools::streams(&self.ffprobe, path).await?;
        if streams.audio_tracks == 0 {
            return Err(TaskError::AnalysisFailed {
                message: "the asset has no audio track to fingerprint".into(),
            });
        }
        let mut args = ffmpeg_args(["-progress", "pipe:2", "-vn", "-sn", "-dn", "-i"]);
        args.push(path.as_os_str().to_owned());
        args.extend(
            [
                "-map",
                "0:a:0",
                "-ac",
                "1",
                "-f",
                "chromaprint",
                "-algorithm",
                "1",
                "-fp_format",
                "raw",
                "-",
            ]
            .map(OsString::from),
        );
        let (raw, log) =
            run_raw("ffmpeg", &self.program, args, path, "the fingerprint pass").await?;
        check_complete(progress_end(&log), duration_secs)?;
        let values = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let fingerprint = Fingerprint::new(CHROMAPRINT_ITEM_SECS, values).map_err(|e| {
            TaskError::AnalysisFailed {
                message: format!("the fingerprint cannot be kept: {e}"),
            }
        })?;
        Ok(FingerprintData::new(&fingerprint, duration_secs, ALGORITHM))
    }
}

#[async_trait]
impl Analyzer for FingerprintAnalyzer {
    async fn analyze(
        &self,
        _ctx: &StepContext,
        probe: &ProbeOutput,
        media: &LocalMedia,
    ) -> Result<serde_json::Value, TaskError> {
        let data = self.fingerprint(media.path(), probe.duration_secs).await?;
        tools::result_data("fingerprint", &data)
    }

    /// A fingerprint depends only on the audio and the algorithm: every version of the
    /// product (and the `markers` product, through it) reuses one of an unchanged object.
    fn reuse_key(&self) -> Option<String> {
        Some(format!("fingerprint:chromaprint-{ALGORITHM}"))
    }
}
