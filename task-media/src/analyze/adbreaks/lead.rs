//! Cheaper leads: the pictures that nothing refers to are dropped from the part of a window that
//! is decoded only as references.
//!
//! A window is decoded from the keyframe before its silence but analysed only from
//! [`Window::start`]; the frames before that serve only as references for later ones. An H.264
//! picture whose NAL units all have `nal_ref_idc` 0 is a reference for nothing, so without it
//! every later frame decodes to the same pixels. Such pictures (about a third of x264's frames)
//! are dropped from the lead before it reaches the decoder: a stream-copy ffmpeg process writes
//! the batch's windows into Matroska files through the `noise` bitstream filter, whose `drop`
//! expression names each dropped packet by both its number from the keyframe and its time in
//! milliseconds, so a packet is dropped only if both match what the index said.
//!
//! Only H.264 in MP4/MOV read from a local file qualifies (its packets are read at the offsets
//! the index gives); anything else, or any failure here, decodes the window whole as before.

use std::ffi::OsString;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::video::{Source, Window, seek_target};
use crate::analyze::tools::{VideoIndex, ffmpeg_args, run};

/// At most this many packets are dropped from one window (the expression has a term each).
const MAX_DROPS: usize = 400;

/// Packets copied past a window's end: decoding stops at the end anyway, and reordered frames
/// shown before it may come later in the file.
const COPY_SLACK_SECS: f64 = 1.0;

/// Windows of one batch with their lead's disposable pictures dropped.
pub(super) struct Copies {
    /// Per window, the Matroska file to decode instead of the asset.
    files: Vec<Option<PathBuf>>,
    /// Packets dropped in all.
    pub dropped: usize,
    _dir: Option<tempfile::TempDir>,
}

impl Copies {
    fn none(windows: usize) -> Self {
        Self {
            files: vec![None; windows],
            dropped: 0,
            _dir: None,
        }
    }

    /// The file to decode window `i` from, if it was copied.
    pub fn file(&self, i: usize) -> Option<&Path> {
        self.files.get(i).and_then(|f| f.as_deref())
    }
}

/// Whether the asset qualifies: H.264 in MP4/MOV, in a local file.
pub(super) fn qualifies(codec: Option<&str>, container: &str, path: &Path) -> bool {
    codec == Some("h264")
        && container.split(',').any(|c| c == "mov" || c == "mp4")
        && path.is_file()
}

/// A packet of a window's lead that may be dropped if it is disposable.
#[derive(Debug, Clone, Copy)]
struct LeadPacket {
    /// Its number from the window's keyframe packet (0), in decode order.
    n: usize,
    /// Its time in the file, milliseconds (what the filter sees in Matroska).
    ms: i64,
    pos: u64,
    size: u64,
}

/// The packets of `window`'s lead: after its keyframe, before the next one, shown more than half
/// a frame before the analysis starts.
fn lead_packets(index: &VideoIndex, start_time: f64, window: &Window) -> Vec<LeadPacket> {
    let (Some(&first), true) = (
        index.keyframe_packets.get(window.keyframe),
        window.keyframe > 0,
    ) else {
        return Vec::new();
    };
    let last = index
        .keyframe_packets
        .get(window.keyframe + 1)
        .copied()
        .unwrap_or(index.packets.len());
    let before = window.start + start_time - index.frame.max(0.02) / 2.0;
    index
        .packets
        .get(first..last)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(n, p)| *n > 0 && p.pts < before)
        .filter_map(|(n, p)| {
            Some(LeadPacket {
                n,
                ms: (p.pts * 1000.0).round() as i64,
                pos: p.pos?,
                size: p.size,
            })
        })
        .collect()
}

/// Whether the H.264 access unit of `size` bytes (MP4 form: NAL units each behind a 4-byte
/// big-endian length) is a picture that nothing refers to: every NAL unit has `nal_ref_idc` 0,
/// at least one is a non-IDR slice, and the lengths add up to `size` exactly. `head` reads the
/// five bytes (length and NAL header) at an offset into the unit.
fn disposable(size: u64, mut head: impl FnMut(u64) -> Option<[u8; 5]>) -> bool {
    let mut at = 0u64;
    let mut slices = 0;
    while at < size {
        let Some(bytes) = head(at) else {
            return false;
        };
        let length = u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        let header = bytes[4];
        // The forbidden bit, or a non-zero nal_ref_idc, or a length past the unit.
        if length == 0 || header & 0xe0 != 0 || at + 4 + length > size {
            return false;
        }
        if header & 0x1f == 1 {
            slices += 1;
        }
        at += 4 + length;
    }
    slices > 0
}

/// The disposable packets among `packets`, read from `path`.
fn disposable_packets(path: &Path, packets: Vec<Vec<LeadPacket>>) -> Vec<Vec<LeadPacket>> {
    let Ok(file) = std::fs::File::open(path) else {
        return vec![Vec::new(); packets.len()];
    };
    packets
        .into_iter()
        .map(|lead| {
            lead.into_iter()
                .filter(|p| {
                    disposable(p.size, |offset| {
                        let mut bytes = [0u8; 5];
                        file.read_exact_at(&mut bytes, p.pos + offset).ok()?;
                        Some(bytes)
                    })
                })
                .take(MAX_DROPS)
                .collect()
        })
        .collect()
}

/// The `noise` filter dropping `packets` (no commas: the filter list is split at them).
fn drop_filter(packets: &[LeadPacket]) -> String {
    let terms: Vec<String> = packets
        .iter()
        .map(|p| format!("not(n-{})*not(pts-{})", p.n, p.ms))
        .collect();
    format!("noise=drop={}", terms.join("+"))
}

/// Copies the windows of `windows` whose lead has disposable pictures, without them. Falls back
/// to no copies (the windows are then decoded from the asset) when nothing qualifies or the copy
/// fails.
pub(super) async fn copies(source: &Source<'_>, windows: &[Window]) -> Copies {
    if !source.drop_leads {
        return Copies::none(windows.len());
    }
    let leads: Vec<Vec<LeadPacket>> = windows
        .iter()
        .map(|w| lead_packets(source.index, source.start_time, w))
        .collect();
    let path = source.path.to_owned();
    let found = tokio::task::spawn_blocking(move || disposable_packets(&path, leads)).await;
    let Ok(drops) = found else {
        return Copies::none(windows.len());
    };
    if drops.iter().all(Vec::is_empty) {
        return Copies::none(windows.len());
    }
    match copy(source, windows, &drops).await {
        Ok(copies) => copies,
        Err(e) => {
            tracing::debug!(error = %e, "adbreaks: lead copy failed; decoding windows whole");
            Copies::none(windows.len())
        }
    }
}

async fn copy(
    source: &Source<'_>,
    windows: &[Window],
    drops: &[Vec<LeadPacket>],
) -> Result<Copies, task_core::error::TaskError> {
    let dir = tempfile::Builder::new()
        .prefix("adbreaks-")
        .tempdir()
        .map_err(|e| task_core::error::TaskError::Internal {
            message: format!("temporary directory: {e}"),
        })?;
    let mut args = ffmpeg_args(["-copyts"]);
    let mut outputs: Vec<OsString> = Vec::new();
    let mut files = vec![None; windows.len()];
    let mut input = 0;
    for (i, (window, drop)) in windows.iter().zip(drops).enumerate() {
        if drop.is_empty() {
            continue;
        }
        let target = seek_target(source.index, window);
        let length = window.end + COPY_SLACK_SECS - target;
        args.extend(["-noaccurate_seek".into(), "-ss".into()]);
        args.push(format!("{target:.6}").into());
        args.push("-t".into());
        args.push(format!("{length:.6}").into());
        args.extend(["-an", "-sn", "-dn", "-i"].map(Into::into));
        args.push(source.path.as_os_str().to_owned());
        let file = dir.path().join(format!("w{i}.mkv"));
        outputs.extend(["-map".into(), format!("{input}:V:0").into()]);
        outputs.extend(["-c", "copy", "-bsf:v"].map(Into::into));
        outputs.push(drop_filter(drop).into());
        outputs.extend(["-avoid_negative_ts", "disabled", "-f", "matroska"].map(Into::into));
        outputs.push(file.clone().into_os_string());
        files[i] = Some(file);
        input += 1;
    }
    args.extend(outputs);
    run("ffmpeg", source.program, args, source.path, "the lead copy").await?;
    Ok(Copies {
        files,
        dropped: drops.iter().map(Vec::len).sum(),
        _dir: Some(dir),
    })
}

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
        disposable(bytes.len() as u64, |at| {
            let at = usize::try_from(at).ok()?;
            bytes.get(at..at + 5)?.try_into().ok()
        })
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
    fn the_drop_expression_has_no_commas_and_names_number_and_time() {
        let packet = |n, ms| LeadPacket {
            n,
            ms,
            pos: 0,
            size: 0,
        };
        let filter = drop_filter(&[packet(3, 40_120), packet(5, 40_080)]);
        assert_eq!(
            filter,
            "noise=drop=not(n-3)*not(pts-40120)+not(n-5)*not(pts-40080)"
        );
        assert!(!filter.contains(','));
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
