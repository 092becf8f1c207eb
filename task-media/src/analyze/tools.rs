//! ffmpeg and ffprobe as child processes for the analyses, and what they print.
//!
//! Every child is killed when its future is dropped (a cancelled task leaves no ffmpeg behind).

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use serde::Deserialize;

use task_core::error::TaskError;

use crate::error::MediaError;

/// What a finished child printed.
pub(super) struct Printed {
    /// Standard output (ffmpeg's `-progress pipe:1`, ffprobe's report).
    pub stdout: String,
    /// Standard error (ffmpeg's log, where the detection filters write).
    pub stderr: String,
}

/// Runs `program` with `args` to its end. `what` names the pass in errors, e.g.
/// "the audio pass over track 2"; a failing exit gives `analysis_failed` with ffmpeg's last line.
pub(super) async fn run(
    tool: &'static str,
    program: &str,
    args: Vec<OsString>,
    path: &Path,
    what: &str,
) -> Result<Printed, TaskError> {
    let (stdout, stderr) = run_raw(tool, program, args, path, what).await?;
    Ok(Printed {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    })
}

/// [`run`], with standard output as the bytes the child wrote (a binary format).
pub(super) async fn run_raw(
    tool: &'static str,
    program: &str,
    args: Vec<OsString>,
    path: &Path,
    what: &str,
) -> Result<(Vec<u8>, String), TaskError> {
    let output = tokio::process::Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            TaskError::from(MediaError::ToolMissing {
                tool,
                message: format!("{program}: {e}"),
            })
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let last = stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| concise(l, path))
            .unwrap_or_else(|| format!("{tool} exited with {}", output.status));
        return Err(TaskError::AnalysisFailed {
            message: format!("{tool} failed in {what}: {last}"),
        });
    }
    Ok((output.stdout, stderr))
}

/// ffmpeg prefixes some messages with the input path; the path of a temporary download means
/// nothing to a user.
fn concise(line: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    line.strip_prefix(&prefix).unwrap_or(line).to_owned()
}

/// The arguments `ffmpeg -hide_banner -nostats` followed by `rest`.
pub(super) fn ffmpeg_args<I, S>(rest: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    ["-hide_banner", "-nostats"]
        .into_iter()
        .map(OsString::from)
        .chain(rest.into_iter().map(Into::into))
        .collect()
}

/// The streams of an asset that the analysis uses.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Streams {
    /// Whether there is a video stream that is not a cover picture (`0:V:0` in ffmpeg's terms).
    pub video: bool,
    /// How many audio streams (tracks) there are.
    pub audio_tracks: usize,
    /// The container's start time, seconds: ffmpeg's filters count from it, ffprobe's packet
    /// times do not.
    pub start_time: f64,
    /// The codec of that video stream, as ffprobe names it (`h264`).
    pub video_codec: Option<String>,
    /// The container, as ffprobe names it (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub container: String,
    /// That video stream's codec configuration (`avcC` for H.264 in MP4), when it has one.
    pub video_extradata: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    streams: Vec<ReportStream>,
    format: Option<ReportFormat>,
}

#[derive(Deserialize)]
struct ReportStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    /// A hex dump (`-show_data`).
    extradata: Option<String>,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct ReportFormat {
    start_time: Option<String>,
    format_name: Option<String>,
}

/// Lists the streams of `path` with ffprobe.
pub(super) async fn streams(ffprobe: &str, path: &Path) -> Result<Streams, TaskError> {
    let args = [
        "-v",
        "error",
        "-show_entries",
        "format=start_time,format_name:stream=codec_type,codec_name,extradata:stream_disposition=attached_pic",
        "-show_data",
        "-of",
        "json",
        "-i",
    ]
    .into_iter()
    .map(OsString::from)
    .chain([path.as_os_str().to_owned()])
    .collect();
    let printed = run("ffprobe", ffprobe, args, path, "the stream listing").await?;
    parse_streams(&printed.stdout)
}

/// The bytes of an ffprobe hex dump (`00000000: 0164 0028 ffe1  .d.(..` lines), or `None` if a
/// line does not read as one.
fn hex_dump(dump: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    for line in dump.lines().filter(|l| !l.trim().is_empty()) {
        let (_, rest) = line.split_once(": ")?;
        // The hex part ends where the two spaces before the characters begin.
        let hex = rest.split("  ").next()?;
        for group in hex.split_whitespace() {
            if group.len() % 2 != 0 {
                return None;
            }
            for pair in group.as_bytes().chunks(2) {
                let pair = std::str::from_utf8(pair).ok()?;
                bytes.push(u8::from_str_radix(pair, 16).ok()?);
            }
        }
    }
    (!bytes.is_empty()).then_some(bytes)
}

fn parse_streams(json: &str) -> Result<Streams, TaskError> {
    let report: Report = serde_json::from_str(json).map_err(|e| TaskError::AnalysisFailed {
        message: format!("unreadable ffprobe stream listing: {e}"),
    })?;
    let kind = |s: &ReportStream, k: &str| s.codec_type.as_deref() == Some(k);
    let video = report
        .streams
        .iter()
        .find(|s| kind(s, "video") && s.disposition.attached_pic == 0);
    let format = report.format.unwrap_or(ReportFormat {
        start_time: None,
        format_name: None,
    });
    Ok(Streams {
        video: video.is_some(),
        audio_tracks: report.streams.iter().filter(|s| kind(s, "audio")).count(),
        start_time: format
            .start_time
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0),
        video_codec: video.and_then(|v| v.codec_name.clone()),
        video_extradata: video
            .and_then(|v| v.extradata.as_deref())
            .and_then(hex_dump),
        container: format.format_name.unwrap_or_default(),
    })
}

/// Where the video's keyframes are and where its last packet ends, from the packet index
/// (demuxing only, no decoding), on the filters' time line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VideoIndex {
    /// Keyframe times, ascending, seconds.
    pub keyframes: Vec<f64>,
    /// The end of the last packet, seconds.
    pub end: f64,
    /// The longest packet duration seen (about one frame), seconds.
    pub frame: f64,
    /// Every packet, in decode order.
    pub packets: Vec<Packet>,
    /// The index in [`Self::packets`] of each of [`Self::keyframes`].
    pub keyframe_packets: Vec<usize>,
}

/// One video packet of the index.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Packet {
    /// Its presentation time as in the file (start time included), seconds.
    pub pts: f64,
    /// Where its bytes are in the file, when the demuxer says.
    pub pos: Option<u64>,
    /// How many bytes it has.
    pub size: u64,
}

/// Reads the packet index of the first video stream of `path`.
pub(super) async fn video_index(
    ffprobe: &str,
    path: &Path,
    start_time: f64,
) -> Result<VideoIndex, TaskError> {
    let args = [
        "-v",
        "error",
        "-select_streams",
        "V:0",
        "-show_entries",
        "packet=pts_time,duration_time,size,pos,flags",
        "-of",
        "csv=p=0",
        "-i",
    ]
    .into_iter()
    .map(OsString::from)
    .chain([path.as_os_str().to_owned()])
    .collect();
    let printed = run("ffprobe", ffprobe, args, path, "the video packet scan").await?;
    Ok(parse_packets(&printed.stdout, start_time))
}

fn parse_packets(csv: &str, start_time: f64) -> VideoIndex {
    let mut index = VideoIndex {
        keyframes: Vec::new(),
        end: 0.0,
        frame: 0.0,
        packets: Vec::new(),
        keyframe_packets: Vec::new(),
    };
    let mut keyframes = Vec::new();
    for line in csv.lines() {
        // pts_time, duration_time, size, pos, flags (ffprobe's order, whatever the request's).
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let number = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        let Some(pts) = number(0) else {
            continue;
        };
        let duration = number(1).unwrap_or(0.0);
        if fields.get(4).is_some_and(|f| f.starts_with('K')) {
            keyframes.push((pts - start_time, index.packets.len()));
        }
        index.end = index.end.max(pts - start_time + duration);
        index.frame = index.frame.max(duration);
        index.packets.push(Packet {
            pts,
            pos: fields.get(3).and_then(|v| v.parse().ok()),
            size: fields.get(2).and_then(|v| v.parse().ok()).unwrap_or(0),
        });
    }
    keyframes.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyframes.dedup_by(|b, a| a.0 == b.0);
    (index.keyframes, index.keyframe_packets) = keyframes.into_iter().unzip();
    index
}

/// How far an ffmpeg run got, from the last `out_time_us=` of its `-progress` report, seconds.
pub(super) fn progress_end(progress: &str) -> f64 {
    progress
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .next_back()
        .map_or(0.0, |us| us.max(0) as f64 / 1e6)
}

/// Decodes the whole first video stream (cover pictures excepted) through `filter`, with
/// ffmpeg's progress report on stdout and the filter's log on stderr.
pub(super) async fn whole_video(
    program: &str,
    path: &Path,
    filter: &str,
    what: &str,
) -> Result<Printed, TaskError> {
    let mut args = ffmpeg_args(["-progress", "pipe:1", "-an", "-sn", "-dn", "-i"]);
    args.push(path.as_os_str().to_owned());
    args.extend(["-map", "0:V:0", "-vf", filter, "-f", "null", "-"].map(OsString::from));
    run("ffmpeg", program, args, path, what).await
}

/// A product's data as the JSON its result stores.
pub(super) fn result_data<T: serde::Serialize>(
    product: &str,
    data: &T,
) -> Result<serde_json::Value, TaskError> {
    serde_json::to_value(data).map_err(|e| TaskError::Internal {
        message: format!("{product} data: {e}"),
    })
}

/// Fails when decoding stopped more than [`TRUNCATION_TOLERANCE_SECS`] short of the probed
/// duration: a cut file would otherwise finish with its header's duration.
///
/// [`TRUNCATION_TOLERANCE_SECS`]: super::TRUNCATION_TOLERANCE_SECS
pub(super) fn check_complete(decoded_secs: f64, duration_secs: f64) -> Result<(), TaskError> {
    if decoded_secs + super::TRUNCATION_TOLERANCE_SECS < duration_secs {
        return Err(TaskError::AnalysisFailed {
            message: format!(
                "decoded {decoded_secs:.1} s of a {duration_secs:.1} s asset: the file ends early or is damaged"
            ),
        });
    }
    Ok(())
}

/// Seconds rounded to the millisecond, as results store them.
pub(super) fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Pairs `start`/`end` markers of ffmpeg's detection log into intervals.
pub(super) fn intervals(log: &str, start_marker: &str, end_marker: &str) -> Vec<(f64, f64)> {
    let value = |line: &str, marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mut found = Vec::new();
    let mut open = None;
    for line in log.lines() {
        if let Some(start) = value(line, start_marker) {
            open = Some(start);
        }
        if let Some(end) = value(line, end_marker)
            && let Some(start) = open.take()
        {
            found.push((start, end));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_skip_cover_pictures_and_count_audio_tracks() {
        let json = r#"{"streams": [
            {"codec_type": "video", "disposition": {"attached_pic": 1}},
            {"codec_type": "audio", "disposition": {"attached_pic": 0}},
            {"codec_type": "audio"}],
            "format": {"start_time": "1.400000"}}"#;
        let streams = parse_streams(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            streams,
            Streams {
                video: false,
                audio_tracks: 2,
                start_time: 1.4,
                video_codec: None,
                container: String::new(),
                video_extradata: None,
            }
        );
    }

    #[test]
    fn extradata_is_read_from_ffprobe_hex_dumps() {
        // What ffprobe 5.1 printed for the avcC of a 1080p x264 stream.
        let dump = "\n00000000: 0164 0028 ffe1 001b 6764 0028 acd9 4078  .d.(....gd.(..@x\n\
            00000010: 0227 e5c0 4400 0003 0004 0000 0300 c83c  .'..D..........<\n\
            00000020: 60c6 5801 0004 68ef 8fcb fdf8 f800       `.X...h.......\n";
        let bytes = hex_dump(dump).unwrap_or_default();
        assert_eq!(bytes.len(), 46);
        assert_eq!(bytes[..4], [0x01, 0x64, 0x00, 0x28]);
        assert_eq!(bytes[44..], [0xf8, 0x00]);
        let json = format!(
            r#"{{"streams": [{{"codec_type": "video", "codec_name": "h264", "extradata": {}}}]}}"#,
            serde_json::to_string(dump).unwrap_or_default()
        );
        let streams = parse_streams(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(streams.video_extradata, Some(bytes));
        assert_eq!(hex_dump("00000000: 01zz  ..\n"), None);
        assert_eq!(hex_dump(""), None);
    }

    #[test]
    fn packets_give_keyframes_and_the_end_on_the_filter_time_line() {
        let csv = "1.000000,0.040000,900,48,K_\n1.040000,0.040000,30,948,__\nN/A,N/A,9,N/A,__\n\
            11.000000,0.040000,800,978,K_\n10.960000,0.040000,20,1778,__\n";
        let index = parse_packets(csv, 1.0);
        assert_eq!(index.keyframes, vec![0.0, 10.0]);
        assert_eq!(index.keyframe_packets, vec![0, 2]);
        assert_eq!(index.packets.len(), 4);
        assert_eq!(
            index.packets[1],
            Packet {
                pts: 1.04,
                pos: Some(948),
                size: 30
            }
        );
        assert!((index.end - 10.04).abs() < 1e-9, "{index:?}");
        assert!((index.frame - 0.04).abs() < 1e-9);
    }

    #[test]
    fn progress_gives_the_last_output_time() {
        let report = "out_time_us=85333\nprogress=continue\nout_time_us=N/A\n\
            out_time_us=20010667\nprogress=end\n";
        assert!((progress_end(report) - 20.010667).abs() < 1e-9);
        assert_eq!(progress_end("progress=end\n"), 0.0);
    }
}
