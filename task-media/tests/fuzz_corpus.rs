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

/// The `h264_leads` seeds in the fuzz target's form: a 2-byte length and the avcC, then access
/// units behind 2-byte lengths.
fn lead_seed(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while let Some((length, tail)) = rest.split_first_chunk::<2>() {
        let length = usize::from(u16::from_be_bytes(*length)).min(tail.len());
        parts.push(tail[..length].to_vec());
        rest = &tail[length..];
    }
    let avcc = parts.remove(0);
    (avcc, parts)
}

#[test]
fn every_h264_leads_seed_replays_and_x264_b_frames_are_cut() {
    let dir = workspace_root().join("fuzz/corpus/h264_leads");
    let mut spared = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let (avcc, units) = lead_seed(&std::fs::read(&path).unwrap());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        spared.insert(
            name,
            task_media::analyze::adbreaks::fuzz_lead_copy(&avcc, &units),
        );
    }
    // 16 pictures, the last analysed: x264's B-frames used as references are cut, the others
    // left out; with four references nothing is sure enough to cut; without B-frames every
    // picture is needed.
    let veryfast = spared["veryfast"];
    assert!(veryfast.0 > 0 && veryfast.1 > 0, "{spared:?}");
    assert_eq!(spared["no-b"], (0, 0), "{spared:?}");
    assert!(spared["four-refs"].0 > 0, "{spared:?}");
}
