//! Small fixtures, one per codec and container layout, made with ffmpeg: three seconds of a
//! 64x36 picture at 5 frames per second with a tone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One codec fixture: its file name, the codecs ffprobe names, and how ffmpeg makes it.
#[derive(Debug, Clone, Copy)]
pub struct CodecFixture {
    pub name: &'static str,
    pub video: &'static str,
    pub audio: &'static str,
    /// The layout under test, for messages.
    pub what: &'static str,
    args: &'static [&'static str],
    rate: u32,
    channels: u32,
}

/// Frames per second of every codec fixture.
pub const FPS: f64 = 5.0;

const fn fixture(
    name: &'static str,
    video: &'static str,
    audio: &'static str,
    what: &'static str,
    rate: u32,
    channels: u32,
    args: &'static [&'static str],
) -> CodecFixture {
    CodecFixture {
        name,
        video,
        audio,
        what,
        args,
        rate,
        channels,
    }
}

/// Every codec fixture. libx265 is in Debian's ffmpeg 5.1, so HEVC is made, not skipped.
pub const CODECS: [CodecFixture; 20] = [
    fixture(
        "avc1.mp4",
        "h264",
        "aac",
        "H.264 as avc1",
        16000,
        1,
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    ),
    fixture(
        "avc3.mp4",
        "h264",
        "aac",
        "H.264 as avc3",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tag:v",
            "avc3",
            "-c:a",
            "aac",
        ],
    ),
    fixture(
        "hvc1.mp4",
        "hevc",
        "aac",
        "HEVC as hvc1",
        16000,
        1,
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-tag:v",
            "hvc1",
            "-c:a",
            "aac",
        ],
    ),
    fixture(
        "hev1.mp4",
        "hevc",
        "aac",
        "HEVC as hev1",
        16000,
        1,
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-tag:v",
            "hev1",
            "-c:a",
            "aac",
        ],
    ),
    fixture(
        "mp4v.mp4",
        "mpeg4",
        "aac",
        "MPEG-4 Part 2 as mp4v",
        16000,
        1,
        &["-c:v", "mpeg4", "-c:a", "aac"],
    ),
    fixture(
        "opus.mp4",
        "h264",
        "opus",
        "Opus in MP4",
        48000,
        2,
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libopus"],
    ),
    fixture(
        "aac-v1.mov",
        "h264",
        "aac",
        "AAC in a version-1 QuickTime sound description",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "aac-6ch.mov",
        "h264",
        "aac",
        "six-channel AAC in MOV",
        48000,
        6,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "aac-v2.mov",
        "h264",
        "aac",
        "AAC at 96 kHz in a version-2 sound description",
        96000,
        2,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "sowt.mov",
        "h264",
        "pcm_s16le",
        "PCM as sowt",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s16le",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "twos.mov",
        "h264",
        "pcm_s16be",
        "PCM as twos",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s16be",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "s8.mov",
        "h264",
        "pcm_s8",
        "8-bit PCM as sowt",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s8",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "raw.mov",
        "h264",
        "pcm_u8",
        "unsigned PCM as raw",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_u8",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "in24-le.mov",
        "h264",
        "pcm_s24le",
        "PCM as in24 with enda",
        16000,
        2,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s24le",
            "-ac",
            "2",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "in24-be.mov",
        "h264",
        "pcm_s24be",
        "PCM as in24",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s24be",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "in32.mov",
        "h264",
        "pcm_s32be",
        "PCM as in32",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s32be",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "fl32.mov",
        "h264",
        "pcm_f32be",
        "float PCM as fl32",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_f32be",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "fl64-le.mov",
        "h264",
        "pcm_f64le",
        "float PCM as fl64 with enda",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_f64le",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "lpcm.mov",
        "h264",
        "pcm_s24le",
        "PCM at 96 kHz as lpcm (version 2)",
        96000,
        2,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_s24le",
            "-f",
            "mov",
        ],
    ),
    fixture(
        "ulaw.mov",
        "h264",
        "pcm_mulaw",
        "mu-law as ulaw",
        16000,
        1,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_mulaw",
            "-f",
            "mov",
        ],
    ),
];

fn make(fixture: &CodecFixture, out: &Path) {
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y", "-f", "lavfi", "-i"]);
    command.arg(format!("testsrc=size=64x36:rate={FPS}:duration=3"));
    command.args(["-f", "lavfi", "-i"]);
    command.arg(format!(
        "sine=frequency=440:sample_rate={}:duration=3",
        fixture.rate
    ));
    command.args(["-ac", &fixture.channels.to_string()]);
    command.args(fixture.args);
    command.arg(out);
    super::run(&mut command);
}

/// The directory of codec fixtures, made once per run (cached under target/ across runs).
pub fn codec_fixtures() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = super::workspace_root().join("target/media-fixtures/codecs-v1");
        let done = dir.join(".complete");
        if !done.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            for fixture in &CODECS {
                make(fixture, &dir.join(fixture.name));
            }
            std::fs::write(&done, b"ok").unwrap();
        }
        dir
    })
}
