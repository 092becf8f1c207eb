//! H.264 access units in MP4 form (NAL units behind big-endian lengths) read down to what the
//! reference replay of [`super::references`] needs, with h264-reader, and cut down to their
//! slice headers.
//!
//! Every byte here comes from the asset, so nothing is trusted: a length past the unit, a
//! parameter set or slice header that does not parse, or anything the replay does not model
//! gives an error, and the caller keeps the picture whole.

use h264_reader::Context;
use h264_reader::nal::pps::PicParameterSet;
use h264_reader::nal::slice::{
    DecRefPicMarking, FieldPic, MemoryManagementControlOperation as Mmco, ModificationOfPicNums,
    NumRefIdxActive, PicOrderCountLsb, RefPicListModifications, SliceFamily, SliceHeader,
};
use h264_reader::nal::sps::{FrameMbsFlags, PicOrderCntType, SeqParameterSet};
use h264_reader::nal::{Nal, RefNal, UnitType};

use super::references::{
    Marking, Modification, OrderType, Picture, Refusal, Sequence, SliceKind, SliceLists,
};

/// Reads access units of one stream, keeping its parameter sets (from `avcC`, and any sent in
/// band).
pub(crate) struct Parser {
    context: Context,
    length_size: usize,
    sequence: Option<Sequence>,
}

/// The parts of an `avcC` box body (ISO/IEC 14496-15 5.3.3.1) the parser needs. Read here
/// rather than by h264-reader's reader, which panics on an empty parameter set.
struct AvcConfiguration<'a> {
    length_size: usize,
    sequence: Vec<&'a [u8]>,
    picture: Vec<&'a [u8]>,
}

impl<'a> AvcConfiguration<'a> {
    fn read(avcc: &'a [u8]) -> Result<Self, Refusal> {
        const BAD: Refusal = "an unreadable avcC";
        let (&[version, _, _, _, lengths, sequences], mut rest) =
            avcc.split_first_chunk::<6>().ok_or(BAD)?;
        if version != 1 || lengths & 0x03 == 2 {
            return Err(BAD);
        }
        let sequence = parameter_sets(&mut rest, sequences & 0x1f)?;
        let (&pictures, tail) = rest.split_first().ok_or(BAD)?;
        rest = tail;
        let picture = parameter_sets(&mut rest, pictures)?;
        Ok(Self {
            length_size: usize::from(lengths & 0x03) + 1,
            sequence,
            picture,
        })
    }
}

/// `count` parameter sets, each behind a 2-byte length, from the front of `rest`.
fn parameter_sets<'a>(rest: &mut &'a [u8], count: u8) -> Result<Vec<&'a [u8]>, Refusal> {
    (0..count)
        .map(|_| {
            let (length, tail) = rest.split_first_chunk::<2>().ok_or("an unreadable avcC")?;
            let length = usize::from(u16::from_be_bytes(*length));
            let set = tail
                .get(..length)
                .filter(|s| !s.is_empty())
                .ok_or("an empty or cut parameter set in avcC")?;
            *rest = &tail[length..];
            Ok(set)
        })
        .collect()
}

/// The NAL units of an access unit: (offset of the unit's first byte after its length, length).
fn nal_units(unit: &[u8], length_size: usize) -> Result<Vec<(usize, usize)>, Refusal> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < unit.len() {
        let field = unit
            .get(at..at + length_size)
            .ok_or("a NAL length past the access unit")?;
        let length = field.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        let start = at + length_size;
        if length == 0 || start + length > unit.len() {
            return Err("a NAL length past the access unit");
        }
        out.push((start, length));
        at = start + length;
    }
    Ok(out)
}

fn slice_header<'a>(
    context: &'a Context,
    nal: &[u8],
) -> Result<(SliceHeader, &'a SeqParameterSet, &'a PicParameterSet), Refusal> {
    let nal = RefNal::new(nal, &[], true);
    let header = nal
        .header()
        .map_err(|_| "a NAL header with the forbidden bit")?;
    SliceHeader::from_bits(context, &mut nal.rbsp_bits(), header, None)
        .map_err(|_| "a slice header that does not parse")
}

impl Parser {
    /// A parser for the stream whose `avcC` box body is `avcc`.
    pub fn from_avcc(avcc: &[u8]) -> Result<Self, Refusal> {
        let record = AvcConfiguration::read(avcc)?;
        let mut context = Context::new();
        for sps in record.sequence {
            let sps = SeqParameterSet::from_bits(RefNal::new(sps, &[], true).rbsp_bits())
                .map_err(|_| "an unreadable sequence parameter set in avcC")?;
            context.put_seq_param_set(sps);
        }
        for pps in record.picture {
            let pps = PicParameterSet::from_bits(&context, RefNal::new(pps, &[], true).rbsp_bits())
                .map_err(|_| "an unreadable picture parameter set in avcC")?;
            context.put_pic_param_set(pps);
        }
        Ok(Self {
            context,
            length_size: record.length_size,
            sequence: None,
        })
    }

    /// The sequence facts of the pictures read so far (all must share them).
    pub fn sequence(&self) -> Option<Sequence> {
        self.sequence
    }

    /// What the reference replay needs of the access unit `unit`.
    pub fn picture(&mut self, unit: &[u8]) -> Result<Picture, Refusal> {
        let mut picture: Option<Picture> = None;
        for (start, length) in nal_units(unit, self.length_size)? {
            let nal = &unit[start..start + length];
            let rbsp = RefNal::new(nal, &[], true);
            let header = rbsp
                .header()
                .map_err(|_| "a NAL header with the forbidden bit")?;
            match header.nal_unit_type() {
                UnitType::SeqParameterSet => {
                    let sps = SeqParameterSet::from_bits(rbsp.rbsp_bits())
                        .map_err(|_| "an in-band sequence parameter set that does not parse")?;
                    self.context.put_seq_param_set(sps);
                }
                UnitType::PicParameterSet => {
                    let pps = PicParameterSet::from_bits(&self.context, rbsp.rbsp_bits())
                        .map_err(|_| "an in-band picture parameter set that does not parse")?;
                    self.context.put_pic_param_set(pps);
                }
                UnitType::SliceLayerWithoutPartitioningNonIdr
                | UnitType::SliceLayerWithoutPartitioningIdr => {
                    let idr = header.nal_unit_type() == UnitType::SliceLayerWithoutPartitioningIdr;
                    let reference = header.nal_ref_idc() != 0;
                    let (slice, sps, pps) = slice_header(&self.context, nal)?;
                    let sequence = sequence_of(sps)?;
                    if self.sequence.is_some_and(|s| s != sequence) {
                        return Err("the sequence parameters change");
                    }
                    self.sequence = Some(sequence);
                    let this = picture_of(&slice, pps, reference, idr)?;
                    match &mut picture {
                        None => picture = Some(this),
                        Some(first) => {
                            let same = first.reference == this.reference
                                && first.frame_num == this.frame_num
                                && first.poc_lsb == this.poc_lsb
                                && (first.marking == Marking::Idr) == idr;
                            if !same {
                                return Err("the slices of one access unit disagree");
                            }
                            first.slices.extend(this.slices);
                        }
                    }
                }
                UnitType::SliceDataPartitionALayer
                | UnitType::SliceDataPartitionBLayer
                | UnitType::SliceDataPartitionCLayer
                | UnitType::SliceExtension
                | UnitType::SliceLayerWithoutPartitioningAux => {
                    return Err("slice data partitions or extensions");
                }
                _ => {}
            }
        }
        picture.ok_or("an access unit without a slice")
    }

    /// `unit` with each slice cut to its header: the decoder then keeps its reference state (frame
    /// number, order, marking) but has no picture to decode. Other NAL units stay whole.
    pub fn headers_only(&self, unit: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut out = Vec::with_capacity(256);
        for (start, length) in nal_units(unit, self.length_size)? {
            let nal = &unit[start..start + length];
            let kept = match nal.first().map(|b| b & 0x1f) {
                Some(1 | 5) => {
                    let cut = header_length(&self.context, nal)?;
                    // The slice header's bytes, then a stop bit: what follows is no picture.
                    let mut cut = nal[..cut].to_vec();
                    cut.push(0x80);
                    cut
                }
                _ => nal.to_vec(),
            };
            let length = kept.len().to_be_bytes();
            out.extend_from_slice(&length[length.len() - self.length_size..]);
            out.extend_from_slice(&kept);
        }
        Ok(out)
    }
}

/// The shortest prefix of the slice NAL `nal` (doubling from 16 bytes) that holds its whole
/// header: the parse reads every header field and fails at the end of its input.
fn header_length(context: &Context, nal: &[u8]) -> Result<usize, Refusal> {
    let mut length = 16usize;
    loop {
        let cut = length.min(nal.len());
        if slice_header(context, &nal[..cut]).is_ok() {
            return Ok(cut);
        }
        if cut == nal.len() {
            return Err("a slice header that does not parse");
        }
        length *= 2;
    }
}

fn sequence_of(sps: &SeqParameterSet) -> Result<Sequence, Refusal> {
    if sps.frame_mbs_flags != FrameMbsFlags::Frames {
        return Err("field coding");
    }
    if sps.chroma_info.separate_colour_plane_flag {
        return Err("separate colour planes");
    }
    let order = match &sps.pic_order_cnt {
        PicOrderCntType::TypeZero {
            log2_max_pic_order_cnt_lsb_minus4,
        } => OrderType::Lsb(1 << (u32::from(*log2_max_pic_order_cnt_lsb_minus4) + 4)),
        PicOrderCntType::TypeTwo => OrderType::FrameNum,
        PicOrderCntType::TypeOne { .. } => return Err("picture order count type 1"),
    };
    Ok(Sequence {
        max_frame_num: 1 << (u32::from(sps.log2_max_frame_num_minus4) + 4),
        max_refs: sps.max_num_ref_frames,
        order,
    })
}

fn modifications(list: &[ModificationOfPicNums]) -> Result<Vec<Modification>, Refusal> {
    list.iter()
        .map(|m| match *m {
            ModificationOfPicNums::Subtract(d) => Ok(Modification::Subtract(d)),
            ModificationOfPicNums::Add(d) => Ok(Modification::Add(d)),
            _ => Err("long-term or inter-view list modifications"),
        })
        .collect()
}

fn picture_of(
    slice: &SliceHeader,
    pps: &PicParameterSet,
    reference: bool,
    idr: bool,
) -> Result<Picture, Refusal> {
    if slice.field_pic != FieldPic::Frame {
        return Err("a field picture");
    }
    if slice.redundant_pic_cnt.is_some_and(|n| n > 0) {
        return Err("a redundant slice");
    }
    let (poc_lsb, poc_bottom_delta) = match &slice.pic_order_cnt_lsb {
        None => (0, 0),
        Some(PicOrderCountLsb::Frame(lsb)) => (*lsb, 0),
        Some(PicOrderCountLsb::FieldsAbsolute {
            pic_order_cnt_lsb,
            delta_pic_order_cnt_bottom,
        }) => (*pic_order_cnt_lsb, *delta_pic_order_cnt_bottom),
        Some(PicOrderCountLsb::FieldsDelta(_)) => return Err("picture order count type 1"),
    };
    let kind = match slice.slice_type.family {
        SliceFamily::I | SliceFamily::SI => SliceKind::Intra,
        SliceFamily::P | SliceFamily::SP => SliceKind::Predicted,
        SliceFamily::B => SliceKind::Bipredicted,
    };
    let (l0_active, l1_active) = match slice.num_ref_idx_active {
        Some(NumRefIdxActive::P {
            num_ref_idx_l0_active_minus1,
        }) => (num_ref_idx_l0_active_minus1, 0),
        Some(NumRefIdxActive::B {
            num_ref_idx_l0_active_minus1,
            num_ref_idx_l1_active_minus1,
        }) => (num_ref_idx_l0_active_minus1, num_ref_idx_l1_active_minus1),
        None => (
            pps.num_ref_idx_l0_default_active_minus1,
            pps.num_ref_idx_l1_default_active_minus1,
        ),
    };
    let (l0_modifications, l1_modifications) = match &slice.ref_pic_list_modification {
        None | Some(RefPicListModifications::I) => (Vec::new(), Vec::new()),
        Some(RefPicListModifications::P {
            ref_pic_list_modification_l0,
        }) => (modifications(ref_pic_list_modification_l0)?, Vec::new()),
        Some(RefPicListModifications::B {
            ref_pic_list_modification_l0,
            ref_pic_list_modification_l1,
        }) => (
            modifications(ref_pic_list_modification_l0)?,
            modifications(ref_pic_list_modification_l1)?,
        ),
    };
    let marking = match &slice.dec_ref_pic_marking {
        _ if idr => match &slice.dec_ref_pic_marking {
            Some(DecRefPicMarking::Idr {
                long_term_reference_flag: false,
                ..
            }) => Marking::Idr,
            _ => return Err("a long-term IDR picture"),
        },
        None | Some(DecRefPicMarking::SlidingWindow) => Marking::SlidingWindow,
        Some(DecRefPicMarking::Adaptive(operations)) => {
            let mut unmark = Vec::new();
            for operation in operations {
                match operation {
                    Mmco::ShortTermUnusedForRef {
                        difference_of_pic_nums_minus1,
                    } => unmark.push(*difference_of_pic_nums_minus1),
                    // Only long-term frame indices change; there are none.
                    Mmco::MaxUsedLongTermFrameRef { .. } => {}
                    _ => return Err("long-term references or memory operation 5"),
                }
            }
            Marking::Unmark(unmark)
        }
        Some(DecRefPicMarking::Idr { .. }) => return Err("IDR marking outside an IDR picture"),
    };
    Ok(Picture {
        reference,
        frame_num: u32::from(slice.frame_num),
        poc_lsb,
        poc_bottom_delta,
        slices: vec![SliceLists {
            kind,
            l0_active: l0_active.saturating_add(1),
            l1_active: if kind == SliceKind::Bipredicted {
                l1_active.saturating_add(1)
            } else {
                0
            },
            l0_modifications,
            l1_modifications,
        }],
        marking,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_lengths_must_add_up() {
        let unit = [0, 0, 0, 2, 0x41, 0x9a, 0, 0, 0, 1, 0x06];
        assert_eq!(nal_units(&unit, 4), Ok(vec![(4, 2), (10, 1)]));
        assert!(nal_units(&unit[..10], 4).is_err());
        assert!(nal_units(&[0, 0, 0, 0], 4).is_err());
        assert!(nal_units(&[0, 0, 0], 4).is_err());
        assert_eq!(nal_units(&[0, 1, 0x41], 2), Ok(vec![(2, 1)]));
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        assert!(Parser::from_avcc(&[]).is_err());
        assert!(Parser::from_avcc(&[1, 0x64, 0, 0x28, 0xff, 0xe1, 0, 0x40]).is_err());
        // An empty parameter set (what made h264-reader's own avcC reader panic, found by the
        // h264_leads fuzz target).
        assert!(Parser::from_avcc(&[1, 0x64, 0, 0x28, 0xff, 0xe1, 0, 0, 0]).is_err());
        assert!(Parser::from_avcc(&[1, 0x64, 0, 0x28, 0xff, 0xe0, 1, 0, 0]).is_err());
    }
}
