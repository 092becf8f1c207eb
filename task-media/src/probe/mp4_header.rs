//! The synchronous parse of an MP4/MOV header (`ftyp` and `moov`): the box tree checked by
//! [`super::boxes`], the tracks described by [`super::tracks`], and the movie header and
//! sample tables read by the `mp4` crate from the rewritten boxes.
//!
//! This is CPU work over a buffer already in memory: callers on an async runtime run it with
//! [`super::Mp4Prober`], which moves it to a blocking thread under a deadline.

use std::io::Cursor;

use task_core::error::TaskError;

use super::boxes::{self, BoxNode};
use super::{Mp4Verdict, ProbeOutput, StreamInfo, probe_failed, tracks};

/// One top-level box and the buffer holding it.
#[derive(Clone, Copy)]
pub(super) struct TopBox<'a> {
    pub node: &'a BoxNode,
    pub buf: &'a [u8],
}

/// Parses a buffer of top-level boxes holding at least `ftyp` and `moov` (other boxes, such
/// as `free` or a short `mdat`, are passed over), from an object of `object_size` bytes.
///
/// `Ok(Ok(output))` is what the container says (before [`ProbeOutput::validated`]);
/// `Ok(Err(verdict))` means this parser cannot read it and another prober should try;
/// `Err` is a `probe_failed` for a file that no prober should accept (its sample tables point
/// past the end of the object). Never panics, never loops: hostile input fails.
pub fn parse_header_bytes(
    bytes: &[u8],
    object_size: u64,
) -> Result<Result<ProbeOutput, Mp4Verdict>, TaskError> {
    let tree = match boxes::parse(bytes, 0) {
        Ok(tree) => tree,
        Err(reason) => return Ok(Err(Mp4Verdict::Unreadable(reason))),
    };
    let find = |kind: &[u8; 4]| {
        tree.iter()
            .find(|n| &n.kind == kind)
            .map(|node| TopBox { node, buf: bytes })
    };
    let Some(ftyp) = find(b"ftyp") else {
        return Ok(Err(Mp4Verdict::Unreadable("no ftyp box".into())));
    };
    let Some(moov) = find(b"moov") else {
        return Ok(Err(Mp4Verdict::Unreadable("no moov box".into())));
    };
    if tree.iter().any(|n| &n.kind == b"moof") {
        return Ok(Err(Mp4Verdict::Fragmented));
    }
    parse_boxes(ftyp, moov, object_size, bytes.len() as u64)
}

/// Parses `ftyp` and `moov` (each walked already), read from an object of `object_size` bytes
/// after reading `bytes_read` of it.
pub(super) fn parse_boxes(
    ftyp: TopBox<'_>,
    moov: TopBox<'_>,
    object_size: u64,
    bytes_read: u64,
) -> Result<Result<ProbeOutput, Mp4Verdict>, TaskError> {
    if moov.node.child(b"mvex").is_some() {
        return Ok(Err(Mp4Verdict::Fragmented));
    }
    let facts = tracks::read(moov.node, moov.buf);
    let mut header = Vec::with_capacity(ftyp.node.size + moov.node.size);
    boxes::emit(ftyp.node, ftyp.buf, &mut header);
    boxes::emit(moov.node, moov.buf, &mut header);
    let length = header.len() as u64;
    // The checked tree keeps the mp4 crate away from the sizes that make it loop; a panic on
    // some other malformed field must fail the probe, not the worker.
    let parsed = std::panic::catch_unwind(move || {
        ::mp4::Mp4Reader::read_header(Cursor::new(header), length)
    });
    let parsed = match parsed {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(e)) => return Ok(Err(Mp4Verdict::Unreadable(format!("the mp4 reader: {e}")))),
        Err(_) => {
            return Ok(Err(Mp4Verdict::Unreadable(
                "the mp4 reader panicked on a malformed moov box".into(),
            )));
        }
    };
    let mvhd = &parsed.moov.mvhd;
    if mvhd.timescale == 0 {
        return Ok(Err(Mp4Verdict::Unreadable(
            "the movie header has a zero timescale".into(),
        )));
    }
    let duration_secs = mvhd.duration as f64 / f64::from(mvhd.timescale);
    let mut ids: Vec<u32> = parsed.tracks().keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        if let Some(track) = parsed.tracks().get(&id) {
            check_chunks(track, object_size)?;
        }
    }
    let streams: Vec<StreamInfo> = facts.into_iter().map(|f| f.stream).collect();
    Ok(Ok(ProbeOutput {
        prober: "mp4".into(),
        format: String::from_utf8_lossy(&parsed.major_brand().value)
            .trim()
            .to_owned(),
        duration_secs,
        streams,
        bytes_read,
    }))
}

/// Every chunk of the sample tables must start inside the object: a faststart file cut short
/// keeps an intact `moov` that points past its real end.
fn check_chunks(track: &::mp4::Mp4Track, size: u64) -> Result<(), TaskError> {
    let stbl = &track.trak.mdia.minf.stbl;
    let stco = stbl
        .stco
        .iter()
        .flat_map(|b| b.entries.iter().map(|o| u64::from(*o)));
    let co64 = stbl.co64.iter().flat_map(|b| b.entries.iter().copied());
    if let Some(last) = stco.chain(co64).max().filter(|last| *last >= size) {
        return Err(probe_failed(format!(
            "track {} has samples at byte {last}, past the end of the {size}-byte object",
            track.track_id()
        )));
    }
    Ok(())
}
