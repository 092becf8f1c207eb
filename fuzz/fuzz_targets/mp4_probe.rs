//! The pure parse of an MP4/MOV header buffer: it must return (an output, a verdict or
//! probe_failed) for any bytes, without panicking, looping or allocating without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // An object larger than the buffer, as when moov comes before a large mdat.
    let object_size = data.len() as u64 + 1_000_000;
    if let Ok(Ok(output)) = task_media::probe::parse_header_bytes(data, object_size) {
        assert_eq!(output.prober, "mp4");
        assert!(output.bytes_read <= data.len() as u64);
    }
});
