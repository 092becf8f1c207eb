//! The fingerprint product against sound whose shared part is known by construction: two assets
//! that share a 40 s segment at different offsets, between sounds of their own.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

use task_fingerprint::{MatchSettings, shared_segments};
use task_media::analyze::fingerprint::FingerprintAnalyzer;

use support::{audio, run};

/// Two assets sharing 40 s at `a_at` and `b_at`: the segment is found within 0.5 s at all four
/// ends.
async fn shared_40_s(dir: &Path, seeds: [u32; 5], a_at: f64, b_at: f64) {
    let [shared, a1, a2, b1, b2] = seeds;
    let a = audio(dir, "a.m4a", &[(a1, a_at), (shared, 40.0), (a2, 30.0)]);
    let b = audio(dir, "b.m4a", &[(b1, b_at), (shared, 40.0), (b2, 10.0)]);
    let analyzer = FingerprintAnalyzer::default();
    let a = analyzer.fingerprint(&a, a_at + 70.0).await.unwrap();
    let b = analyzer.fingerprint(&b, b_at + 50.0).await.unwrap();
    assert!(
        a.items as f64 > (a_at + 70.0) * 7.5,
        "{} items for {} s",
        a.items,
        a_at + 70.0
    );
    let (a, b) = (a.decode().unwrap(), b.decode().unwrap());
    let found = shared_segments(&a, &b, &MatchSettings::default()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let s = &found[0];
    eprintln!("found {s:?}");
    for (what, got, want) in [
        ("start", s.start, a_at),
        ("end", s.end, a_at + 40.0),
        ("against start", s.against_start, b_at),
        ("against end", s.against_end, b_at + 40.0),
    ] {
        assert!(
            (got - want).abs() <= 0.5,
            "{what}: {got} s, expected {want} s: {s:?}"
        );
    }
    assert!(s.confidence > 0.5, "{s:?}");
}

#[tokio::test]
async fn a_shared_40_s_segment_is_found_within_half_a_second_at_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    shared_40_s(dir.path(), [42, 1, 2, 3, 4], 20.0, 55.0).await;
}

#[tokio::test]
async fn the_same_holds_at_other_offsets_with_other_sound() {
    let dir = tempfile::tempdir().unwrap();
    shared_40_s(dir.path(), [77, 6, 7, 8, 9], 33.3, 7.7).await;
}

#[tokio::test]
async fn unrelated_sound_shares_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let analyzer = FingerprintAnalyzer::default();
    let a = audio(dir.path(), "a.m4a", &[(10, 60.0)]);
    let c = audio(dir.path(), "c.m4a", &[(11, 60.0)]);
    let a = analyzer
        .fingerprint(&a, 60.0)
        .await
        .unwrap()
        .decode()
        .unwrap();
    let c = analyzer
        .fingerprint(&c, 60.0)
        .await
        .unwrap()
        .decode()
        .unwrap();
    let none = shared_segments(&a, &c, &MatchSettings::default()).unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn no_audio_or_a_truncated_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let silent_video = dir.path().join("video.mp4");
    let mut command = Command::new("ffmpeg");
    command.args([
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=d=2:s=64x36",
    ]);
    run(command.arg(&silent_video));
    let err = FingerprintAnalyzer::default()
        .fingerprint(&silent_video, 2.0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "analysis_failed");
    assert!(err.to_string().contains("no audio track"), "{err}");

    let full = audio(dir.path(), "full.mkv", &[(1, 30.0)]);
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&full, &bytes[..bytes.len() / 2]).unwrap();
    let err = FingerprintAnalyzer::default()
        .fingerprint(&full, 30.0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("of a 30.0 s asset"), "{err}");
}
