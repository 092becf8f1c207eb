//! Which pictures later pictures refer to, from slice headers alone: the H.264 reference
//! picture lists (ITU-T H.264 8.2.4) and their marking (8.2.5) replayed for a run of pictures
//! that starts at an IDR picture.
//!
//! A window's lead is decoded only so that the pictures of its analysed part come out right.
//! A lead picture that no list of a needed picture holds (directly or through other needed
//! pictures) can lose its pixels: its slice headers alone keep the decoder's reference state
//! (frame numbers, picture order, marking) what it would have been. Only what is certain is
//! claimed: field pictures, long-term references, memory operation 5, gaps in `frame_num` and
//! picture order type 1 make [`references`] refuse, and the caller keeps every reference picture.

/// A slice's type, as far as reference lists go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SliceKind {
    /// No reference list (I and SI slices).
    Intra,
    /// List 0 only (P and SP slices).
    Predicted,
    /// Lists 0 and 1.
    Bipredicted,
}

/// A `ref_pic_list_modification` operation on short-term pictures: `abs_diff_pic_num_minus1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modification {
    /// `modification_of_pic_nums_idc` 0.
    Subtract(u32),
    /// `modification_of_pic_nums_idc` 1.
    Add(u32),
}

/// What the list construction needs of one slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceLists {
    /// The slice's type.
    pub kind: SliceKind,
    /// `num_ref_idx_l0_active_minus1 + 1` (the slice's or its picture parameter set's).
    pub l0_active: u32,
    /// `num_ref_idx_l1_active_minus1 + 1`.
    pub l1_active: u32,
    /// List 0 modifications, in order.
    pub l0_modifications: Vec<Modification>,
    /// List 1 modifications, in order.
    pub l1_modifications: Vec<Modification>,
}

/// How a reference picture is marked once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Marking {
    /// An IDR picture: every other reference is dropped.
    Idr,
    /// The oldest short-term reference goes when the buffer is full.
    SlidingWindow,
    /// Memory operation 1 (`difference_of_pic_nums_minus1` of each): those short-term
    /// references go.
    Unmark(Vec<u32>),
}

/// One picture (access unit), in decode order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Picture {
    /// `nal_ref_idc` is not 0.
    pub reference: bool,
    /// `frame_num`.
    pub frame_num: u32,
    /// `pic_order_cnt_lsb` (order type 0).
    pub poc_lsb: u32,
    /// `delta_pic_order_cnt_bottom` (order type 0; 0 when absent).
    pub poc_bottom_delta: i32,
    /// Its slices' lists.
    pub slices: Vec<SliceLists>,
    /// Its marking (ignored for a non-reference picture).
    pub marking: Marking,
}

/// Picture order count types this replay knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderType {
    /// Type 0, with `MaxPicOrderCntLsb`.
    Lsb(u32),
    /// Type 2: order follows `frame_num`.
    FrameNum,
}

/// What the sequence parameter set says about references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sequence {
    /// `MaxFrameNum`.
    pub max_frame_num: u32,
    /// `max_num_ref_frames`.
    pub max_refs: u32,
    /// How picture order is counted.
    pub order: OrderType,
}

/// Why the replay gave up (the caller then keeps every reference picture).
pub(crate) type Refusal = &'static str;

#[derive(Debug, Clone, Copy)]
struct Held {
    picture: usize,
    frame_num: u32,
    order: i64,
}

/// Per picture, the pictures (indices into `pictures`) that its slices' reference lists hold.
/// `pictures[0]` must be an IDR picture.
pub(crate) fn references(
    sequence: &Sequence,
    pictures: &[Picture],
) -> Result<Vec<Vec<usize>>, Refusal> {
    if pictures.first().is_none_or(|p| p.marking != Marking::Idr) {
        return Err("the run does not start at an IDR picture");
    }
    if sequence.max_frame_num == 0 {
        return Err("MaxFrameNum is 0");
    }
    let max_frame_num = i64::from(sequence.max_frame_num);
    let mut held: Vec<Held> = Vec::new();
    let mut order = Order::default();
    let mut previous_ref_frame_num = 0u32;
    let mut out = Vec::with_capacity(pictures.len());
    for (index, picture) in pictures.iter().enumerate() {
        let idr = picture.marking == Marking::Idr;
        if !idr
            && picture.frame_num != previous_ref_frame_num
            && picture.frame_num != (previous_ref_frame_num + 1) % sequence.max_frame_num
        {
            return Err("a gap in frame_num");
        }
        let current_order = order.count(sequence, picture, idr)?;
        let frame_num = i64::from(picture.frame_num);
        // FrameNumWrap (8-27): a larger frame_num than the current one comes from before a wrap.
        let wrap = |h: &Held| {
            let n = i64::from(h.frame_num);
            if n > frame_num { n - max_frame_num } else { n }
        };
        let mut referred: Vec<usize> = Vec::new();
        for slice in &picture.slices {
            for list in slice_lists(slice, &held, current_order, frame_num, max_frame_num, &wrap)? {
                referred.extend(list.into_iter().flatten());
            }
        }
        referred.sort_unstable();
        referred.dedup();
        out.push(referred);
        if picture.reference {
            match &picture.marking {
                Marking::Idr => held.clear(),
                Marking::SlidingWindow => {
                    if held.len() >= sequence.max_refs.max(1) as usize {
                        let oldest = (0..held.len()).min_by_key(|&i| wrap(&held[i]));
                        if let Some(oldest) = oldest {
                            held.remove(oldest);
                        }
                    }
                }
                Marking::Unmark(differences) => {
                    for difference in differences {
                        let pic_num = frame_num - (i64::from(*difference) + 1);
                        let at = held
                            .iter()
                            .position(|h| wrap(h) == pic_num)
                            .ok_or("a memory operation names a picture that is not held")?;
                        held.remove(at);
                    }
                }
            }
            if held.len() >= sequence.max_refs.max(1) as usize {
                return Err("more reference pictures than max_num_ref_frames");
            }
            held.push(Held {
                picture: index,
                frame_num: picture.frame_num,
                order: current_order,
            });
            previous_ref_frame_num = picture.frame_num;
        }
    }
    Ok(out)
}

/// The picture order count state (8.2.1) carried from one picture to the next.
#[derive(Debug, Default)]
struct Order {
    previous_msb: i64,
    previous_lsb: i64,
    previous_frame_num: u32,
    frame_num_offset: i64,
}

impl Order {
    fn count(&mut self, sequence: &Sequence, picture: &Picture, idr: bool) -> Result<i64, Refusal> {
        match sequence.order {
            OrderType::Lsb(max_lsb) => {
                let max = i64::from(max_lsb);
                let lsb = i64::from(picture.poc_lsb);
                if max == 0 || lsb >= max {
                    return Err("pic_order_cnt_lsb out of range");
                }
                if idr {
                    self.previous_msb = 0;
                    self.previous_lsb = 0;
                }
                let msb = if lsb < self.previous_lsb && self.previous_lsb - lsb >= max / 2 {
                    self.previous_msb + max
                } else if lsb > self.previous_lsb && lsb - self.previous_lsb > max / 2 {
                    self.previous_msb - max
                } else {
                    self.previous_msb
                };
                if picture.reference {
                    self.previous_msb = msb;
                    self.previous_lsb = lsb;
                }
                let top = msb + lsb;
                Ok(top.min(top + i64::from(picture.poc_bottom_delta)))
            }
            OrderType::FrameNum => {
                if idr {
                    self.frame_num_offset = 0;
                } else if self.previous_frame_num > picture.frame_num {
                    self.frame_num_offset += i64::from(sequence.max_frame_num);
                }
                self.previous_frame_num = picture.frame_num;
                let twice = 2 * (self.frame_num_offset + i64::from(picture.frame_num));
                Ok(match (idr, picture.reference) {
                    (true, _) => 0,
                    (false, true) => twice,
                    (false, false) => twice - 1,
                })
            }
        }
    }
}

type List = Vec<Option<usize>>;

/// The final lists of one slice (8.2.4.2 and 8.2.4.3), as picture indices.
fn slice_lists(
    slice: &SliceLists,
    held: &[Held],
    current_order: i64,
    frame_num: i64,
    max_frame_num: i64,
    wrap: &dyn Fn(&Held) -> i64,
) -> Result<Vec<List>, Refusal> {
    let by = |mut refs: Vec<Held>, key: &dyn Fn(&Held) -> i64| {
        refs.sort_by_key(key);
        refs
    };
    let initial: Vec<Vec<Held>> = match slice.kind {
        SliceKind::Intra => return Ok(Vec::new()),
        SliceKind::Predicted => vec![by(held.to_vec(), &|h| -wrap(h))],
        SliceKind::Bipredicted => {
            let before = by(
                held.iter()
                    .filter(|h| h.order < current_order)
                    .copied()
                    .collect(),
                &|h| -h.order,
            );
            let after = by(
                held.iter()
                    .filter(|h| h.order > current_order)
                    .copied()
                    .collect(),
                &|h| h.order,
            );
            let l0: Vec<Held> = before.iter().chain(&after).copied().collect();
            let mut l1: Vec<Held> = after.iter().chain(&before).copied().collect();
            let same = l0
                .iter()
                .map(|h| h.picture)
                .eq(l1.iter().map(|h| h.picture));
            if l1.len() > 1 && same {
                l1.swap(0, 1);
            }
            vec![l0, l1]
        }
    };
    let actives = [slice.l0_active, slice.l1_active];
    let modifications = [&slice.l0_modifications, &slice.l1_modifications];
    initial
        .into_iter()
        .enumerate()
        .map(|(x, init)| {
            let active = actives[x] as usize;
            if active == 0 || active > 32 {
                return Err("num_ref_idx_active out of range");
            }
            let mut list: List = init.iter().map(|h| Some(h.picture)).collect();
            list.resize(active, None);
            modify(
                &mut list,
                modifications[x],
                held,
                frame_num,
                max_frame_num,
                wrap,
            )?;
            Ok(list)
        })
        .collect()
}

/// Applies short-term modifications (8.2.4.3.1) to `list` (already `num_ref_idx_active` long).
fn modify(
    list: &mut List,
    modifications: &[Modification],
    held: &[Held],
    frame_num: i64,
    max_frame_num: i64,
    wrap: &dyn Fn(&Held) -> i64,
) -> Result<(), Refusal> {
    let active = list.len();
    let mut predicted = frame_num;
    for (ref_idx, modification) in modifications.iter().enumerate() {
        if ref_idx >= active {
            return Err("more list modifications than list entries");
        }
        let no_wrap = match *modification {
            Modification::Subtract(d) => {
                let n = predicted - (i64::from(d) + 1);
                if n < 0 { n + max_frame_num } else { n }
            }
            Modification::Add(d) => {
                let n = predicted + (i64::from(d) + 1);
                if n >= max_frame_num {
                    n - max_frame_num
                } else {
                    n
                }
            }
        };
        if !(0..max_frame_num).contains(&no_wrap) {
            return Err("abs_diff_pic_num out of range");
        }
        predicted = no_wrap;
        let pic_num = if no_wrap > frame_num {
            no_wrap - max_frame_num
        } else {
            no_wrap
        };
        let picture = held
            .iter()
            .find(|h| wrap(h) == pic_num)
            .ok_or("a list modification names a picture that is not held")?
            .picture;
        list.insert(ref_idx, Some(picture));
        let mut kept = ref_idx + 1;
        for c in ref_idx + 1..list.len() {
            if list[c] != Some(picture) {
                list[kept] = list[c];
                kept += 1;
            }
        }
        list.truncate(active);
    }
    Ok(())
}

/// Which pictures must decode right: those `wanted`, and every picture a needed one's lists
/// hold (`refs` from [`references`]; a list only ever holds earlier pictures).
pub(crate) fn needed(refs: &[Vec<usize>], wanted: impl Fn(usize) -> bool) -> Vec<bool> {
    let mut needed: Vec<bool> = (0..refs.len()).map(wanted).collect();
    for index in (0..refs.len()).rev() {
        if needed[index] {
            for &r in &refs[index] {
                if let Some(n) = needed.get_mut(r) {
                    *n = true;
                }
            }
        }
    }
    needed
}

#[cfg(test)]
#[path = "references_tests.rs"]
mod tests;
