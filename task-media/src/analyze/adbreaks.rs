//! The `adbreaks` product: candidate ad-break points where black frames and silence coincide.
//!
//! ffmpeg's `blackdetect` and `silencedetect` filters find black and silent intervals in one
//! decoding pass; every overlap of a black interval with a silent one is a candidate, placed at
//! the middle of the overlap and scored by the overlap's length (longer is a likelier break).

use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use task_core::error::TaskError;
use task_runner::step::StepContext;

use super::Analyzer;
use crate::error::MediaError;
use crate::media::LocalMedia;
use crate::probe::ProbeOutput;

/// One candidate ad-break point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Seconds from the start.
    pub time: f64,
    /// Seconds of black and silence together around it.
    pub score: f64,
}

/// The stored data of an adbreaks result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdbreaksData {
    /// The asset's duration, seconds.
    pub duration_secs: f64,
    /// Candidates, best first.
    pub candidates: Vec<Candidate>,
}

/// The ffmpeg-based adbreaks analyzer.
#[derive(Debug, Clone)]
pub struct AdbreaksAnalyzer {
    /// The ffmpeg executable.
    pub program: String,
    /// Shortest black or silent interval that counts, seconds.
    pub min_interval_secs: f64,
}

impl Default for AdbreaksAnalyzer {
    fn default() -> Self {
        Self {
            program: "ffmpeg".into(),
            min_interval_secs: 0.5,
        }
    }
}

impl AdbreaksAnalyzer {
    /// Runs the detection on a local file.
    pub async fn detect(&self, path: &Path, duration_secs: f64) -> Result<AdbreaksData, TaskError> {
        let d = self.min_interval_secs;
        let output = tokio::process::Command::new(&self.program)
            .args(["-hide_banner", "-nostats", "-i"])
            .arg(path)
            .args([
                "-vf",
                &format!("blackdetect=d={d}:pix_th=0.1"),
                "-af",
                &format!("silencedetect=n=-50dB:d={d}"),
                "-f",
                "null",
                "-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                TaskError::from(MediaError::ToolMissing {
                    tool: "ffmpeg",
                    message: e.to_string(),
                })
            })?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            return Err(TaskError::AnalysisFailed {
                message: format!("ffmpeg failed: {}", last.trim()),
            });
        }
        let black = intervals(&log, "black_start:", "black_end:");
        let silence = intervals(&log, "silence_start:", "silence_end:");
        Ok(AdbreaksData {
            duration_secs,
            candidates: coincide(&black, &silence),
        })
    }
}

/// Pairs `start`/`end` markers of ffmpeg's detection log into intervals.
fn intervals(log: &str, start_marker: &str, end_marker: &str) -> Vec<(f64, f64)> {
    let value = |line: &str, marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mut found = Vec::new();
    let mut open = None;
    for line in log.lines() {
        if let Some(start) = value(line, start_marker) {
            open = Some(start);
        }
        if let Some(end) = value(line, end_marker)
            && let Some(start) = open.take()
        {
            found.push((start, end));
        }
    }
    found
}

/// Overlaps of black and silent intervals, best (longest) first.
fn coincide(black: &[(f64, f64)], silence: &[(f64, f64)]) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = black
        .iter()
        .flat_map(|b| silence.iter().map(move |s| (b.0.max(s.0), b.1.min(s.1))))
        .filter(|(start, end)| end > start)
        .map(|(start, end)| Candidate {
            time: round_ms((start + end) / 2.0),
            score: round_ms(end - start),
        })
        .collect();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.time.total_cmp(&b.time)));
    candidates
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[async_trait]
impl Analyzer for AdbreaksAnalyzer {
    async fn analyze(
        &self,
        _ctx: &StepContext,
        probe: &ProbeOutput,
        media: &LocalMedia,
    ) -> Result<serde_json::Value, TaskError> {
        let data = self.detect(media.path(), probe.duration_secs).await?;
        serde_json::to_value(&data).map_err(|e| TaskError::Internal {
            message: format!("adbreaks data: {e}"),
        })
    }
}

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
    /// 1 for the best group.
    pub rank: usize,
    /// Seconds, ascending.
    pub candidates: Vec<f64>,
}

/// Groups the stored candidates for the results route.
///
/// Candidates inside `skip_first` / `skip_last` are dropped. Rank 1 takes the best-scored
/// candidates greedily, keeping every pair at least `minimum_separation` apart; rank 2 does the
/// same with what is left, and so on. A group ends where the gap to its next point would exceed
/// `maximum_separation`: the points after such a gap start a new group of the same selection
/// pass, so no group spans a gap longer than the maximum.
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
    let mut groups = Vec::new();
    while !left.is_empty() {
        let mut chosen: Vec<f64> = Vec::new();
        let mut rest = Vec::new();
        for candidate in left {
            if chosen.iter().all(|t| (t - candidate.time).abs() >= min_gap) {
                chosen.push(candidate.time);
            } else {
                rest.push(candidate);
            }
        }
        chosen.sort_by(f64::total_cmp);
        let mut group: Vec<f64> = Vec::new();
        for time in chosen {
            if group.last().is_some_and(|prev| time - prev > max_gap) {
                groups.push(std::mem::take(&mut group));
            }
            group.push(time);
        }
        groups.push(group);
        left = rest;
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, candidates)| AdbreakGroup {
            rank: i + 1,
            candidates,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[blackdetect @ 0x1] black_start:119.8 black_end:122.2 black_duration:2.4\n\
        [silencedetect @ 0x2] silence_start: 120.0\n\
        [silencedetect @ 0x2] silence_end: 122.0 | silence_duration: 2.0\n\
        [blackdetect @ 0x1] black_start:400 black_end:401 black_duration:1\n\
        [silencedetect @ 0x2] silence_start: 500\n\
        [silencedetect @ 0x2] silence_end: 501 | silence_duration: 1\n";

    #[test]
    fn only_coinciding_black_and_silence_are_candidates() {
        let black = intervals(LOG, "black_start:", "black_end:");
        let silence = intervals(LOG, "silence_start:", "silence_end:");
        assert_eq!(black, vec![(119.8, 122.2), (400.0, 401.0)]);
        assert_eq!(silence, vec![(120.0, 122.0), (500.0, 501.0)]);
        assert_eq!(
            coincide(&black, &silence),
            vec![Candidate {
                time: 121.0,
                score: 2.0
            }]
        );
    }

    #[test]
    fn filter_respects_separation_and_skips() {
        let data = AdbreaksData {
            duration_secs: 3600.0,
            candidates: [
                (600.0, 3.0),
                (630.0, 2.5),
                (1200.0, 2.0),
                (3550.0, 1.9),
                (30.0, 1.0),
            ]
            .into_iter()
            .map(|(time, score)| Candidate { time, score })
            .collect(),
        };
        let filter = AdbreakFilter {
            skip_first: 1.0,
            skip_last: 1.0,
            maximum_separation: 15.0,
            ..AdbreakFilter::default()
        };
        let groups = filter_adbreaks(&data, &filter);
        assert_eq!(
            groups[0],
            AdbreakGroup {
                rank: 1,
                candidates: vec![600.0, 1200.0]
            }
        );
        assert_eq!(
            groups[1],
            AdbreakGroup {
                rank: 2,
                candidates: vec![630.0]
            }
        );
        assert_eq!(
            groups.len(),
            2,
            "30 s and 3550 s fall in the skipped minutes: {groups:?}"
        );
        let split = filter_adbreaks(
            &data,
            &AdbreakFilter {
                maximum_separation: 5.0,
                ..filter
            },
        );
        assert_eq!(split[0].candidates, vec![600.0]);
        assert_eq!(split[1].candidates, vec![1200.0]);
    }
}
