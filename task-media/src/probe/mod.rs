//! Probing: what a video is (duration, streams), by a pure-Rust MP4 reader or by ffprobe.

mod boxes;
mod ffprobe;
mod mp4;
mod mp4_header;
mod sniff;
mod tracks;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use task_core::error::TaskError;

use crate::asset_url::AssetLocation;

pub use self::ffprobe::FfprobeProber;
pub use self::mp4::{Mp4Prober, Mp4Verdict, PARSE_DEADLINE};
pub use self::mp4_header::parse_header_bytes;
pub use self::sniff::{Container, SNIFF_LEN, sniff};

/// The kind of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
    /// Anything else (subtitles, data).
    Other,
}

/// One stream of a probed asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Video, audio or other.
    pub kind: StreamKind,
    /// The codec under ffprobe's `codec_name` (`h264`, `hevc`, `aac`, `opus`, `pcm_s16le`...).
    pub codec: String,
    /// Picture width, for video.
    pub width: Option<u32>,
    /// Picture height, for video.
    pub height: Option<u32>,
    /// Sample rate in Hz, for audio.
    pub sample_rate: Option<u32>,
    /// Channel count, for audio.
    pub channels: Option<u32>,
}

/// The checkpoint of the probe step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeOutput {
    /// Which prober answered (`mp4` or `ffprobe`).
    pub prober: String,
    /// The container format.
    pub format: String,
    /// Duration in seconds.
    pub duration_secs: f64,
    /// The streams, in container order.
    pub streams: Vec<StreamInfo>,
    /// Bytes of the asset the prober read.
    pub bytes_read: u64,
}

impl ProbeOutput {
    /// Refuses outputs no analysis can use: no video stream, or no duration.
    pub fn validated(self) -> Result<Self, TaskError> {
        if !self.streams.iter().any(|s| s.kind == StreamKind::Video) {
            return Err(probe_failed("no video stream found"));
        }
        if !(self.duration_secs > 0.0 && self.duration_secs.is_finite()) {
            return Err(probe_failed("the container declares no duration"));
        }
        Ok(self)
    }
}

/// Builds `probe_failed` from the prober's own message.
pub fn probe_failed(message: impl Into<String>) -> TaskError {
    TaskError::ProbeFailed {
        message: message.into(),
    }
}

/// Reads an asset's duration and streams.
#[async_trait]
pub trait Prober: Send + Sync + 'static {
    /// The prober's name, recorded in the output.
    fn name(&self) -> &'static str;

    /// Probes the object at `location`, whose real size is `size`. Undecodable input is a
    /// permanent `probe_failed`; storage trouble keeps its own (possibly retryable) error.
    async fn probe(&self, location: &AssetLocation, size: u64) -> Result<ProbeOutput, TaskError>;
}
