//! The scenes product against content whose shots are known by construction: solid colours and
//! test patterns (one of them moving) cut at known times, with a dissolve between two of them.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use task_media::analyze::scenes::{ScenesAnalyzer, ScenesData};

use support::run;

const FPS: f64 = 25.0;
/// The hard cuts of [`shots_fixture`], seconds.
const HARD_CUTS: [f64; 4] = [3.0, 6.0, 9.0, 16.0];
const DURATION: f64 = 19.0;

/// 19 s at 25 fps: red 0-3, moving testsrc2 3-6, blue 6-9, SMPTE bars 9-13 dissolving (xfade,
/// 1 s) into green 12-16, testsrc 16-19. Hard cuts at 3, 6, 9 and 16 s.
fn shots_fixture(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let sources = [
        "color=c=red:s=320x180:r=25:d=3",
        "testsrc2=s=320x180:r=25:d=3",
        "color=c=blue:s=320x180:r=25:d=3",
        "smptebars=s=320x180:r=25:d=4",
        "color=c=green:s=320x180:r=25:d=4",
        "testsrc=s=320x180:r=25:d=3",
    ];
    let sources = sources.map(String::from);
    support::lavfi_video(
        &path,
        &sources,
        "[3][4]xfade=transition=fade:duration=1:offset=3[x];\
         [0][1][2][x][5]concat=n=5:v=1:a=0,format=yuv420p[v]",
    );
    path
}

async fn detect(path: &Path, duration: f64) -> ScenesData {
    ScenesAnalyzer::default()
        .detect(path, duration)
        .await
        .unwrap_or_else(|e| panic!("scenes of {}: {e}", path.display()))
}

fn assert_hard_cuts(data: &ScenesData) {
    let times: Vec<f64> = data.cuts.iter().map(|c| c.time).collect();
    assert_eq!(
        times.len(),
        HARD_CUTS.len(),
        "one cut per hard cut, none inside a shot or the dissolve: {data:?}"
    );
    for (found, truth) in times.iter().zip(HARD_CUTS) {
        assert!(
            (found - truth).abs() <= 1.0 / FPS + 1e-9,
            "cut at {found} s, expected {truth} s within a frame: {data:?}"
        );
    }
    assert!(data.cuts.iter().all(|c| c.score >= data.threshold));
    let mut bounds = vec![0.0];
    bounds.extend(&times);
    bounds.push(DURATION);
    let expected: Vec<[f64; 2]> = bounds.windows(2).map(|w| [w[0], w[1]]).collect();
    assert_eq!(data.shots, expected);
}

#[tokio::test]
async fn hard_cuts_are_found_within_a_frame_and_nothing_inside_shots_or_the_dissolve() {
    let dir = tempfile::tempdir().unwrap();
    let path = shots_fixture(dir.path(), "shots.mp4");
    let data = detect(&path, DURATION).await;
    assert_hard_cuts(&data);
    assert_eq!(data.duration_secs, DURATION);
}

#[tokio::test]
async fn cut_times_count_from_the_container_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let source = shots_fixture(dir.path(), "shots.mp4");
    let late = dir.path().join("late.mp4");
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y", "-i"]).arg(&source);
    run(command
        .args(["-c", "copy", "-output_ts_offset", "3"])
        .arg(&late));
    assert_hard_cuts(&detect(&late, DURATION).await);
}

#[tokio::test]
async fn a_truncated_file_fails_and_a_file_without_video_too() {
    let dir = tempfile::tempdir().unwrap();
    let source = shots_fixture(dir.path(), "shots.mp4");
    let mkv = dir.path().join("shots.mkv");
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y", "-i"]).arg(&source);
    run(command.args(["-c", "copy"]).arg(&mkv));
    let bytes = std::fs::read(&mkv).unwrap();
    std::fs::write(&mkv, &bytes[..bytes.len() / 2]).unwrap();
    let err = ScenesAnalyzer::default()
        .detect(&mkv, DURATION)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "analysis_failed");
    assert!(err.to_string().contains("of a 19.0 s asset"), "{err}");

    let audio = dir.path().join("tone.m4a");
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=2"]);
    run(command.arg(&audio));
    let err = ScenesAnalyzer::default()
        .detect(&audio, 2.0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "analysis_failed");
    assert!(err.to_string().contains("no video stream"), "{err}");
}
