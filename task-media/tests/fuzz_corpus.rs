//! Every committed seed of the `mp4_probe` fuzz target (fuzz/corpus/mp4_probe, made by
//! fuzz/make_seeds.py, plus whatever fuzzing found) goes through the same parse on stable
//! `cargo test`: each must answer within the deadline and without panicking.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::mpsc;

use task_media::probe::{Mp4Verdict, PARSE_DEADLINE, parse_header_bytes};

use support::workspace_root;

#[test]
fn every_mp4_probe_seed_parses_within_the_deadline() {
    let dir = workspace_root().join("fuzz/corpus/mp4_probe");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 10,
        "{} seeds in {}",
        seeds.len(),
        dir.display()
    );
    for seed in seeds {
        let bytes = std::fs::read(&seed).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let size = bytes.len() as u64 + 1_000_000;
            let _ = tx.send(parse_header_bytes(&bytes, size));
        });
        let name = seed.file_name().unwrap().to_string_lossy().into_owned();
        let answer = rx
            .recv_timeout(PARSE_DEADLINE)
            .unwrap_or_else(|_| panic!("{name}: no answer within {PARSE_DEADLINE:?}"));
        if name.starts_with("freeze-") {
            match answer {
                Ok(Err(Mp4Verdict::Unreadable(reason))) => {
                    assert!(reason.contains("has size 0"), "{name}: {reason}")
                }
                other => panic!("{name}: {other:?}"),
            }
        } else if name == "fragmented.mp4" {
            assert_eq!(answer, Ok(Err(Mp4Verdict::Fragmented)), "{name}");
        } else if !name.starts_with("crash-") && !name.starts_with("timeout-") {
            let output = answer.unwrap().unwrap_or_else(|v| panic!("{name}: {v:?}"));
            assert!(output.duration_secs > 1.5, "{name}: {output:?}");
        }
    }
}
