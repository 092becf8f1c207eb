//! What each track is, read from the checked box tree: the codec under ffprobe's name
//! (`codec_name`), picture size, sample rate and channels.
//!
//! The `mp4` crate knows only a few sample entries (`avc1`, `hev1`, `vp09`, `mp4a`, `tx3g`) and
//! reads AAC facts only from an `esds` right under `mp4a`; QuickTime files keep it inside a
//! `wave` box. So the sample descriptions are read here, the way ffmpeg's mov demuxer reads them.

use super::boxes::BoxNode;
use super::{StreamInfo, StreamKind};

/// One track's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFacts {
    /// The `tkhd` track id.
    pub track_id: u32,
    /// The stream as ffprobe describes it.
    pub stream: StreamInfo,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The facts of every `trak` of `moov`, in file order.
pub fn read(moov: &BoxNode, buf: &[u8]) -> Vec<TrackFacts> {
    moov.children_of(b"trak")
        .filter_map(|trak| track(trak, buf))
        .collect()
}

fn track(trak: &BoxNode, buf: &[u8]) -> Option<TrackFacts> {
    let tkhd = trak.child(b"tkhd")?.payload(buf);
    let track_id = if tkhd.first() == Some(&1) {
        u32_at(tkhd, 20)?
    } else {
        u32_at(tkhd, 12)?
    };
    let handler = trak.find(&[b"mdia", b"hdlr"])?.payload(buf).get(8..12)?;
    let kind = match handler {
        b"vide" => StreamKind::Video,
        b"soun" => StreamKind::Audio,
        _ => StreamKind::Other,
    };
    let stsd = trak.find(&[b"mdia", b"minf", b"stbl", b"stsd"]);
    let entry = stsd.and_then(|s| s.children.first());
    let mut stream = StreamInfo {
        kind,
        codec: "unknown".into(),
        width: None,
        height: None,
        sample_rate: None,
        channels: None,
    };
    if let Some(entry) = entry {
        let fields = entry.payload(buf);
        match kind {
            StreamKind::Video => {
                stream.codec = video_codec(entry, buf).into();
                stream.width = u16_at(fields, 24).map(u32::from);
                stream.height = u16_at(fields, 26).map(u32::from);
            }
            StreamKind::Audio => audio(entry, buf, &mut stream),
            StreamKind::Other => stream.codec = other_codec(&entry.kind).into(),
        }
    }
    Some(TrackFacts { track_id, stream })
}

fn video_codec(entry: &BoxNode, buf: &[u8]) -> &'static str {
    match &entry.kind {
        b"avc1" | b"avc2" | b"avc3" | b"avc4" => "h264",
        b"hvc1" | b"hev1" | b"dvh1" | b"dvhe" => "hevc",
        b"vp08" => "vp8",
        b"vp09" => "vp9",
        b"av01" => "av1",
        b"mp4v" => match object_type(entry, buf) {
            Some(0x60..=0x65) => "mpeg2video",
            Some(0x6A) => "mpeg1video",
            Some(0x6C) => "mjpeg",
            _ => "mpeg4",
        },
        b"s263" | b"h263" => "h263",
        b"jpeg" => "mjpeg",
        b"apch" | b"apcn" | b"apcs" | b"apco" | b"ap4h" | b"ap4x" => "prores",
        _ => "unknown",
    }
}

fn other_codec(kind: &[u8; 4]) -> &'static str {
    match kind {
        b"tx3g" | b"text" => "mov_text",
        b"tmcd" => "tmcd",
        b"wvtt" => "webvtt",
        _ => "unknown",
    }
}

/// The sound description: QuickTime version 2 keeps the real rate and channel count in its
/// extra fields; versions 0 and 1 in the common ones.
fn audio(entry: &BoxNode, buf: &[u8], stream: &mut StreamInfo) {
    let fields = entry.payload(buf);
    let (mut channels, mut bits, mut rate, mut lpcm_flags) = (
        u16_at(fields, 16).map(u32::from),
        u16_at(fields, 18).map(u32::from),
        u32_at(fields, 24).map(|r| r >> 16),
        0u32,
    );
    if entry.sound_version == 2 {
        let exact = u64_at(fields, 32).map(f64::from_bits);
        rate = exact
            .filter(|r| r.is_finite() && *r >= 1.0 && *r <= f64::from(u32::MAX))
            .map(|r| r.round() as u32);
        channels = u32_at(fields, 40);
        bits = u32_at(fields, 48);
        lpcm_flags = u32_at(fields, 52).unwrap_or(0);
    }
    let little_endian = entry
        .find(&[b"wave", b"enda"])
        .and_then(|enda| u16_at(enda.payload(buf), 0))
        .is_some_and(|flag| flag != 0);
    let bits = bits.unwrap_or(16);
    let codec = match &entry.kind {
        b"mp4a" => match object_type(entry, buf) {
            Some(0x69 | 0x6B) => "mp3",
            Some(0xA5) => "ac3",
            Some(0xA6) => "eac3",
            Some(0xA9) => "dts",
            _ => {
                if let Some((asc_rate, asc_channels)) = aac_config(entry, buf) {
                    rate = asc_rate.or(rate);
                    channels = asc_channels.or(channels);
                }
                "aac"
            }
        },
        b"Opus" => {
            // ffmpeg decodes Opus at 48 kHz whatever the input rate was.
            rate = Some(48_000);
            if let Some(count) = entry
                .child(b"dOps")
                .and_then(|d| d.payload(buf).get(1).copied())
            {
                channels = Some(u32::from(count));
            }
            "opus"
        }
        b"fLaC" => "flac",
        b"alac" => "alac",
        b"ac-3" => "ac3",
        b"ec-3" => "eac3",
        b".mp3" => "mp3",
        b"samr" => "amr_nb",
        b"sawb" => "amr_wb",
        b"ulaw" => "pcm_mulaw",
        b"alaw" => "pcm_alaw",
        b"ima4" => "adpcm_ima_qt",
        b"raw " | b"NONE" => match bits {
            16 => "pcm_s16be",
            _ => "pcm_u8",
        },
        b"sowt" | b"twos" => {
            let little = &entry.kind == b"sowt";
            match (bits, little) {
                (8, _) => "pcm_s8",
                (24, true) => "pcm_s24le",
                (24, false) => "pcm_s24be",
                (32, true) => "pcm_s32le",
                (32, false) => "pcm_s32be",
                (_, true) => "pcm_s16le",
                (_, false) => "pcm_s16be",
            }
        }
        b"in24" => endian(little_endian, "pcm_s24le", "pcm_s24be"),
        b"in32" => endian(little_endian, "pcm_s32le", "pcm_s32be"),
        b"fl32" => endian(little_endian, "pcm_f32le", "pcm_f32be"),
        b"fl64" => endian(little_endian, "pcm_f64le", "pcm_f64be"),
        b"lpcm" => lpcm(bits, lpcm_flags),
        _ => "unknown",
    };
    stream.codec = codec.into();
    stream.sample_rate = rate.filter(|r| *r > 0);
    stream.channels = channels.filter(|c| *c > 0);
}

fn endian(little: bool, le: &'static str, be: &'static str) -> &'static str {
    if little { le } else { be }
}

/// ffmpeg's `ff_mov_get_lpcm_codec_id`: flags 1 float, 2 big-endian, 4 signed.
fn lpcm(bits: u32, flags: u32) -> &'static str {
    let (float, big, signed) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    match (float, bits, big) {
        (true, 32, false) => "pcm_f32le",
        (true, 32, true) => "pcm_f32be",
        (true, 64, false) => "pcm_f64le",
        (true, 64, true) => "pcm_f64be",
        (true, _, _) => "unknown",
        (false, 8, _) if signed => "pcm_s8",
        (false, 8, _) => "pcm_u8",
        (false, 16, false) => "pcm_s16le",
        (false, 16, true) => "pcm_s16be",
        (false, 24, false) => "pcm_s24le",
        (false, 24, true) => "pcm_s24be",
        (false, 32, false) => "pcm_s32le",
        (false, 32, true) => "pcm_s32be",
        _ => "unknown",
    }
}

/// The `esds` of a sample entry: right under it (ISO) or inside `wave` (QuickTime).
fn esds<'a>(entry: &BoxNode, buf: &'a [u8]) -> Option<&'a [u8]> {
    entry
        .child(b"esds")
        .or_else(|| entry.find(&[b"wave", b"esds"]))
        .map(|b| b.payload(buf).get(4..).unwrap_or(&[]))
}

/// One MPEG-4 descriptor at the start of `bytes`: its tag, body and the rest.
fn descriptor(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, mut rest) = bytes.split_first()?;
    let mut len = 0usize;
    for _ in 0..4 {
        let (&b, tail) = rest.split_first()?;
        rest = tail;
        len = (len << 7) | usize::from(b & 0x7F);
        if b & 0x80 == 0 {
            break;
        }
    }
    let body = rest.get(..len)?;
    Some((tag, body, &rest[len..]))
}

/// The DecoderConfigDescriptor inside the ES_Descriptor.
fn decoder_config<'a>(entry: &BoxNode, buf: &'a [u8]) -> Option<&'a [u8]> {
    let (tag, es, _) = descriptor(esds(entry, buf)?)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *es.get(2)?;
    let mut at = 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*es.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let mut rest = es.get(at..)?;
    while let Some((tag, body, tail)) = descriptor(rest) {
        if tag == 0x04 {
            return Some(body);
        }
        rest = tail;
    }
    None
}

fn object_type(entry: &BoxNode, buf: &[u8]) -> Option<u8> {
    decoder_config(entry, buf)?.first().copied()
}

/// Rate and channels from the AudioSpecificConfig, as ffmpeg's AAC decoder reports them.
fn aac_config(entry: &BoxNode, buf: &[u8]) -> Option<(Option<u32>, Option<u32>)> {
    let config = decoder_config(entry, buf)?;
    let mut rest = config.get(13..)?;
    let specific = loop {
        let (tag, body, tail) = descriptor(rest)?;
        if tag == 0x05 {
            break body;
        }
        rest = tail;
    };
    let mut bits = Bits {
        bytes: specific,
        at: 0,
    };
    let object = bits.take(5)?;
    if object == 31 {
        bits.take(6)?;
    }
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let index = bits.take(4)?;
    let rate = if index == 15 {
        Some(bits.take(24)?)
    } else {
        RATES.get(index as usize).copied()
    };
    let channels = match bits.take(4)? {
        c @ 1..=6 => Some(c),
        7 | 12 | 14 => Some(8),
        11 => Some(7),
        13 => Some(24),
        _ => None,
    };
    Some((rate, channels))
}

struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = *self.bytes.get(self.at / 8)?;
            let bit = (byte >> (7 - self.at % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.at += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpcm_flags_name_the_sample_format_as_ffmpeg_does() {
        assert_eq!(lpcm(16, 4 | 8), "pcm_s16le");
        assert_eq!(lpcm(24, 4 | 2), "pcm_s24be");
        assert_eq!(lpcm(32, 1 | 8), "pcm_f32le");
        assert_eq!(lpcm(8, 0), "pcm_u8");
    }

    #[test]
    fn descriptors_with_long_lengths_are_read() {
        let bytes = [0x05, 0x80, 0x80, 0x80, 0x02, 0x14, 0x08, 0xFF];
        let (tag, body, rest) = descriptor(&bytes).unwrap();
        assert_eq!((tag, body, rest), (0x05, &[0x14, 0x08][..], &[0xFF][..]));
    }
}
