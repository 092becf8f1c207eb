//! Intro and end credits of an episode, from the sound it shares with its siblings.

use crate::{Fingerprint, FingerprintError, MatchSettings, SharedSegment, shared_segments};

/// Where an intro and credits may be found.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerRules {
    /// The intro starts within this fraction of the episode from its start...
    pub intro_start_fraction: f64,
    /// ...and no later than this, seconds.
    pub intro_start_max_secs: f64,
    /// The credits end within this many seconds of the episode's end (or within
    /// [`Self::credits_end_fraction`] of its length, whichever is more).
    pub credits_end_secs: f64,
    /// See [`Self::credits_end_secs`].
    pub credits_end_fraction: f64,
    /// How two episodes are compared (its `min_segment_secs` is the shortest marker).
    pub matching: MatchSettings,
}

impl Default for MarkerRules {
    fn default() -> Self {
        Self {
            intro_start_fraction: 0.4,
            intro_start_max_secs: 900.0,
            credits_end_secs: 30.0,
            credits_end_fraction: 0.1,
            matching: MatchSettings::default(),
        }
    }
}

/// A marker: where it is in the episode, which siblings share it, how alike they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Start in the episode, seconds.
    pub start: f64,
    /// End in the episode, seconds.
    pub end: f64,
    /// The positions (in the `siblings` given to [`find_markers`]) of the siblings that share
    /// it, in order.
    pub shared_with: Vec<usize>,
    /// The median confidence of the siblings' segments (see [`SharedSegment`]).
    pub confidence: f64,
}

/// What [`find_markers`] found; either may be missing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Markers {
    /// The longest segment near the start shared with at least one sibling.
    pub intro: Option<Marker>,
    /// The longest shared segment that reaches the end.
    pub credits: Option<Marker>,
}

/// The intro and credits of `episode` (of `duration_secs`), from the segments it shares with
/// each of `siblings` (the other episodes of its season).
///
/// - The **intro** is a shared segment that starts within the first
///   [`MarkerRules::intro_start_fraction`] of the episode (and before
///   [`MarkerRules::intro_start_max_secs`]) and does not reach the credits window.
/// - The **credits** are a shared segment that ends within the last
///   [`MarkerRules::credits_end_secs`] (or [`MarkerRules::credits_end_fraction`]) of the
///   episode. A segment that runs to the episode's last fingerprint item ends at the end of
///   the episode: the fingerprint's last items describe sound up to its end, not beyond.
///
/// Each is the stretch shared with the most siblings (then the longest), its bounds the
/// medians of the segments each of those siblings shares: one sibling whose own sound happens
/// to agree a second longer does not move them.
///
/// Segments shorter than the matching's `min_segment_secs` are not markers. With no sibling,
/// or none sharing anything, both are None.
pub fn find_markers(
    episode: &Fingerprint,
    duration_secs: f64,
    siblings: &[Fingerprint],
    rules: &MarkerRules,
) -> Result<Markers, FingerprintError> {
    let intro_limit = (duration_secs * rules.intro_start_fraction).min(rules.intro_start_max_secs);
    let credits_from = duration_secs
        - rules
            .credits_end_secs
            .max(duration_secs * rules.credits_end_fraction);
    // The end of the episode's fingerprint, with the end extension the matching adds.
    let last_item_end = episode.covered_secs() + rules.matching.end_extension_secs;
    let mut intro = Vec::new();
    let mut credits = Vec::new();
    for (index, sibling) in siblings.iter().enumerate() {
        for mut segment in shared_segments(episode, sibling, &rules.matching)? {
            if segment.end >= last_item_end - episode.item_secs {
                segment.end = duration_secs;
            }
            segment.end = segment.end.min(duration_secs);
            // A duration shorter than the fingerprint (a probe that disagrees with the
            // decode) cuts segments short; what is left must still be a segment.
            if segment.end - segment.start < rules.matching.min_segment_secs {
                continue;
            }
            if segment.end >= credits_from {
                credits.push((segment, index));
            } else if segment.start <= intro_limit {
                intro.push((segment, index));
            }
        }
    }
    Ok(Markers {
        intro: consensus(intro),
        credits: consensus(credits),
    })
}

/// Bounds of two segments closer than this are the same stretch seen through two siblings.
const SAME_STRETCH_SECS: f64 = 3.0;

/// The marker agreed by the siblings: the candidates (segment, sibling) are grouped into
/// stretches (bounds within [`SAME_STRETCH_SECS`]); the stretch shared with the most siblings
/// wins (then the longest), and its bounds are the medians of its segments', so that one
/// sibling whose sound happens to agree a little longer does not move them.
fn consensus(mut candidates: Vec<(SharedSegment, usize)>) -> Option<Marker> {
    candidates.sort_by(|a, b| a.0.start.total_cmp(&b.0.start));
    let mut groups: Vec<Vec<(SharedSegment, usize)>> = Vec::new();
    for candidate in candidates {
        let near = groups.iter_mut().find(|group| {
            group.iter().any(|(s, _)| {
                (s.start - candidate.0.start).abs() <= SAME_STRETCH_SECS
                    && (s.end - candidate.0.end).abs() <= SAME_STRETCH_SECS
            })
        });
        match near {
            Some(group) => group.push(candidate),
            None => groups.push(vec![candidate]),
        }
    }
    let length =
        |group: &[(SharedSegment, usize)]| median(group.iter().map(|(s, _)| s.end - s.start));
    let best = groups.into_iter().max_by(|a, b| {
        let siblings = |g: &[(SharedSegment, usize)]| {
            let mut ids: Vec<usize> = g.iter().map(|(_, i)| *i).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        };
        siblings(a)
            .cmp(&siblings(b))
            .then(length(a).total_cmp(&length(b)))
    })?;
    let mut shared_with: Vec<usize> = best.iter().map(|(_, i)| *i).collect();
    shared_with.sort_unstable();
    shared_with.dedup();
    Some(Marker {
        start: median(best.iter().map(|(s, _)| s.start)),
        end: median(best.iter().map(|(s, _)| s.end)),
        shared_with,
        confidence: median(best.iter().map(|(s, _)| s.confidence)),
    })
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic_items;

    const ITEM: f64 = 0.1238;

    fn secs(n: f64) -> usize {
        (n / ITEM).round() as usize
    }

    /// An episode of `len` seconds: unrelated sound (from `seed`), the shared intro at
    /// `intro_at`, and the shared credits at the end.
    fn episode(seed: u32, len: f64, intro_at: f64, intro: &[u32], credits: &[u32]) -> Fingerprint {
        let total = secs(len);
        let mut items = synthetic_items(seed, total);
        let at = secs(intro_at);
        items[at..at + intro.len()].copy_from_slice(intro);
        let from = total - credits.len();
        items[from..].copy_from_slice(credits);
        Fingerprint::new(ITEM, items).expect("valid")
    }

    fn exact() -> MarkerRules {
        MarkerRules {
            matching: MatchSettings {
                start_shift_secs: 0.0,
                end_extension_secs: 0.0,
                ..MatchSettings::default()
            },
            ..MarkerRules::default()
        }
    }

    #[test]
    fn the_shared_intro_and_credits_are_found_at_each_offset() {
        let intro = synthetic_items(100, secs(30.0));
        let credits = synthetic_items(200, secs(20.0));
        let offsets = [5.0, 12.0, 31.0, 47.0];
        let season: Vec<Fingerprint> = offsets
            .iter()
            .enumerate()
            .map(|(i, at)| episode(i as u32 + 1, 150.0, *at, &intro, &credits))
            .collect();
        for (i, at) in offsets.iter().enumerate() {
            let siblings: Vec<Fingerprint> = season
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, f)| f.clone())
                .collect();
            let duration = season[i].covered_secs();
            let found = find_markers(&season[i], duration, &siblings, &exact()).expect("found");
            let intro = found.intro.expect("an intro");
            assert!((intro.start - at).abs() < 0.3, "episode {i}: {intro:?}");
            assert!(
                (intro.end - (at + 30.0)).abs() < 0.3,
                "episode {i}: {intro:?}"
            );
            assert_eq!(intro.shared_with, [0, 1, 2], "episode {i}: every sibling");
            let credits = found.credits.expect("credits");
            assert!(
                (credits.start - (duration - 20.0)).abs() < 0.3,
                "{credits:?}"
            );
            assert_eq!(credits.end, duration);
        }
    }

    #[test]
    fn nothing_shared_or_no_sibling_gives_no_marker() {
        let lone = Fingerprint::new(ITEM, synthetic_items(1, secs(120.0))).expect("valid");
        let other = Fingerprint::new(ITEM, synthetic_items(2, secs(120.0))).expect("valid");
        let rules = MarkerRules::default();
        assert_eq!(
            find_markers(&lone, 120.0, &[], &rules).expect("ok"),
            Markers::default()
        );
        assert_eq!(
            find_markers(&lone, 120.0, &[other], &rules).expect("ok"),
            Markers::default()
        );
    }

    #[test]
    fn a_segment_shared_in_the_middle_is_neither() {
        let shared = synthetic_items(9, secs(20.0));
        let mut a = synthetic_items(1, secs(200.0));
        let mut b = synthetic_items(2, secs(200.0));
        a[secs(100.0)..secs(100.0) + shared.len()].copy_from_slice(&shared);
        b[secs(90.0)..secs(90.0) + shared.len()].copy_from_slice(&shared);
        let a = Fingerprint::new(ITEM, a).expect("valid");
        let b = Fingerprint::new(ITEM, b).expect("valid");
        let found = find_markers(&a, a.covered_secs(), &[b], &exact()).expect("ok");
        assert_eq!(found, Markers::default());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the fingerprints (lengths, sharing, an episode shorter than its own
        /// fingerprint says), the search never panics and markers lie inside the episode with
        /// their start before their end.
        #[test]
        fn markers_stay_inside_the_episode(
            seeds in proptest::collection::vec(0u32..6, 1..5),
            lengths in proptest::collection::vec(0usize..900, 5),
            duration in 0.0f64..150.0,
        ) {
            let shared = synthetic_items(99, 300);
            let make = |i: usize, seed: u32| {
                let mut items = synthetic_items(seed, lengths[i]);
                let at = lengths[i] / 3;
                let n = shared.len().min(lengths[i] - at);
                items[at..at + n].copy_from_slice(&shared[..n]);
                Fingerprint::new(ITEM, items).expect("valid")
            };
            let episode = make(0, 1);
            let siblings: Vec<Fingerprint> =
                seeds.iter().enumerate().map(|(i, s)| make(i + 1, *s)).collect();
            let found = find_markers(&episode, duration, &siblings, &MarkerRules::default())
                .expect("same time base");
            for marker in [found.intro, found.credits].into_iter().flatten() {
                proptest::prop_assert!(marker.start <= marker.end, "{marker:?}");
                proptest::prop_assert!(marker.end <= duration.max(0.0) + 1e-9, "{marker:?}");
                proptest::prop_assert!(marker.shared_with.iter().all(|i| *i < siblings.len()));
            }
        }
    }
}
