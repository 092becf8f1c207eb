//! What container a file is, from its first bytes rather than its name.

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_LEN: u64 = 16;

/// A container recognised by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// ISO base media (MP4, MOV, M4V, 3GP...): it starts with a box such as `ftyp` or `moov`.
    IsoBmff,
    /// Matroska or WebM (EBML magic `1A 45 DF A3`).
    Matroska,
    /// Anything else: left to ffprobe.
    Unknown,
}

/// Box types an ISO base media file starts with (QuickTime files may start with `wide`,
/// `free`, `skip`, `mdat` or `moov` instead of `ftyp`).
const FIRST_BOXES: [&[u8; 4]; 11] = [
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"styp", b"sidx", b"moof",
    b"uuid",
];

/// Recognises the container from the first bytes of a file (at least 8 are needed for MP4).
pub fn sniff(head: &[u8]) -> Container {
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Container::Matroska;
    }
    if let Some(kind) = head.get(4..8)
        && FIRST_BOXES.iter().any(|b| b.as_slice() == kind)
    {
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        // 0 (to the end), 1 (64-bit size follows) or at least a header.
        if size <= 1 || size >= 8 {
            return Container::IsoBmff;
        }
    }
    Container::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_not_names_decide() {
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Container::IsoBmff);
        assert_eq!(sniff(b"\0\0\0\x08wide\0\0\0\0mdat"), Container::IsoBmff);
        assert_eq!(
            sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81]),
            Container::Matroska
        );
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI "), Container::Unknown);
        assert_eq!(sniff(b"\0\0\0\x04ftyp"), Container::Unknown);
        assert_eq!(sniff(b"ftyp"), Container::Unknown);
    }
}
