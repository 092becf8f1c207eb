//! A pure-Rust MP4/MOV prober that reads only the boxes it needs, by range requests.
//!
//! It walks the top-level boxes by their headers (16 bytes each), fetches `ftyp` and `moov`
//! (in 64 KiB blocks) and never the media data, then parses them with the `mp4` crate. Besides
//! what the container says, it checks that every top-level box and every chunk offset of the
//! sample tables lies inside the object: a faststart file cut short still has an intact `moov`
//! but declares media data past the real end.

use std::io::Cursor;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use object_store::ObjectStoreExt;

use task_core::error::TaskError;

use super::{ProbeOutput, Prober, StreamInfo, StreamKind, probe_failed};
use crate::asset_url::AssetLocation;
use crate::error::storage_error;

const BLOCK: u64 = 64 * 1024;
const MAX_MOOV: u64 = 256 * 1024 * 1024;
/// Boxes an MP4/MOV file may start with.
const TOP_LEVEL: [&str; 11] = [
    "ftyp", "moov", "mdat", "free", "skip", "wide", "pdin", "uuid", "styp", "sidx", "meta",
];

/// The range-reading MP4 prober.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mp4Prober;

/// Why the MP4 prober declined a file that another prober may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mp4Verdict {
    /// The file is fragmented (moof/mvex): its duration is spread over fragments.
    Fragmented,
}

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
    ftyp: Option<Vec<u8>>,
    moov: Option<Vec<u8>>,
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
            "ftyp" => top.ftyp = Some(reader.range(offset..end).await?),
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
                top.moov = Some(moov);
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
    /// Probes, or says why another prober should (fragmented files).
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
        let mut buffer = ftyp;
        buffer.extend_from_slice(&moov);
        let length = buffer.len() as u64;
        // The mp4 crate can panic on some malformed boxes; a bad file must fail, not crash.
        let parsed =
            std::panic::catch_unwind(|| ::mp4::Mp4Reader::read_header(Cursor::new(buffer), length))
                .map_err(|_| probe_failed("malformed moov box"))?
                .map_err(|e| probe_failed(e.to_string()))?;
        if parsed.moov.mvex.is_some() {
            return Ok(Err(Mp4Verdict::Fragmented));
        }
        let mvhd = &parsed.moov.mvhd;
        if mvhd.timescale == 0 {
            return Err(probe_failed("the movie header has a zero timescale"));
        }
        let duration_secs = mvhd.duration as f64 / f64::from(mvhd.timescale);
        let mut ids: Vec<u32> = parsed.tracks().keys().copied().collect();
        ids.sort_unstable();
        let mut streams = Vec::new();
        for id in ids {
            let Some(track) = parsed.tracks().get(&id) else {
                continue;
            };
            check_chunks(track, size)?;
            streams.push(stream_info(track));
        }
        let output = ProbeOutput {
            prober: "mp4".into(),
            format: String::from_utf8_lossy(&parsed.major_brand().value)
                .trim()
                .to_owned(),
            duration_secs,
            streams,
            bytes_read: reader.read.load(Ordering::Relaxed),
        };
        Ok(Ok(output))
    }
}

/// Every chunk of the sample tables must start inside the object.
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

fn stream_info(track: &::mp4::Mp4Track) -> StreamInfo {
    let kind = match track.track_type() {
        Ok(::mp4::TrackType::Video) => StreamKind::Video,
        Ok(::mp4::TrackType::Audio) => StreamKind::Audio,
        _ => StreamKind::Other,
    };
    let codec = track
        .media_type()
        .map(|m| m.to_string().to_lowercase())
        .or_else(|_| track.box_type().map(|b| b.to_string().to_lowercase()))
        .unwrap_or_else(|_| "unknown".into());
    let (width, height) = match kind {
        StreamKind::Video => (
            Some(u32::from(track.width())),
            Some(u32::from(track.height())),
        ),
        _ => (None, None),
    };
    let (sample_rate, channels) = match kind {
        StreamKind::Audio => (
            track.sample_freq_index().ok().map(|f| f.freq()),
            track.channel_config().ok().map(|c| c as u32),
        ),
        _ => (None, None),
    };
    StreamInfo {
        kind,
        codec,
        width,
        height,
        sample_rate,
        channels,
    }
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
        }
    }
}
