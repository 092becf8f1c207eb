//! Both probers on one fixture per codec and container layout: the MP4 prober must read each
//! itself and say what ffprobe says; the probe step must choose its prober by the first bytes,
//! not the name.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use task_media::asset_url::{AssetLocation, AssetLocator, S3Settings};
use task_media::probe::{FfprobeProber, Mp4Prober, ProbeOutput, Prober, StreamKind};
use task_media::probe_step::{ProbeStep, ProberChoice};

use support::*;

async fn stored(locator: &AssetLocator, key: &str, bytes: Vec<u8>) -> (AssetLocation, u64) {
    let size = bytes.len() as u64;
    locator
        .memory()
        .put(&Path::from(key), bytes.into())
        .await
        .unwrap();
    (locator.locate(&format!("memory:///{key}")).unwrap(), size)
}

fn assert_same_facts(what: &str, ours: &ProbeOutput, theirs: &ProbeOutput) {
    let frame = 1.0 / FPS;
    assert!(
        (ours.duration_secs - theirs.duration_secs).abs() <= frame,
        "{what}: duration {} vs ffprobe's {}",
        ours.duration_secs,
        theirs.duration_secs
    );
    assert_eq!(ours.streams, theirs.streams, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mp4_prober_names_codecs_as_ffprobe_does() {
    let dir = codec_fixtures();
    let locator = AssetLocator::new(S3Settings::default(), None);
    let mut failures = Vec::new();
    for fixture in CODECS {
        let bytes = std::fs::read(dir.join(fixture.name)).unwrap();
        let (location, size) = stored(&locator, fixture.name, bytes).await;
        let theirs = FfprobeProber::default()
            .probe(&location, size)
            .await
            .unwrap();
        let codecs: Vec<&str> = theirs.streams.iter().map(|s| s.codec.as_str()).collect();
        assert_eq!(codecs, [fixture.video, fixture.audio], "{}", fixture.name);
        match Mp4Prober.probe(&location, size).await {
            Ok(ours) => {
                assert_eq!(ours.prober, "mp4");
                assert_eq!(ours.streams[0].kind, StreamKind::Video);
                if ours.streams != theirs.streams
                    || (ours.duration_secs - theirs.duration_secs).abs() > 1.0 / FPS
                {
                    failures.push(format!(
                        "{} ({}): ours {ours:?}\n  ffprobe {theirs:?}",
                        fixture.name, fixture.what
                    ));
                }
                assert_same_facts(fixture.what, &ours, &theirs);
            }
            Err(err) => failures.push(format!("{} ({}): {err}", fixture.name, fixture.what)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// ffmpeg's mov muxer writes AAC in a version-1 sound description, which the mp4 crate reads
/// as version 0 and fails on ("mp4a box contains a box with a larger size than it").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quicktime_aac_is_read_by_the_mp4_prober() {
    let locator = Arc::new(AssetLocator::new(S3Settings::default(), None));
    for name in ["aac-v1.mov", "aac-v2.mov"] {
        let bytes = std::fs::read(codec_fixtures().join(name)).unwrap();
        let (location, size) = stored(&locator, name, bytes).await;
        let output = Mp4Prober.probe(&location, size).await.unwrap();
        assert_eq!(output.prober, "mp4");
        assert!((output.duration_secs - 3.0).abs() < 0.25, "{output:?}");
        let step = ProbeStep::new(
            locator.clone(),
            FfprobeProber::default(),
            ProberChoice::Auto,
        );
        assert_eq!(step.probe(&location, size).await.unwrap().prober, "mp4");
    }
}

/// The container is recognised by its first bytes: an MKV named `.mp4` goes to ffprobe, an
/// MP4 named `.bin` (or with no extension) to the MP4 prober.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_is_sniffed_not_guessed_from_the_name() {
    let scratch = tempfile::tempdir().unwrap();
    let mkv = scratch.path().join("film.mkv");
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-v", "error", "-y", "-f", "lavfi", "-i"]);
    command.args(["testsrc=size=64x36:rate=5:duration=3", "-c:v", "libx264"]);
    command.args(["-preset", "ultrafast", "-f", "matroska"]);
    command.arg(&mkv);
    let status = command.status().unwrap();
    assert!(status.success());
    let locator = Arc::new(AssetLocator::new(S3Settings::default(), None));
    let step = ProbeStep::new(
        locator.clone(),
        FfprobeProber::default(),
        ProberChoice::Auto,
    );
    let (location, size) = stored(&locator, "film.mp4", std::fs::read(&mkv).unwrap()).await;
    let output = step.probe(&location, size).await.unwrap();
    assert_eq!(output.prober, "ffprobe");
    assert!(output.format.contains("matroska"), "{output:?}");
    assert!((output.duration_secs - 3.0).abs() < 0.25, "{output:?}");

    let mp4 = std::fs::read(codec_fixtures().join("avc1.mp4")).unwrap();
    for name in ["film.bin", "film"] {
        let (location, size) = stored(&locator, name, mp4.clone()).await;
        let output = step.probe(&location, size).await.unwrap();
        assert_eq!(output.prober, "mp4", "{name}");
    }
}
