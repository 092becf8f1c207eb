//! MP4 headers that made the `mp4` crate loop forever (a zero-size box inside `moov`) must fail
//! promptly with a clear `probe_failed`, and never block the async runtime.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::path::Path;
use task_core::error::TaskError;
use task_media::asset_url::{AssetLocator, S3Settings};
use task_media::probe::{FfprobeProber, Mp4Prober, ProbeOutput, Prober};
use task_media::probe_step::{ProbeStep, ProberChoice};

use support::*;

/// How long a probe may take before the test calls it hung.
const HUNG: Duration = Duration::from_secs(30);

/// A faststart copy of the small H.264 + AAC fixture, made once per run: the tests of this
/// file run in parallel, and one must never read the copy another is still writing.
fn faststart() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let out = codec_fixtures().join("avc1-faststart.mp4");
            if !out.exists() {
                // Written aside, then renamed: the copy appears whole or not at all.
                let partial = out.with_extension(format!("{}.part.mp4", std::process::id()));
                let mut command = std::process::Command::new("ffmpeg");
                command.args(["-v", "error", "-y", "-i"]);
                command.arg(codec_fixtures().join("avc1.mp4"));
                command.args(["-c", "copy", "-movflags", "+faststart"]);
                command.arg(&partial);
                assert!(command.status().unwrap().success());
                std::fs::rename(&partial, &out).unwrap();
            }
            std::fs::read(out).unwrap()
        })
        .clone()
}

/// The offsets of the top-level boxes and of `moov`'s children.
fn moov_children(bytes: &[u8]) -> (usize, Vec<(usize, [u8; 4])>) {
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut at = 0;
    while &bytes[at + 4..at + 8] != b"moov" {
        at += be(at);
    }
    let (moov, end) = (at, at + be(at));
    let mut children = Vec::new();
    let mut child = moov + 8;
    while child < end {
        children.push((child, bytes[child + 4..child + 8].try_into().unwrap()));
        child += be(child);
    }
    (moov, children)
}

/// Runs the MP4 prober on its own runtime in its own thread: a prober that loops on the
/// runtime cannot hang the test, which then fails instead.
fn probe_apart(bytes: Vec<u8>, step: bool) -> (Result<ProbeOutput, TaskError>, Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(async {
            let locator = Arc::new(AssetLocator::new(S3Settings::default(), None));
            let size = bytes.len() as u64;
            locator
                .memory()
                .put(&Path::from("hostile.mp4"), bytes.into())
                .await
                .unwrap();
            let location = locator.locate("memory:///hostile.mp4").unwrap();
            let started = Instant::now();
            let result = if step {
                ProbeStep::new(locator, FfprobeProber::default(), ProberChoice::Auto)
                    .probe(&location, size)
                    .await
            } else {
                Mp4Prober.probe(&location, size).await
            };
            (result, started.elapsed())
        });
        let _ = tx.send(result);
    });
    rx.recv_timeout(HUNG)
        .unwrap_or_else(|_| panic!("the probe did not answer within {HUNG:?}: it hangs"))
}

#[test]
fn a_zero_size_box_inside_moov_fails_promptly() {
    let original = faststart();
    let (_, children) = moov_children(&original);
    for kind in [*b"udta", *b"trak", *b"mvhd"] {
        let (at, _) = *children.iter().find(|(_, k)| *k == kind).unwrap();
        let mut bytes = original.clone();
        bytes[at..at + 4].copy_from_slice(&0u32.to_be_bytes());
        let (result, took) = probe_apart(bytes, false);
        let err = result.unwrap_err();
        assert_eq!(err.code(), "probe_failed", "{err:?}");
        let name = String::from_utf8_lossy(&kind);
        assert_eq!(
            err.to_string(),
            format!(
                "Probe failed with error = box moov/{name} at byte {at} has size 0 (only a \
                 top-level box may extend to the end of the file)"
            )
        );
        assert!(took < Duration::from_secs(2), "{name}: took {took:?}");
    }
}

#[test]
fn a_zeroed_moov_body_fails_promptly() {
    let mut bytes = faststart();
    let (moov, _) = moov_children(&bytes);
    let size = u32::from_be_bytes(bytes[moov..moov + 4].try_into().unwrap()) as usize;
    bytes[moov + 8..moov + size].fill(0);
    let (result, took) = probe_apart(bytes.clone(), false);
    let err = result.unwrap_err();
    assert_eq!(err.code(), "probe_failed");
    assert!(
        err.to_string().contains(&format!(
            "box moov/\\x00\\x00\\x00\\x00 at byte {}",
            moov + 8
        )),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The step hands it to ffprobe, which cannot read it either: both reasons are given.
    let (result, _) = probe_apart(bytes, true);
    let err = result.unwrap_err();
    assert_eq!(err.code(), "probe_failed", "{err:?}");
    assert!(
        err.to_string()
            .contains("the MP4 prober could not read it either: box moov/"),
        "{err}"
    );
}

/// ffmpeg reads a zero-size box inside moov as reaching the end of its parent: the step falls
/// back to ffprobe and gets the real facts.
#[test]
fn the_step_falls_back_to_ffprobe_when_the_mp4_prober_refuses_a_layout() {
    let mut bytes = faststart();
    let (_, children) = moov_children(&bytes);
    let (at, _) = *children.iter().rev().find(|(_, k)| k == b"udta").unwrap();
    bytes[at..at + 4].copy_from_slice(&0u32.to_be_bytes());
    let (result, _) = probe_apart(bytes, true);
    let output = result.unwrap();
    assert_eq!(output.prober, "ffprobe");
    assert!((output.duration_secs - 3.0).abs() < 0.25, "{output:?}");
}
