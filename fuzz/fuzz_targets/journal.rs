//! The sled store's journal as a crash or a crafted file leaves it: frame bodies decoded
//! directly (past the checksum a random input would fail), and whole segments replayed, both
//! raw and re-framed with valid checksums so the decoder sees every body. Never a panic, never
//! an allocation the input's size does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use task_store_sled::fuzzing;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::journal_frame_body(data);
    let dir = std::env::temp_dir().join(format!("journal-fuzz-{}", std::process::id()));
    let _ = fuzzing::replay_segment(&dir, data);
    // Split the input into bodies at 0xFF bytes and frame each with a valid checksum.
    let mut segment = Vec::new();
    for body in data.split(|b| *b == 0xFF) {
        segment.extend(fuzzing::frame(body));
    }
    let _ = fuzzing::replay_segment(&dir, &segment);
});
