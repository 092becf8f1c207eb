//! ffprobe as a child process: any format ffmpeg reads.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use task_core::error::TaskError;
use task_core::task::Step;

use super::{ProbeOutput, Prober, StreamInfo, StreamKind, probe_failed};
use crate::asset_url::AssetLocation;
use crate::error::MediaError;
use crate::media::LocalMedia;

/// Runs `ffprobe` on a local copy of the asset (the file itself for `file://` URLs).
/// The child is killed if the probe is cancelled (its future dropped) or times out.
#[derive(Debug, Clone)]
pub struct FfprobeProber {
    /// The ffprobe executable.
    pub program: String,
    /// How long ffprobe may run.
    pub timeout: Duration,
}

impl Default for FfprobeProber {
    fn default() -> Self {
        Self {
            program: "ffprobe".into(),
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Deserialize)]
struct Report {
    format: Option<Format>,
    #[serde(default)]
    streams: Vec<Stream>,
}

#[derive(Deserialize)]
struct Format {
    format_name: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    sample_rate: Option<String>,
    channels: Option<u32>,
}

impl FfprobeProber {
    /// Probes a local file.
    pub async fn probe_file(&self, path: &Path, bytes_read: u64) -> Result<ProbeOutput, TaskError> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args([
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
                "-i",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = command.output();
        let output = match tokio::time::timeout(self.timeout, child).await {
            Err(_) => {
                return Err(TaskError::StepTimeout {
                    step: Step::Probe,
                    timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                });
            }
            Ok(Err(e)) => {
                return Err(MediaError::ToolMissing {
                    tool: "ffprobe",
                    message: e.to_string(),
                }
                .into());
            }
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| concise(l, path))
                .unwrap_or_else(|| format!("ffprobe exited with {}", output.status));
            return Err(probe_failed(message));
        }
        let report: Report = serde_json::from_slice(&output.stdout)
            .map_err(|e| probe_failed(format!("unreadable ffprobe output: {e}")))?;
        let format = report
            .format
            .ok_or_else(|| probe_failed("ffprobe found no container"))?;
        let duration_secs = format
            .duration
            .as_deref()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0);
        let streams = report
            .streams
            .into_iter()
            .map(|s| {
                let kind = match s.codec_type.as_deref() {
                    Some("video") => StreamKind::Video,
                    Some("audio") => StreamKind::Audio,
                    _ => StreamKind::Other,
                };
                StreamInfo {
                    kind,
                    codec: s.codec_name.unwrap_or_else(|| "unknown".into()),
                    width: s.width.filter(|_| kind == StreamKind::Video),
                    height: s.height.filter(|_| kind == StreamKind::Video),
                    sample_rate: s.sample_rate.and_then(|r| r.parse().ok()),
                    channels: s.channels,
                }
            })
            .collect();
        Ok(ProbeOutput {
            prober: "ffprobe".into(),
            format: format.format_name.unwrap_or_default(),
            duration_secs,
            streams,
            bytes_read,
        })
    }
}

/// ffprobe prefixes its messages with the input path; the path of a temporary copy means
/// nothing to a user.
fn concise(line: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    line.trim()
        .strip_prefix(&prefix)
        .unwrap_or(line.trim())
        .to_owned()
}

#[async_trait]
impl Prober for FfprobeProber {
    fn name(&self) -> &'static str {
        "ffprobe"
    }

    async fn probe(&self, location: &AssetLocation, size: u64) -> Result<ProbeOutput, TaskError> {
        let media = LocalMedia::fetch(location, Step::Probe).await?;
        let read = if location.local_file.is_some() {
            size
        } else {
            media.downloaded()
        };
        self.probe_file(media.path(), read).await?.validated()
    }
}
