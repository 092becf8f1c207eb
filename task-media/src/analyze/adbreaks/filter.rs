//! The results route's view of stored candidates: separation, skipped minutes, ranked groups.

use serde::{Deserialize, Serialize};

use super::{AdbreaksData, Candidate};

/// The results route's filters, in minutes (defaults 1, 5, 0, 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdbreakFilter {
    /// Two points of one group are at least this far apart.
    pub minimum_separation: f64,
    /// Two consecutive points of one group are at most this far apart.
    pub maximum_separation: f64,
    /// No point in the first minutes.
    pub skip_first: f64,
    /// No point in the last minutes.
    pub skip_last: f64,
}

impl Default for AdbreakFilter {
    fn default() -> Self {
        Self {
            minimum_separation: 1.0,
            maximum_separation: 5.0,
            skip_first: 0.0,
            skip_last: 0.0,
        }
    }
}

/// One ranked group of candidate points, as the results route returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdbreakGroup {
    /// 1 for the best group: groups are ranked by the mean score of their points.
    pub rank: usize,
    /// Seconds, ascending.
    pub candidates: Vec<f64>,
}

/// Groups the stored candidates for the results route.
///
/// Candidates inside `skip_first` / `skip_last` are dropped. A first pass takes the
/// best-scored candidates greedily, keeping every pair at least `minimum_separation` apart; a
/// second pass does the same with what is left, and so on. A pass's points are split into
/// groups wherever two consecutive points are more than `maximum_separation` apart, so no group
/// spans a longer gap.
///
/// Groups are then ranked by score, not by time: a group's score is the mean score of its
/// points (a point's score is the seconds of black and silence together around it), rank 1 is
/// the highest, and equal scores go to the group that starts earlier.
pub fn filter_adbreaks(data: &AdbreaksData, filter: &AdbreakFilter) -> Vec<AdbreakGroup> {
    let min_gap = filter.minimum_separation * 60.0;
    let max_gap = filter.maximum_separation * 60.0;
    let first = filter.skip_first * 60.0;
    let last = data.duration_secs - filter.skip_last * 60.0;
    let mut left: Vec<&Candidate> = data
        .candidates
        .iter()
        .filter(|c| c.time >= first && c.time <= last)
        .collect();
    left.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.time.total_cmp(&b.time)));
    let mut groups: Vec<Vec<&Candidate>> = Vec::new();
    while !left.is_empty() {
        let mut chosen: Vec<&Candidate> = Vec::new();
        let mut rest = Vec::new();
        for candidate in left {
            if chosen
                .iter()
                .all(|c| (c.time - candidate.time).abs() >= min_gap)
            {
                chosen.push(candidate);
            } else {
                rest.push(candidate);
            }
        }
        chosen.sort_by(|a, b| a.time.total_cmp(&b.time));
        let mut group: Vec<&Candidate> = Vec::new();
        for candidate in chosen {
            if group
                .last()
                .is_some_and(|prev| candidate.time - prev.time > max_gap)
            {
                groups.push(std::mem::take(&mut group));
            }
            group.push(candidate);
        }
        groups.push(group);
        left = rest;
    }
    let mean = |group: &[&Candidate]| {
        group.iter().map(|c| c.score).sum::<f64>() / group.len().max(1) as f64
    };
    let start = |group: &[&Candidate]| group.first().map_or(f64::INFINITY, |c| c.time);
    groups.sort_by(|a, b| {
        mean(b)
            .total_cmp(&mean(a))
            .then(start(a).total_cmp(&start(b)))
    });
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| AdbreakGroup {
            rank: i + 1,
            candidates: group.iter().map(|c| c.time).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(points: &[(f64, f64)]) -> AdbreaksData {
        AdbreaksData {
            duration_secs: 3600.0,
            candidates: points
                .iter()
                .map(|&(time, score)| Candidate { time, score })
                .collect(),
        }
    }

    #[test]
    fn filter_respects_separation_and_skips() {
        let data = data(&[
            (600.0, 3.0),
            (630.0, 2.5),
            (1200.0, 2.0),
            (3550.0, 1.9),
            (30.0, 1.0),
        ]);
        let filter = AdbreakFilter {
            skip_first: 1.0,
            skip_last: 1.0,
            maximum_separation: 15.0,
            ..AdbreakFilter::default()
        };
        let groups = filter_adbreaks(&data, &filter);
        assert_eq!(
            groups,
            vec![
                AdbreakGroup {
                    rank: 1,
                    candidates: vec![600.0, 1200.0]
                },
                AdbreakGroup {
                    rank: 2,
                    candidates: vec![630.0]
                }
            ],
            "30 s and 3550 s fall in the skipped minutes"
        );
        let split = filter_adbreaks(
            &data,
            &AdbreakFilter {
                maximum_separation: 5.0,
                ..filter
            },
        );
        let ranked: Vec<Vec<f64>> = split.into_iter().map(|g| g.candidates).collect();
        assert_eq!(ranked, vec![vec![600.0], vec![630.0], vec![1200.0]]);
    }

    /// Failed before: groups split by `maximum_separation` were ranked by time, so with the
    /// default filter a 0.5 s candidate outranked a 1.0 s one.
    #[test]
    fn ranks_follow_score_not_time() {
        let groups = filter_adbreaks(
            &data(&[(600.0, 0.5), (1200.0, 1.0)]),
            &AdbreakFilter::default(),
        );
        assert_eq!(
            groups,
            vec![
                AdbreakGroup {
                    rank: 1,
                    candidates: vec![1200.0]
                },
                AdbreakGroup {
                    rank: 2,
                    candidates: vec![600.0]
                }
            ]
        );
        // Equal scores: the earlier group first.
        let tied = filter_adbreaks(
            &data(&[(1200.0, 1.0), (600.0, 1.0)]),
            &AdbreakFilter::default(),
        );
        assert_eq!(tied[0].candidates, vec![600.0]);
        assert_eq!(tied[1].candidates, vec![1200.0]);
    }
}
