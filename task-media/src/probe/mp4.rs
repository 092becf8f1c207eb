//! A pure-Rust MP4/MOV prober that reads only the boxes it needs, by range requests.
//!
//! It walks the top-level boxes by their headers (16 bytes each), fetches `ftyp` and `moov`
//! (in 64 KiB blocks) and never the media data, then parses them on a blocking thread under
//! [`PARSE_DEADLINE`] (see [`super::parse_header_bytes`]). Besides what the container says, it
//! checks that every top-level box and every chunk offset of the sample tables lies inside the
//! object: a faststart file cut short still has an intact `moov` but declares media data past
//! the real end.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use object_store::ObjectStoreExt;

use task_core::error::TaskError;

use super::boxes;
use super::mp4_header::{TopBox, parse_boxes};
use super::{ProbeOutput, Prober, probe_failed};
use crate::asset_url::AssetLocation;
use crate::error::storage_error;

const BLOCK: u64 = 64 * 1024;
const MAX_MOOV: u64 = 256 * 1024 * 1024;
/// A file-type box lists a few brands: a few hundred bytes at most.
const MAX_FTYP: u64 = 64 * 1024;
/// Boxes an MP4/MOV file may start with.
const TOP_LEVEL: [&str; 11] = [
    "ftyp", "moov", "mdat", "free", "skip", "wide", "pdin", "uuid", "styp", "sidx", "meta",
];

/// The range-reading MP4 prober.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mp4Prober;

/// Why the MP4 prober declined a file that another prober may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mp4Verdict {
    /// The file is fragmented (moof/mvex): its duration is spread over fragments.
    Fragmented,
    /// The header is beyond this parser (a box layout it refuses, or one the `mp4` crate
    /// cannot read); the reason names the box and its byte offset where it can.
    Unreadable(String),
}

/// How long the parse of a fetched header may take. A real `moov` of a two-hour film (about
/// 4 MB) parses in milliseconds; past this the file is hostile and the probe fails.
pub const PARSE_DEADLINE: Duration = Duration::from_secs(5);

struct Reader<'a> {
    location: &'a AssetLocation,
    read: AtomicU64,
}

impl Reader<'_> {
    async fn range(&self, range: Range<u64>) -> Result<Vec<u8>, TaskError> {
        let bytes = self
            .location
            .store
            .get_range(&self.location.path, range)
            .await
            .map_err(|e| storage_error(&self.location.url, e))?;
        self.read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes.to_vec())
    }
}

struct TopLevel {
    /// The box and where it starts in the object.
    ftyp: Option<(Vec<u8>, u64)>,
    moov: Option<(Vec<u8>, u64)>,
    fragmented: bool,
}

async fn walk(reader: &Reader<'_>, size: u64) -> Result<TopLevel, TaskError> {
    let mut top = TopLevel {
        ftyp: None,
        moov: None,
        fragmented: false,
    };
    let mut offset = 0u64;
    while offset < size {
        let header = reader.range(offset..size.min(offset + 16)).await?;
        if header.len() < 8 {
            return Err(probe_failed(format!(
                "truncated box header at byte {offset}"
            )));
        }
        let short = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let kind = String::from_utf8_lossy(&header[4..8]).into_owned();
        let (box_size, header_len) = match short {
            0 => (size - offset, 8),
            1 if header.len() >= 16 => {
                let mut large = [0u8; 8];
                large.copy_from_slice(&header[8..16]);
                (u64::from_be_bytes(large), 16)
            }
            1 => {
                return Err(probe_failed(format!(
                    "truncated box header at byte {offset}"
                )));
            }
            n => (n, 8),
        };
        if !header[4..8]
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
        {
            return Err(probe_failed(format!(
                "not an MP4/MOV file: invalid box header at byte {offset}"
            )));
        }
        if offset == 0 && !TOP_LEVEL.contains(&kind.as_str()) {
            return Err(probe_failed(format!(
                "not an MP4/MOV file: it starts with {kind:?}, not a known box"
            )));
        }
        if box_size < header_len {
            return Err(probe_failed(format!(
                "box {kind} at byte {offset} has an invalid size of {box_size} bytes"
            )));
        }
        let end = offset.saturating_add(box_size);
        if end > size {
            return Err(probe_failed(format!(
                "box {kind} at byte {offset} declares {box_size} bytes, past the end of the {size}-byte object"
            )));
        }
        match kind.as_str() {
            "ftyp" if box_size > MAX_FTYP => {
                return Err(probe_failed(format!(
                    "ftyp box at byte {offset} of {box_size} bytes is implausibly large"
                )));
            }
            "ftyp" => top.ftyp = Some((reader.range(offset..end).await?, offset)),
            "moov" => {
                if box_size > MAX_MOOV {
                    return Err(probe_failed(format!(
                        "moov box of {box_size} bytes is implausibly large"
                    )));
                }
                let mut moov = Vec::with_capacity(box_size as usize);
                let mut at = offset;
                while at < end {
                    moov.extend(reader.range(at..end.min(at + BLOCK)).await?);
                    at += BLOCK;
                }
                top.moov = Some((moov, offset));
            }
            "moof" | "mfra" => {
                // Fragmented: another prober reads it; no need to walk every fragment.
                top.fragmented = true;
                return Ok(top);
            }
            _ => {}
        }
        offset = end;
    }
    Ok(top)
}

impl Mp4Prober {
    /// Probes, or says why another prober should (fragmented files, and files this parser
    /// cannot read). The parse runs on a blocking thread under [`PARSE_DEADLINE`].
    pub async fn probe_or_decline(
        &self,
        location: &AssetLocation,
        size: u64,
    ) -> Result<Result<ProbeOutput, Mp4Verdict>, TaskError> {
        let reader = Reader {
            location,
            read: AtomicU64::new(0),
        };
        let top = walk(&reader, size).await?;
        if top.fragmented {
            return Ok(Err(Mp4Verdict::Fragmented));
        }
        let ftyp = top
            .ftyp
            .ok_or_else(|| probe_failed("no ftyp box: not an MP4/MOV file"))?;
        let moov = top
            .moov
            .ok_or_else(|| probe_failed("no moov box: the file is incomplete"))?;
        let bytes_read = reader.read.load(Ordering::Relaxed);
        let parse =
            tokio::task::spawn_blocking(move || parse_fetched(ftyp, moov, size, bytes_read));
        // If the parse ever outlives the deadline, its blocking thread is left behind (a
        // thread cannot be stopped from outside): the box check in `boxes` exists so that the
        // mp4 crate's known endless loop (a zero-size box inside moov) cannot happen.
        match tokio::time::timeout(PARSE_DEADLINE, parse).await {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(join)) => Err(probe_failed(format!(
                "the MP4 header parse of {} failed: {join}",
                location.url
            ))),
            Err(_) => Err(probe_failed(format!(
                "the MP4 header parse of {} did not finish within the {} s deadline",
                location.url,
                PARSE_DEADLINE.as_secs()
            ))),
        }
    }
}

/// Parses the fetched `ftyp` and `moov` boxes (with their offsets in the object).
fn parse_fetched(
    ftyp: (Vec<u8>, u64),
    moov: (Vec<u8>, u64),
    size: u64,
    bytes_read: u64,
) -> Result<Result<ProbeOutput, Mp4Verdict>, TaskError> {
    let (ftyp_bytes, ftyp_at) = ftyp;
    let (moov_bytes, moov_at) = moov;
    let walked = boxes::parse(&ftyp_bytes, ftyp_at)
        .and_then(|f| boxes::parse(&moov_bytes, moov_at).map(|m| (f, m)));
    let (ftyp_tree, moov_tree) = match walked {
        Ok(trees) => trees,
        Err(reason) => return Ok(Err(Mp4Verdict::Unreadable(reason))),
    };
    let (Some(ftyp_node), Some(moov_node)) = (ftyp_tree.first(), moov_tree.first()) else {
        return Ok(Err(Mp4Verdict::Unreadable("empty ftyp or moov box".into())));
    };
    parse_boxes(
        TopBox {
            node: ftyp_node,
            buf: &ftyp_bytes,
        },
        TopBox {
            node: moov_node,
            buf: &moov_bytes,
        },
        size,
        bytes_read,
    )
}

#[async_trait]
impl Prober for Mp4Prober {
    fn name(&self) -> &'static str {
        "mp4"
    }

    async fn probe(&self, location: &AssetLocation, size: u64) -> Result<ProbeOutput, TaskError> {
        match self.probe_or_decline(location, size).await? {
            Ok(output) => output.validated(),
            Err(Mp4Verdict::Fragmented) => Err(probe_failed(
                "fragmented MP4 is not supported by the mp4 prober",
            )),
            Err(Mp4Verdict::Unreadable(reason)) => Err(probe_failed(reason)),
        }
    }
}
