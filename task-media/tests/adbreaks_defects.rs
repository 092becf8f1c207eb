//! The adbreaks defects of issue 14, each against the default analyzer (these tests failed
//! before the fixes): a truncated file accepted as complete, and a gap that plays on a second
//! audio track taken for silence.
#![allow(clippy::unwrap_used)]

mod support;

use task_media::analyze::adbreaks::AdbreaksAnalyzer;
use task_media::probe::FfprobeProber;

use support::*;

/// Failed before: the half file finished with the header's 60 s and only the gap of its first
/// half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_mkv_fails_naming_what_was_decoded() {
    let cut = truncated_mkv();
    let probed = FfprobeProber::default().probe_file(&cut, 0).await.unwrap();
    assert!(
        (probed.duration_secs - 60.0).abs() < 0.1,
        "the header still says 60 s: {probed:?}"
    );
    let err = AdbreaksAnalyzer::default()
        .detect(&cut, probed.duration_secs)
        .await
        .expect_err("half a file is not a complete analysis");
    assert_eq!(err.code(), "analysis_failed", "{err:?}");
    let message = err.to_string();
    assert!(message.contains("s of a 60.0 s asset"), "{message}");
    assert!(
        message.contains("the file ends early or is damaged"),
        "{message}"
    );
    println!("{message}");
}

/// Failed before: only the default audio track was analysed, so the gap at 8-10 s, silent on
/// the first track but playing on the second, was a candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_silent_only_if_silent_on_every_audio_track() {
    let scene = scene("two-tracks.mp4");
    let data = AdbreaksAnalyzer::default()
        .detect(&scene_path(scene), scene.seconds)
        .await
        .unwrap();
    let times: Vec<f64> = data.candidates.iter().map(|c| c.time).collect();
    assert_eq!(
        times.len(),
        1,
        "only the gap silent on both tracks: {data:?}"
    );
    assert!((times[0] - 19.0).abs() <= 0.02, "{data:?}");
}
