//! Cheaper leads: pictures of a window's lead that no analysed picture depends on are not
//! decoded.
//!
//! A window is decoded from the keyframe before its silence but analysed only from
//! [`Window::start`]; the frames before that serve only as references for later ones. The
//! window's packets are copied into a Matroska file ([`super::matroska`]) without that work:
//! - a picture whose NAL units all have `nal_ref_idc` 0 is a reference for nothing, so it is
//!   left out (about a third of x264's frames);
//! - a reference picture that no list of an analysed picture holds, directly or through other
//!   needed pictures, keeps only its slice headers (x264's B-frames used as references): the
//!   decoder's reference state stays what the whole picture would have made it, and its pixels
//!   are never looked at. Which lists hold what is replayed from the slice headers
//!   ([`super::references`]); where the replay refuses, every reference picture stays whole.
//!
//! A window with pictures cut to their headers is decoded without error concealment (each such
//! picture would otherwise be concealed at about the cost of decoding it).
//!
//! Only H.264 in MP4/MOV read from a local file qualifies (its packets are read at the offsets
//! the index gives); anything else, or any failure here, decodes the window whole as before.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::h264::Parser;
use super::matroska::{self, Block};
use super::references::{self, Refusal};
use super::video::{Source, Window};
use crate::analyze::tools::{Packet, VideoIndex};

/// Packets copied past a window's end: decoding stops at the end anyway, and reordered frames
/// shown before it may come later in the file.
const COPY_SLACK_SECS: f64 = 1.0;

/// What becomes of a packet in a window's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    /// Cut to its slice headers.
    Headers,
    Leave,
}

/// Windows of one batch copied without the work their leads do not need.
pub(super) struct Copies {
    /// Per window, the Matroska file to decode instead of the asset.
    files: Vec<Option<PathBuf>>,
    /// Per window, whether some of its pictures were cut to their headers.
    headers_only: Vec<bool>,
    /// Pictures left out in all.
    pub dropped: usize,
    /// Pictures cut to their slice headers in all.
    pub cut: usize,
    _dir: Option<tempfile::TempDir>,
}

impl Copies {
    fn none(windows: usize) -> Self {
        Self {
            files: vec![None; windows],
            headers_only: vec![false; windows],
            dropped: 0,
            cut: 0,
            _dir: None,
        }
    }

    /// The file to decode window `i` from, if it was copied.
    pub fn file(&self, i: usize) -> Option<&Path> {
        self.files.get(i).and_then(|f| f.as_deref())
    }

    /// Whether window `i`'s copy has pictures cut to their headers (decode it without error
    /// concealment).
    pub fn has_headers_only(&self, i: usize) -> bool {
        self.headers_only.get(i).copied().unwrap_or(false)
    }
}

/// Whether the asset qualifies: H.264 in MP4/MOV, in a local file.
pub(super) fn qualifies(codec: Option<&str>, container: &str, path: &Path) -> bool {
    codec == Some("h264")
        && container.split(',').any(|c| c == "mov" || c == "mp4")
        && path.is_file()
}

/// Whether the H.264 access unit `unit` (MP4 form: NAL units each behind a 4-byte big-endian
/// length) is a picture that nothing refers to: every NAL unit has `nal_ref_idc` 0, at least
/// one is a non-IDR slice, and the lengths add up to the unit exactly.
fn disposable(unit: &[u8]) -> bool {
    let mut at = 0usize;
    let mut slices = 0;
    while at < unit.len() {
        let Some(&[a, b, c, d, header]) = unit.get(at..at + 5) else {
            return false;
        };
        let length = u32::from_be_bytes([a, b, c, d]) as usize;
        // The forbidden bit, or a non-zero nal_ref_idc, or a length past the unit.
        if length == 0 || header & 0xe0 != 0 || at + 4 + length > unit.len() {
            return false;
        }
        if header & 0x1f == 1 {
            slices += 1;
        }
        at += 4 + length;
    }
    slices > 0
}

/// The packets of the copy of `windows` (from one keyframe, ascending), in decode order: from
/// their keyframe to [`COPY_SLACK_SECS`] past the last one's end.
fn window_packets<'a>(index: &'a VideoIndex, start_time: f64, windows: &[Window]) -> &'a [Packet] {
    let (Some(window), Some(end)) = (windows.first(), windows.last().map(|w| w.end)) else {
        return &[];
    };
    let Some(&first) = index.keyframe_packets.get(window.keyframe) else {
        return &[];
    };
    let rest = index.packets.get(first..).unwrap_or_default();
    let last = end + start_time + COPY_SLACK_SECS;
    let count = rest.iter().position(|p| p.pts > last).unwrap_or(rest.len());
    &rest[..count]
}

/// What becomes of each of `units` (a window's access units from its keyframe, in decode order)
/// when the pictures `wanted` must decode right: the reference replay's answer, or, where it
/// refuses, only the pictures nothing refers to are left out.
fn fates(
    parser: Option<&mut Parser>,
    units: &[Vec<u8>],
    wanted: impl Fn(usize) -> bool,
) -> (Vec<Fate>, Option<Refusal>) {
    let replayed = parser.ok_or("no readable avcC").and_then(|parser| {
        let pictures = units
            .iter()
            .map(|unit| parser.picture(unit))
            .collect::<Result<Vec<_>, _>>()?;
        let sequence = parser.sequence().ok_or("no slice")?;
        let refs = references::references(&sequence, &pictures)?;
        Ok((pictures, refs))
    });
    match replayed {
        Ok((pictures, refs)) => {
            let needed = references::needed(&refs, &wanted);
            let fates = pictures
                .iter()
                .zip(needed)
                .map(|(picture, needed)| match (needed, picture.reference) {
                    (true, _) => Fate::Keep,
                    (false, true) => Fate::Headers,
                    (false, false) => Fate::Leave,
                })
                .collect();
            (fates, None)
        }
        Err(refusal) => {
            let fates = units
                .iter()
                .enumerate()
                .map(|(i, unit)| {
                    if wanted(i) || !disposable(unit) {
                        Fate::Keep
                    } else {
                        Fate::Leave
                    }
                })
                .collect();
            (fates, Some(refusal))
        }
    }
}

/// What a copy would leave out and cut of `units` (access units in MP4 form of the stream whose
/// `avcC` is `avcc`, the first a keyframe and the last analysed): `(left out, cut)`. The fuzz
/// target's way in: it returns for any bytes.
pub(super) fn spare(avcc: &[u8], units: &[Vec<u8>]) -> (usize, usize) {
    let mut parser = Parser::from_avcc(avcc).ok();
    let last = units.len().saturating_sub(1);
    let (fates, _) = fates(parser.as_mut(), units, |i| i == 0 || i == last);
    let mut spared = (0, 0);
    for (unit, fate) in units.iter().zip(fates) {
        match (fate, parser.as_ref()) {
            (Fate::Leave, _) => spared.0 += 1,
            (Fate::Headers, Some(parser)) => {
                if let Ok(cut) = parser.headers_only(unit) {
                    // Each slice loses its data and gains at most a stop byte.
                    assert!(cut.len() <= 2 * unit.len(), "a cut unit grew");
                    spared.1 += 1;
                }
            }
            _ => {}
        }
    }
    spared
}

/// A window's copy: how many pictures were left out and cut, or `None` when nothing was spared
/// (the window is then decoded from the asset).
struct Copied {
    left_out: usize,
    cut: usize,
}

/// Writes the copy of `windows` (from one keyframe, ascending), whose packets are `packets`
/// ([`window_packets`]) in a video of `frame`-second frames, to `to`, or returns `Ok(None)` when
/// it would spare nothing.
fn copy_window(
    file: &File,
    avcc: Option<&[u8]>,
    (packets, frame): (&[Packet], f64),
    start_time: f64,
    windows: &[Window],
    to: &Path,
) -> std::io::Result<Option<Copied>> {
    if packets.is_empty() || packets.iter().any(|p| p.pos.is_none() || p.pts < 0.0) {
        return Ok(None);
    }
    let units = packets
        .iter()
        .map(|p| {
            let mut unit = vec![0u8; usize::try_from(p.size).unwrap_or(usize::MAX)];
            file.read_exact_at(&mut unit, p.pos.unwrap_or_default())?;
            Ok(unit)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    // Pictures shown from half a frame before a window's analysis starts to half a frame after
    // it ends, and all after the last one starts, must decode right.
    let half = frame.max(0.02) / 2.0;
    let ranges: Vec<(f64, f64)> = windows
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let end = if k + 1 == windows.len() {
                f64::INFINITY
            } else {
                w.end + start_time + half
            };
            (w.start + start_time - half, end)
        })
        .collect();
    let wanted = |i: usize| {
        i == 0
            || packets
                .get(i)
                .is_some_and(|p| ranges.iter().any(|(a, b)| (*a..=*b).contains(&p.pts)))
    };
    let mut parser = avcc.and_then(|a| Parser::from_avcc(a).ok());
    let (fates, refusal) = fates(parser.as_mut(), &units, wanted);
    if let Some(refusal) = refusal {
        tracing::debug!(
            refusal,
            "adbreaks: reference replay refused; keeping reference pictures"
        );
    }
    if fates.iter().all(|f| *f == Fate::Keep) {
        return Ok(None);
    }
    let mut out = BufWriter::new(File::create(to)?);
    matroska::header(&mut out, avcc.unwrap_or_default())?;
    let mut copied = Copied {
        left_out: 0,
        cut: 0,
    };
    for (i, ((packet, unit), fate)) in packets.iter().zip(&units).zip(fates).enumerate() {
        let headers;
        let data = match (fate, parser.as_ref()) {
            (Fate::Leave, _) => {
                copied.left_out += 1;
                continue;
            }
            (Fate::Headers, Some(parser)) => match parser.headers_only(unit) {
                Ok(cut) => {
                    copied.cut += 1;
                    headers = cut;
                    &headers[..]
                }
                Err(_) => &unit[..],
            },
            _ => &unit[..],
        };
        matroska::block(
            &mut out,
            &Block {
                micros: (packet.pts * 1e6).round() as u64,
                keyframe: i == 0,
                data,
            },
        )?;
    }
    out.flush()?;
    Ok(Some(copied))
}

/// Copies each group of `groups` (windows decoded from one keyframe) that has work to spare,
/// without it. Falls back to no copies (the windows are then decoded from the asset) when
/// nothing qualifies or a copy fails.
pub(super) async fn copies(source: &Source<'_>, groups: &[&[Window]]) -> Copies {
    if !source.drop_leads || groups.is_empty() {
        return Copies::none(groups.len());
    }
    let Ok(dir) = tempfile::Builder::new().prefix("adbreaks-").tempdir() else {
        return Copies::none(groups.len());
    };
    let path = source.path.to_owned();
    let avcc = source.avcc.map(<[u8]>::to_vec);
    let start_time = source.start_time;
    let frame = source.index.frame;
    let count = groups.len();
    // Only each group's own packets go to the blocking thread, not the whole index.
    let groups: Vec<(Vec<Window>, Vec<Packet>)> = groups
        .iter()
        .map(|g| {
            (
                g.to_vec(),
                window_packets(source.index, start_time, g).to_vec(),
            )
        })
        .collect();
    let base = dir.path().to_owned();
    let made = tokio::task::spawn_blocking(move || {
        let file = File::open(&path)?;
        groups
            .iter()
            .enumerate()
            .map(|(i, (group, packets))| {
                let to = base.join(format!("w{i}.mkv"));
                let packets = (&packets[..], frame);
                let copied = copy_window(&file, avcc.as_deref(), packets, start_time, group, &to)?;
                Ok(copied.map(|c| (to, c)))
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await;
    match made {
        Ok(Ok(made)) => {
            let mut copies = Copies::none(made.len());
            for (i, copy) in made.into_iter().enumerate() {
                if let Some((file, copied)) = copy {
                    copies.dropped += copied.left_out;
                    copies.cut += copied.cut;
                    copies.headers_only[i] = copied.cut > 0;
                    copies.files[i] = Some(file);
                }
            }
            copies._dir = Some(dir);
            copies
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "adbreaks: lead copy failed; decoding windows whole");
            Copies::none(count)
        }
        Err(e) => {
            tracing::debug!(error = %e, "adbreaks: lead copy panicked; decoding windows whole");
            Copies::none(count)
        }
    }
}

#[cfg(test)]
#[path = "lead_tests.rs"]
mod decode_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// An access unit of NAL units with these headers and body lengths.
    fn unit(nals: &[(u8, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(header, body) in nals {
            out.extend_from_slice(&(body as u32 + 1).to_be_bytes());
            out.push(header);
            out.extend(std::iter::repeat_n(0xaa, body));
        }
        out
    }

    fn check(bytes: &[u8]) -> bool {
        disposable(bytes)
    }

    #[test]
    fn only_pictures_that_nothing_refers_to_are_disposable() {
        // SEI (ref_idc 0) and a non-reference slice: disposable.
        assert!(check(&unit(&[(0x06, 7), (0x01, 300)])));
        assert!(check(&unit(&[(0x01, 30), (0x01, 40)])));
        // A reference slice (ref_idc 2), an IDR, a parameter set: not.
        assert!(!check(&unit(&[(0x41, 300)])));
        assert!(!check(&unit(&[(0x01, 30), (0x21, 30)])));
        assert!(!check(&unit(&[(0x65, 300)])));
        assert!(!check(&unit(&[(0x67, 9), (0x01, 300)])));
        // No slice, the forbidden bit, lengths that do not add up: not.
        assert!(!check(&unit(&[(0x06, 7)])));
        assert!(!check(&unit(&[(0x81, 30)])));
        let mut long = unit(&[(0x01, 30)]);
        long.push(0);
        assert!(!check(&long));
        assert!(!check(&long[..20]));
        assert!(!check(&[]));
    }

    #[test]
    fn only_h264_in_mp4_from_a_file_qualifies() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let mp4 = "mov,mp4,m4a,3gp,3g2,mj2";
        assert!(qualifies(Some("h264"), mp4, &file));
        assert!(!qualifies(Some("hevc"), mp4, &file));
        assert!(!qualifies(Some("h264"), "matroska,webm", &file));
        assert!(!qualifies(
            Some("h264"),
            mp4,
            Path::new("http://host/a.mp4")
        ));
    }
}
