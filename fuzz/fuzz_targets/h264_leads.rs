//! The H.264 reference replay of adbreaks' lead copies (h264-reader's parameter set and slice
//! header parse, the list and marking replay, the cut to slice headers): it must return for
//! any bytes, without panicking, looping or allocating without bound.
//! Input: a 2-byte big-endian length and that many bytes of avcC, then access units, each
//! behind a 2-byte big-endian length.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (length, rest) = data.split_first_chunk::<2>()?;
    let length = usize::from(u16::from_be_bytes(*length)).min(rest.len());
    let (taken, rest) = rest.split_at(length);
    *data = rest;
    Some(taken)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some(avcc) = take(&mut data) else {
        return;
    };
    let mut units = Vec::new();
    while let Some(unit) = take(&mut data) {
        units.push(unit.to_vec());
    }
    let (left_out, cut) = task_media::analyze::adbreaks::fuzz_lead_copy(avcc, &units);
    assert!(left_out + cut <= units.len());
});
