//! A Matroska file of one H.264 track, written block by block: what a window's lead copy is
//! (ffmpeg reads it back with the blocks' times as presentation times, in microseconds).
//!
//! Written here rather than by an ffmpeg stream copy because some pictures are cut down to
//! their slice headers ([`super::h264::Parser::headers_only`]), which no bitstream filter does;
//! the format needs a dozen elements.

use std::io::{self, Write};

/// One picture to write.
pub(crate) struct Block<'a> {
    /// Presentation time as in the asset, microseconds (not negative).
    pub micros: u64,
    /// A keyframe (where decoding may start).
    pub keyframe: bool,
    /// The access unit, in MP4 form.
    pub data: &'a [u8],
}

/// An element: its ID bytes, then its size as an 8-byte EBML number, then its body.
fn element(out: &mut Vec<u8>, id: &[u8], body: &[u8]) {
    out.extend_from_slice(id);
    let size = (body.len() as u64) | (1 << 56);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(body);
}

fn unsigned(out: &mut Vec<u8>, id: &[u8], value: u64) {
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    element(out, id, &bytes[first..]);
}

/// Writes the header: the EBML header, an open-ended segment, its info and the track.
pub(crate) fn header(out: &mut impl Write, avcc: &[u8]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(256 + avcc.len());
    let mut ebml = Vec::new();
    unsigned(&mut ebml, &[0x42, 0x86], 1); // EBMLVersion
    unsigned(&mut ebml, &[0x42, 0xf7], 1); // EBMLReadVersion
    unsigned(&mut ebml, &[0x42, 0xf2], 4); // EBMLMaxIDLength
    unsigned(&mut ebml, &[0x42, 0xf3], 8); // EBMLMaxSizeLength
    element(&mut ebml, &[0x42, 0x82], b"matroska"); // DocType
    unsigned(&mut ebml, &[0x42, 0x87], 2); // DocTypeVersion
    unsigned(&mut ebml, &[0x42, 0x85], 2); // DocTypeReadVersion
    element(&mut bytes, &[0x1a, 0x45, 0xdf, 0xa3], &ebml);
    // Segment of unknown size: clusters follow until the end of the file.
    bytes.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    let mut info = Vec::new();
    unsigned(&mut info, &[0x2a, 0xd7, 0xb1], 1000); // TimestampScale: microseconds
    element(&mut info, &[0x4d, 0x80], b"task-media"); // MuxingApp
    element(&mut info, &[0x57, 0x41], b"task-media"); // WritingApp
    element(&mut bytes, &[0x15, 0x49, 0xa9, 0x66], &info);
    let mut track = Vec::new();
    unsigned(&mut track, &[0xd7], 1); // TrackNumber
    unsigned(&mut track, &[0x73, 0xc5], 1); // TrackUID
    unsigned(&mut track, &[0x83], 1); // TrackType: video
    element(&mut track, &[0x86], b"V_MPEG4/ISO/AVC"); // CodecID
    element(&mut track, &[0x63, 0xa2], avcc); // CodecPrivate
    let mut tracks = Vec::new();
    element(&mut tracks, &[0xae], &track);
    element(&mut bytes, &[0x16, 0x54, 0xae, 0x6b], &tracks);
    out.write_all(&bytes)
}

/// Writes `block` as a cluster of its own (its time in the cluster's, so any time fits).
pub(crate) fn block(out: &mut impl Write, block: &Block<'_>) -> io::Result<()> {
    let mut simple = Vec::with_capacity(block.data.len() + 4);
    // Track 1, a relative time of 0, the keyframe flag.
    simple.extend_from_slice(&[0x81, 0, 0, if block.keyframe { 0x80 } else { 0 }]);
    simple.extend_from_slice(block.data);
    let mut cluster = Vec::with_capacity(simple.len() + 32);
    unsigned(&mut cluster, &[0xe7], block.micros); // Timestamp
    element(&mut cluster, &[0xa3], &simple); // SimpleBlock
    let mut bytes = Vec::with_capacity(cluster.len() + 12);
    element(&mut bytes, &[0x1f, 0x43, 0xb6, 0x75], &cluster);
    out.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_carry_eight_byte_sizes_and_minimal_integers() {
        let mut out = Vec::new();
        unsigned(&mut out, &[0xe7], 0x0102);
        assert_eq!(out, [0xe7, 1, 0, 0, 0, 0, 0, 0, 2, 1, 2]);
        let mut zero = Vec::new();
        unsigned(&mut zero, &[0xe7], 0);
        assert_eq!(zero, [0xe7, 1, 0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn a_block_is_a_cluster_with_its_time() {
        let mut out = Vec::new();
        let data = [0, 0, 0, 1, 0x65];
        block(
            &mut out,
            &Block {
                micros: 40_000,
                keyframe: true,
                data: &data,
            },
        )
        .expect("write to a vector");
        assert_eq!(out[..4], [0x1f, 0x43, 0xb6, 0x75]);
        assert!(out.ends_with(&[
            0xa3, 1, 0, 0, 0, 0, 0, 0, 9, 0x81, 0, 0, 0x80, 0, 0, 0, 1, 0x65
        ]));
    }
}
