//! The box tree of an MP4/MOV header, checked before any parser sees it, and rewritten into
//! the form the `mp4` crate reads.
//!
//! The `mp4` crate (0.14) trusts box sizes: a box of size 0 inside `moov` makes it seek back
//! onto the same header forever, and a size smaller than the header sends it backwards. So
//! every box that it (or [`super::tracks`]) descends into is walked here first, and the walk
//! refuses any box of size 0 below the top level, smaller than its own header, or reaching past
//! its parent, naming the box path and its byte offset. Recursion is bounded by [`MAX_DEPTH`].
//!
//! [`emit`] then writes the boxes out again with their real sizes, QuickTime version-1 and
//! version-2 sound descriptions reduced to version 0 (the crate reads them as version 0 and
//! trips over the extra fields) and the zero padding QuickTime leaves at the end of some
//! containers dropped.

use std::fmt::Write as _;

/// How deep the walk descends (`moov/trak/mdia/minf/stbl/stsd/mp4a/wave/esds` is 9).
pub const MAX_DEPTH: usize = 16;

/// Boxes whose payload is nothing but boxes.
const CONTAINERS: [&[u8; 4]; 15] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"edts", b"udta", b"mvex", b"moof",
    b"traf", b"mfra", b"ilst", b"wave", b"tref",
];

/// Sample entries laid out as a visual sample description (78 bytes of fields, then boxes).
const VISUAL: [&[u8; 4]; 14] = [
    b"avc1", b"avc2", b"avc3", b"avc4", b"hvc1", b"hev1", b"dvh1", b"dvhe", b"vp08", b"vp09",
    b"av01", b"mp4v", b"encv", b"s263",
];

/// Sample entries laid out as a sound description (28 bytes of fields, more for QuickTime
/// versions 1 and 2, then boxes).
const AUDIO: [&[u8; 4]; 22] = [
    b"mp4a", b"Opus", b"fLaC", b"alac", b"ac-3", b"ec-3", b"enca", b"lpcm", b"sowt", b"twos",
    b"in24", b"in32", b"fl32", b"fl64", b"raw ", b"ulaw", b"alaw", b".mp3", b"samr", b"sawb",
    b"ima4", b"NONE",
];

/// Leaf boxes the `mp4` crate reads field by field, with the smallest size that holds their
/// fields (version 0 / version 1): smaller ones make it read into the next box or underflow.
const MINIMUM: [(&[u8; 4], u64, u64); 8] = [
    (b"mvhd", 108, 120),
    (b"tkhd", 92, 104),
    (b"mdhd", 32, 44),
    (b"hdlr", 32, 32),
    (b"ftyp", 16, 16),
    (b"url ", 12, 12),
    (b"urn ", 12, 12),
    (b"mehd", 16, 20),
];

/// One box of the tree.
#[derive(Debug, Clone)]
pub struct BoxNode {
    /// The four-character type.
    pub kind: [u8; 4],
    /// Where the box starts in the buffer.
    pub offset: usize,
    /// 8, or 16 for a 64-bit size.
    pub header_len: usize,
    /// The whole box, header included.
    pub size: usize,
    /// Bytes of fields between the header and the first child (containers only).
    pub prefix: usize,
    /// Whether the payload after `prefix` was walked as boxes.
    pub container: bool,
    /// The child boxes, in order.
    pub children: Vec<BoxNode>,
    /// The zero padding (fewer than 8 bytes) after the last child.
    pub padding: usize,
    /// The QuickTime sound description version (1 or 2) whose extra fields `emit` drops.
    pub sound_version: u16,
}

impl BoxNode {
    /// The bytes after the header.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.offset + self.header_len..self.offset + self.size]
    }

    /// The first child of type `kind`.
    pub fn child(&self, kind: &[u8; 4]) -> Option<&BoxNode> {
        self.children.iter().find(|c| &c.kind == kind)
    }

    /// Every child of type `kind`.
    pub fn children_of<'a>(&'a self, kind: &'a [u8; 4]) -> impl Iterator<Item = &'a BoxNode> {
        self.children.iter().filter(move |c| &c.kind == kind)
    }

    /// The descendant at `path` (first match at each level).
    pub fn find(&self, path: &[&[u8; 4]]) -> Option<&BoxNode> {
        path.iter().try_fold(self, |node, kind| node.child(kind))
    }
}

/// A box type as text: printable ASCII as is, other bytes as `\xNN`.
pub fn fourcc(kind: &[u8; 4]) -> String {
    let mut out = String::new();
    for b in kind {
        if b.is_ascii_graphic() || *b == b' ' {
            out.push(char::from(*b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(bytes)
}

struct Walk<'a> {
    buf: &'a [u8],
    /// Where the buffer starts in the file, for messages.
    base: u64,
}

impl Walk<'_> {
    /// The boxes in `start..end`; `path` names the parent ("" at the top level).
    fn children(
        &self,
        start: usize,
        end: usize,
        path: &str,
        depth: usize,
        parent: &[u8; 4],
        stsd_version: u8,
    ) -> Result<(Vec<BoxNode>, usize), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "boxes nested deeper than {MAX_DEPTH} levels at {path} (byte {start})"
            ));
        }
        let top = path.is_empty();
        let mut nodes = Vec::new();
        let mut at = start;
        while at < end {
            let left = end - at;
            let pos = self.base + at as u64;
            if left < 8 {
                if !top && self.buf[at..end].iter().all(|b| *b == 0) {
                    return Ok((nodes, left));
                }
                let inside = if top {
                    "at the end of the header".to_owned()
                } else {
                    format!("inside {path}")
                };
                return Err(format!(
                    "{left} stray bytes at byte {pos} {inside}, too few for a box header"
                ));
            }
            let mut kind = [0u8; 4];
            kind.copy_from_slice(&self.buf[at + 4..at + 8]);
            let name = if top {
                fourcc(&kind)
            } else {
                format!("{path}/{}", fourcc(&kind))
            };
            let (size, header_len) = match read_u32(self.buf, at) {
                0 if top => (left as u64, 8),
                0 => {
                    return Err(format!(
                        "box {name} at byte {pos} has size 0 (only a top-level box may extend \
                         to the end of the file)"
                    ));
                }
                1 if left < 16 => {
                    return Err(format!(
                        "box {name} at byte {pos} has a 64-bit size cut off by the end of {}",
                        if top { "the header" } else { path }
                    ));
                }
                1 => (read_u64(self.buf, at + 8), 16),
                n => (u64::from(n), 8),
            };
            if size < header_len as u64 {
                return Err(format!(
                    "box {name} at byte {pos} declares {size} bytes, less than its own \
                     {header_len}-byte header"
                ));
            }
            if size > left as u64 {
                let within = if top {
                    "the end of the header".to_owned()
                } else {
                    format!("the end of its parent {path}")
                };
                return Err(format!(
                    "box {name} at byte {pos} declares {size} bytes, past {within} ({left} bytes \
                     left)"
                ));
            }
            let size = size as usize;
            let mut node = BoxNode {
                kind,
                offset: at,
                header_len,
                size,
                prefix: 0,
                container: false,
                children: Vec::new(),
                padding: 0,
                sound_version: 0,
            };
            let payload = node.payload(self.buf);
            check_minimum(&kind, payload, &name, pos)?;
            if let Some(layout) = layout(&kind, parent, payload, stsd_version, &name, pos)? {
                node.prefix = layout.prefix;
                node.sound_version = layout.sound_version;
                node.container = true;
                let first = at + header_len + layout.prefix;
                let version = if &kind == b"stsd" { payload[0] } else { 0 };
                let (children, padding) =
                    self.children(first, at + size, &name, depth + 1, &kind, version)?;
                node.children = children;
                node.padding = padding;
            }
            nodes.push(node);
            at += size;
        }
        Ok((nodes, 0))
    }
}

struct Layout {
    prefix: usize,
    sound_version: u16,
}

fn check_minimum(kind: &[u8; 4], payload: &[u8], name: &str, at: u64) -> Result<(), String> {
    let Some((_, v0, v1)) = MINIMUM.iter().find(|(k, _, _)| *k == kind) else {
        return Ok(());
    };
    let needed = if payload.first() == Some(&1) {
        *v1
    } else {
        *v0
    };
    if ((payload.len() + 8) as u64) < needed {
        return Err(format!(
            "box {name} at byte {at} has {} bytes, too small for its fields ({needed} bytes)",
            payload.len() + 8
        ));
    }
    Ok(())
}

/// Where the children of a box start, or None for a box that is not walked.
fn layout(
    kind: &[u8; 4],
    parent: &[u8; 4],
    payload: &[u8],
    stsd_version: u8,
    name: &str,
    at: u64,
) -> Result<Option<Layout>, String> {
    let fixed = |prefix: usize, what: &str| {
        if payload.len() < prefix {
            Err(format!(
                "box {name} at byte {at} has {} bytes, too small for {what} ({} bytes)",
                payload.len() + 8,
                prefix + 8
            ))
        } else {
            Ok(Some(Layout {
                prefix,
                sound_version: 0,
            }))
        }
    };
    if CONTAINERS.contains(&kind) || parent == b"ilst" {
        return Ok(Some(Layout {
            prefix: 0,
            sound_version: 0,
        }));
    }
    if parent == b"stsd" {
        if VISUAL.contains(&kind) {
            return fixed(78, "a video sample description");
        }
        if AUDIO.contains(&kind) {
            fixed(28, "a sound description")?;
            let version = read_u16(payload, 8);
            // QuickTime's versions 1 and 2 add fields; an ISO entry of version 1 (in an stsd
            // of version 1) does not.
            let (extra, what) = match (stsd_version, version) {
                (0, 1) => (16, "a version-1 sound description"),
                (0, 2) => (36, "a version-2 sound description"),
                (0, 0) | (1, 0..=1) => (0, "a sound description"),
                (_, v) => {
                    return Err(format!(
                        "box {name} at byte {at} is a sound description of unknown version {v}"
                    ));
                }
            };
            let mut layout = fixed(28 + extra, what)?;
            if let Some(layout) = layout.as_mut() {
                layout.sound_version = if extra > 0 { version } else { 0 };
            }
            return Ok(layout);
        }
        return Ok(None);
    }
    match kind {
        b"stsd" => fixed(8, "its version and entry count"),
        b"dref" => fixed(8, "its version and entry count"),
        b"meta" => {
            // ISO's meta is a full box; QuickTime's is not (it starts with its hdlr).
            if payload.len() >= 8 && &payload[4..8] == b"hdlr" {
                Ok(Some(Layout {
                    prefix: 0,
                    sound_version: 0,
                }))
            } else {
                fixed(4, "its version and flags")
            }
        }
        _ => Ok(None),
    }
}

/// Walks the top-level boxes of `buf` and everything below them that is read later; `base` is
/// where `buf` starts in the file (messages give file offsets).
pub fn parse(buf: &[u8], base: u64) -> Result<Vec<BoxNode>, String> {
    let walk = Walk { buf, base };
    walk.children(0, buf.len(), "", 0, b"\0\0\0\0", 0)
        .map(|(nodes, _)| nodes)
}

fn write_header(out: &mut Vec<u8>, kind: &[u8; 4], header_len: usize, body: usize) {
    let total = (header_len + body) as u64;
    match u32::try_from(total) {
        Ok(size) if header_len == 8 && size > 1 => {
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(kind);
        }
        _ => {
            let total = (16 + body) as u64;
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(&total.to_be_bytes());
        }
    }
}

/// Writes `node` out again (see the module documentation) and appends it to `out`.
pub fn emit(node: &BoxNode, buf: &[u8], out: &mut Vec<u8>) {
    let payload = node.payload(buf);
    let mut body = Vec::new();
    if node.container {
        let prefix = &payload[..node.prefix];
        if node.sound_version > 0 {
            body.extend_from_slice(&version_zero(prefix, node.sound_version));
        } else {
            body.extend_from_slice(prefix);
        }
        for child in &node.children {
            emit(child, buf, &mut body);
        }
    } else {
        body.extend_from_slice(payload);
    }
    write_header(out, &node.kind, node.header_len, body.len());
    out.extend_from_slice(&body);
}

/// The 28 bytes of a version-0 sound description carrying what a version 1 or 2 says.
fn version_zero(fields: &[u8], version: u16) -> Vec<u8> {
    let mut out = fields[..28].to_vec();
    out[8..10].copy_from_slice(&0u16.to_be_bytes());
    if version == 2 {
        let rate = f64::from_bits(read_u64(fields, 32));
        let channels = read_u32(fields, 40);
        let bits = read_u32(fields, 48);
        let rate = if rate.is_finite() && (1.0..65536.0).contains(&rate) {
            rate as u32
        } else {
            0
        };
        out[16..18].copy_from_slice(&u16::try_from(channels).unwrap_or(0).to_be_bytes());
        out[18..20].copy_from_slice(&u16::try_from(bits).unwrap_or(0).to_be_bytes());
        out[20..24].copy_from_slice(&0u32.to_be_bytes());
        out[24..28].copy_from_slice(&(rate << 16).to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn zero_small_and_oversized_children_are_refused_with_their_path_and_offset() {
        let mut zero = boxed(b"free", &[]);
        zero[..4].copy_from_slice(&0u32.to_be_bytes());
        let trak = boxed(b"trak", &zero);
        let err = parse(&boxed(b"moov", &trak), 0).unwrap_err();
        assert_eq!(
            err,
            "box moov/trak/free at byte 16 has size 0 (only a top-level box may extend to the \
             end of the file)"
        );
        let mut small = boxed(b"udta", &[0; 8]);
        small[..4].copy_from_slice(&4u32.to_be_bytes());
        let err = parse(&boxed(b"moov", &small), 0).unwrap_err();
        assert!(
            err.contains("moov/udta at byte 8 declares 4 bytes"),
            "{err}"
        );
        let mut long = boxed(b"udta", &[0; 8]);
        long[..4].copy_from_slice(&100u32.to_be_bytes());
        let err = parse(&boxed(b"moov", &long), 0).unwrap_err();
        assert!(err.contains("past the end of its parent moov"), "{err}");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut inner = boxed(b"free", &[]);
        for _ in 0..40 {
            inner = boxed(b"udta", &inner);
        }
        let err = parse(&inner, 0).unwrap_err();
        assert!(err.contains("deeper than 16 levels"), "{err}");
    }

    #[test]
    fn padding_is_dropped_and_sizes_are_rewritten() {
        let mut udta = boxed(b"free", &[]);
        udta.extend_from_slice(&[0; 4]);
        let buf = boxed(b"moov", &boxed(b"udta", &udta));
        let tree = parse(&buf, 0).unwrap();
        assert_eq!(tree[0].children[0].padding, 4);
        let mut out = Vec::new();
        emit(&tree[0], &buf, &mut out);
        assert_eq!(out, boxed(b"moov", &boxed(b"udta", &boxed(b"free", &[]))));
    }
}
