//! The search for segments two fingerprints share, at any offset.
//!
//! 1. **Offsets.** Every alignment of the two sequences is scored by how many item pairs
//!    (every second pair) differ in at most [`MatchSettings::max_bit_errors`] bits. The best
//!    scored alignments that could hold a segment of the minimum length are kept.
//! 2. **Runs.** Along each kept alignment, the bit errors are averaged over a short window, and
//!    the stretches whose average is within the limit, bridged over gaps up to
//!    [`MatchSettings::max_gap_secs`], are segments when at least
//!    [`MatchSettings::min_segment_secs`] long. Their edges are then trimmed to the first and
//!    last two items in a row that agree on their own.
//! 3. **One answer per segment.** Neighbouring alignments find the same segment shifted by an
//!    item; the better one is kept.
//!
//! Cost: one pass over half the item pairs of the two sequences (about 0.2 s for two hours of
//! audio in a release build); run it off the async runtime.

use crate::{Fingerprint, FingerprintError};

/// Unrelated sound differs in about half the bits of an item.
const RANDOM_BIT_ERRORS: f64 = 16.0;
/// How many alignments are examined for runs.
const MAX_ALIGNMENTS: usize = 24;

/// How [`shared_segments`] decides that two stretches are the same sound.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchSettings {
    /// Item pairs agree when they differ in at most this many of their 32 bits (on average over
    /// a window of [`Self::window_items`]).
    pub max_bit_errors: u32,
    /// Items averaged to judge a stretch.
    pub window_items: usize,
    /// The shortest segment reported, seconds.
    pub min_segment_secs: f64,
    /// Disagreeing stretches up to this long inside a segment do not end it, seconds.
    pub max_gap_secs: f64,
    /// Added to each segment's start, seconds: see [`CHROMAPRINT_START_SHIFT_SECS`].
    pub start_shift_secs: f64,
    /// Added to each segment's end (after its last item), seconds: see
    /// [`CHROMAPRINT_END_EXTENSION_SECS`].
    pub end_extension_secs: f64,
}

impl Default for MatchSettings {
    fn default() -> Self {
        Self {
            max_bit_errors: 10,
            window_items: 8,
            min_segment_secs: 10.0,
            max_gap_secs: 1.0,
            start_shift_secs: CHROMAPRINT_START_SHIFT_SECS,
            end_extension_secs: CHROMAPRINT_END_EXTENSION_SECS,
        }
    }
}

/// A Chromaprint (algorithm 1) item describes about 1.9 s of sound from its time on (a 0.37 s
/// spectrum frame, and filters up to 16 frames wide), and agrees with another once about half
/// of that is the same sound. So the first agreeing item starts about 0.9 s before the shared
/// sound does, and the last one about 1.0 s before it ends. Measured on
/// `task-media/tests/fingerprint.rs`: 0.68 and 1.10 s before the start, 1.18 and 0.85 s before
/// the end, for two pairs of assets at different offsets.
pub const CHROMAPRINT_START_SHIFT_SECS: f64 = 0.9;
/// See [`CHROMAPRINT_START_SHIFT_SECS`].
pub const CHROMAPRINT_END_EXTENSION_SECS: f64 = 1.0;

/// A stretch of sound found in both fingerprints.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSegment {
    /// Where it starts in the first fingerprint, seconds.
    pub start: f64,
    /// Where it ends in the first fingerprint, seconds.
    pub end: f64,
    /// Where it starts in the second fingerprint, seconds.
    pub against_start: f64,
    /// Where it ends in the second fingerprint, seconds.
    pub against_end: f64,
    /// How alike the two are: 1 when every bit agrees, 0 for unrelated sound.
    pub confidence: f64,
}

/// The segments `a` and `b` share, in `a`'s order. Both must have the same time base.
pub fn shared_segments(
    a: &Fingerprint,
    b: &Fingerprint,
    settings: &MatchSettings,
) -> Result<Vec<SharedSegment>, FingerprintError> {
    if (a.item_secs - b.item_secs).abs() > 1e-9 {
        return Err(FingerprintError::TimeBaseMismatch {
            first: a.item_secs,
            second: b.item_secs,
        });
    }
    let item = a.item_secs;
    let min_items = ((settings.min_segment_secs / item).ceil() as usize).max(1);
    let mut found = Vec::new();
    for offset in best_alignments(&a.values, &b.values, settings.max_bit_errors, min_items) {
        found.extend(runs(&a.values, &b.values, offset, settings, item));
    }
    let mut kept: Vec<Run> = Vec::new();
    found.sort_by(|x, y| y.weight().total_cmp(&x.weight()));
    for run in found {
        if !kept.iter().any(|k| k.same_as(&run)) {
            kept.push(run);
        }
    }
    kept.sort_by_key(|r| r.start);
    Ok(kept
        .into_iter()
        .map(|r| {
            let shift = r.offset as f64 * item;
            let start = r.start as f64 * item + settings.start_shift_secs;
            let end = (r.end + 1) as f64 * item + settings.end_extension_secs;
            SharedSegment {
                start,
                end,
                against_start: start - shift,
                against_end: end - shift,
                confidence: (1.0 - r.mean_errors / RANDOM_BIT_ERRORS).clamp(0.0, 1.0),
            }
        })
        .collect())
}

/// A run of agreeing items of `a`, `start..=end`, against `b` shifted by `offset`
/// (`b[i - offset]` pairs with `a[i]`).
#[derive(Debug, Clone)]
struct Run {
    offset: isize,
    start: usize,
    end: usize,
    mean_errors: f64,
}

impl Run {
    fn len(&self) -> usize {
        self.end + 1 - self.start
    }

    fn weight(&self) -> f64 {
        self.len() as f64 * (RANDOM_BIT_ERRORS - self.mean_errors)
    }

    /// The same shared sound: alignments a few items apart that overlap for most of the shorter.
    fn same_as(&self, other: &Run) -> bool {
        let overlap = self.end.min(other.end) as isize - self.start.max(other.start) as isize + 1;
        (self.offset - other.offset).abs() <= 3
            && overlap > 0
            && overlap as usize * 2 >= self.len().min(other.len())
    }
}

fn errors(x: u32, y: u32) -> u32 {
    (x ^ y).count_ones()
}

/// The range of `a`'s indices that pair with `b` at `offset`.
fn overlap(n: usize, m: usize, offset: isize) -> std::ops::Range<usize> {
    let from = offset.max(0) as usize;
    let to = (m as isize + offset).clamp(0, n as isize) as usize;
    from..to.max(from)
}

/// The alignments with the most agreeing pairs, best first, among those that could hold
/// `min_items` agreeing items.
fn best_alignments(a: &[u32], b: &[u32], max_errors: u32, min_items: usize) -> Vec<isize> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let mut scored: Vec<(usize, isize)> = (-(m as isize - 1)..n as isize)
        .filter_map(|offset| {
            let range = overlap(n, m, offset);
            let agreeing = range
                .step_by(2)
                .filter(|&i| errors(a[i], b[(i as isize - offset) as usize]) <= max_errors)
                .count();
            (agreeing * 2 >= min_items / 2).then_some((agreeing, offset))
        })
        .collect();
    scored.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    scored
        .into_iter()
        .take(MAX_ALIGNMENTS)
        .map(|(_, o)| o)
        .collect()
}

/// The segments along one alignment.
fn runs(a: &[u32], b: &[u32], offset: isize, settings: &MatchSettings, item_secs: f64) -> Vec<Run> {
    let min_items = ((settings.min_segment_secs / item_secs).ceil() as usize).max(1);
    let range = overlap(a.len(), b.len(), offset);
    let first = range.start;
    let errs: Vec<u32> = range
        .map(|i| errors(a[i], b[(i as isize - offset) as usize]))
        .collect();
    let limit = f64::from(settings.max_bit_errors);
    let half = settings.window_items / 2;
    let mut sums = vec![0u64; errs.len() + 1];
    for (i, e) in errs.iter().enumerate() {
        sums[i + 1] = sums[i] + u64::from(*e);
    }
    let average = |i: usize| {
        let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(errs.len()));
        (sums[hi] - sums[lo]) as f64 / (hi - lo) as f64
    };
    let gap = (settings.max_gap_secs / item_secs) as usize;
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for i in 0..errs.len() {
        if average(i) > limit {
            continue;
        }
        current = match current {
            Some((s, e)) if i - e <= gap + 1 => Some((s, i)),
            Some(done) => {
                found.push(done);
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    found.extend(current);
    found
        .into_iter()
        .filter_map(|(mut s, mut e)| {
            // Trim to the first and last pairs of items that agree on their own (one random
            // pair agrees about once in 40; two in a row, once in 1,600).
            let disagree = |i: usize| errs[i] > settings.max_bit_errors;
            while s < e && (disagree(s) || disagree(s + 1)) {
                s += 1;
            }
            while e > s && (disagree(e) || disagree(e - 1)) {
                e -= 1;
            }
            (e + 1 - s >= min_items).then(|| Run {
                offset,
                start: first + s,
                end: first + e,
                mean_errors: (sums[e + 1] - sums[s]) as f64 / (e + 1 - s) as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
