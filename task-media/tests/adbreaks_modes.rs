//! Audio-first adbreaks against the full decode on fixtures with known gaps of every kind, the
//! accuracy of both, and truncation in both modes.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use task_media::analyze::adbreaks::{
    AdbreaksAnalyzer, AdbreaksData, AdbreaksMode, AdbreaksWork, Candidate,
};
use task_media::probe::FfprobeProber;

use support::*;

fn by_time(data: &AdbreaksData) -> Vec<Candidate> {
    let mut candidates = data.candidates.clone();
    candidates.sort_by(|a, b| a.time.total_cmp(&b.time));
    candidates
}

async fn both(path: &std::path::Path, seconds: f64) -> (AdbreaksData, AdbreaksData) {
    let (full, (first, _)) = both_with_work(path, seconds).await;
    (full, first)
}

/// Both modes, with the work of the audio-first one.
async fn both_with_work(
    path: &std::path::Path,
    seconds: f64,
) -> (AdbreaksData, (AdbreaksData, AdbreaksWork)) {
    let analyzer = AdbreaksAnalyzer::default();
    let full = analyzer
        .clone()
        .with_mode(AdbreaksMode::Full)
        .detect(path, seconds)
        .await
        .unwrap_or_else(|e| panic!("full analysis of {}: {e}", path.display()));
    let first = analyzer
        .with_mode(AdbreaksMode::AudioFirst)
        .detect_with_work(path, seconds)
        .await
        .unwrap_or_else(|e| panic!("audio-first analysis of {}: {e}", path.display()));
    (full, first)
}

/// The same candidates within 0.05 s (time and score), in the same order.
fn same_candidates(name: &str, full: &AdbreaksData, first: &AdbreaksData) {
    assert_eq!(
        full.candidates.len(),
        first.candidates.len(),
        "{name}: full {full:?} vs audio-first {first:?}"
    );
    for (f, a) in by_time(full).iter().zip(by_time(first).iter()) {
        assert!(
            (f.time - a.time).abs() <= 0.05 && (f.score - a.score).abs() <= 0.05,
            "{name}: full {f:?} vs audio-first {a:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_first_finds_what_the_full_decode_finds_and_both_find_the_real_gaps() {
    let mut results = Vec::new();
    let (mut dropped, mut widened) = (0, 0);
    for scene in &SCENES {
        let (full, (first, work)) = both_with_work(&scene_path(scene), scene.seconds).await;
        dropped += work.frames_dropped;
        widened += work.windows_widened;
        println!(
            "{}: full {:?}\n  audio-first {:?}\n  {} windows, {} widened",
            scene.name,
            by_time(&full),
            by_time(&first),
            work.windows,
            work.windows_widened
        );
        results.push((scene, full, first));
    }
    // The windows' leads lost their disposable pictures (x264's B-frames) in some scenes, so the
    // comparison covers decoding without them; and black cut by the narrow windows' edges
    // (straddling.mp4) made some windows be decoded again wide, so it covers widening too.
    assert!(dropped > 0, "no lead picture was dropped in any scene");
    println!("windows widened in all scenes: {widened}");
    assert!(widened > 0, "no window was widened in any scene");
    for (scene, full, first) in results {
        same_candidates(scene.name, &full, &first);
        let found: Vec<f64> = by_time(&first).iter().map(|c| c.time).collect();
        assert_eq!(
            found.len(),
            scene.expected.len(),
            "{}: expected {:?}, found {found:?}",
            scene.name,
            scene.expected
        );
        for (expected, time) in scene.expected.iter().zip(&found) {
            assert!(
                (expected - time).abs() <= 0.02,
                "{}: the gap at {expected} s was found at {time} s",
                scene.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_modes_agree_on_the_eleven_minute_fixtures() {
    for name in ["long-faststart.mp4", "long-moov-at-end.mp4"] {
        let (full, first) = both(&fixtures().path(name), 660.0).await;
        same_candidates(name, &full, &first);
        assert_eq!(first.candidates.len(), GAPS.len(), "{name}: {first:?}");
    }
}

/// Lead pictures are dropped by their time in the file: an MP4 whose time line starts at 3 s (an
/// empty edit) gives the same candidates in both modes, with pictures dropped (the silence at
/// 18 s of this scene is decoded from the keyframe where its first black ends, at 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mp4_whose_time_line_starts_late_agrees_in_both_modes() {
    let scene = scene("near-silence.mp4");
    let source = scene_path(scene);
    let late = source.with_file_name("near-silence-from-3s.mp4");
    if !late.exists() {
        let partial = source.with_file_name("near-silence-from-3s.partial.mp4");
        let mut command = Command::new("ffmpeg");
        command.args(["-v", "error", "-y", "-i"]).arg(&source);
        command
            .args(["-c", "copy", "-output_ts_offset", "3"])
            .arg(&partial);
        run(&mut command);
        std::fs::rename(&partial, &late).unwrap();
    }
    let (full, (first, work)) = both_with_work(&late, scene.seconds).await;
    same_candidates("near-silence-from-3s.mp4", &full, &first);
    assert_eq!(first.candidates.len(), scene.expected.len(), "{first:?}");
    assert!(work.frames_dropped > 0, "{work:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_is_detected_in_both_modes() {
    let cut = truncated_mkv();
    let probed = FfprobeProber::default().probe_file(&cut, 0).await.unwrap();
    for mode in [AdbreaksMode::Full, AdbreaksMode::AudioFirst] {
        let err = AdbreaksAnalyzer::default()
            .with_mode(mode)
            .detect(&cut, probed.duration_secs)
            .await
            .expect_err("half a file is not a complete analysis");
        assert_eq!(err.code(), "analysis_failed", "{mode:?}: {err:?}");
        assert!(
            err.to_string().contains("of a 60.0 s asset"),
            "{mode:?}: {err}"
        );
    }
    // The whole file passes, and a duration within the tolerance too.
    let whole = cut.with_file_name("whole.mkv");
    for seconds in [60.0, 60.9] {
        let data = AdbreaksAnalyzer::default()
            .detect(&whole, seconds)
            .await
            .unwrap();
        assert_eq!(data.candidates.len(), 2, "{data:?}");
    }
}
