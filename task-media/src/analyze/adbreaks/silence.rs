//! The audio passes: silence on every audio track, from the audio alone.
//!
//! Each track is decoded by its own ffmpeg run with `-vn` (video is not even demuxed into a
//! decoder), through `silencedetect`. A stretch counts as silent only where every track is silent
//! (every channel of every track, since `silencedetect` on a multi-channel track already requires
//! all its channels). A track that ends before the others is silent from its end on.

use std::path::Path;

use task_core::error::TaskError;

use crate::analyze::tools::{ffmpeg_args, intervals, progress_end, run};

/// The silence of an asset's audio, and how far the audio was decoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Silence {
    /// Silent on every track, at least the minimum interval long, ascending.
    pub intervals: Vec<(f64, f64)>,
    /// Where the longest track's decoding ended, seconds (0 without audio).
    pub decoded_to: f64,
}

/// The silent intervals of one track and where its decoding ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TrackSilence {
    /// As `silencedetect` reported them.
    pub intervals: Vec<(f64, f64)>,
    /// The end of the track's last decoded audio, seconds.
    pub decoded_to: f64,
}

/// Runs `silencedetect` over audio track `track` (0-based, among audio streams) of `path`.
pub(super) async fn track_silence(
    program: &str,
    path: &Path,
    track: usize,
    min_secs: f64,
) -> Result<TrackSilence, TaskError> {
    let mut args = ffmpeg_args(["-progress", "pipe:1", "-vn", "-sn", "-dn", "-i"]);
    args.push(path.as_os_str().to_owned());
    args.extend(
        [
            "-map".to_owned(),
            format!("0:a:{track}"),
            "-af".to_owned(),
            format!("silencedetect=n=-50dB:d={min_secs}"),
            "-f".to_owned(),
            "null".to_owned(),
            "-".to_owned(),
        ]
        .map(Into::into),
    );
    let what = format!("the audio pass over audio track {}", track + 1);
    let printed = run("ffmpeg", program, args, path, &what).await?;
    Ok(TrackSilence {
        intervals: intervals(&printed.stderr, "silence_start:", "silence_end:"),
        decoded_to: progress_end(&printed.stdout),
    })
}

/// Silence on every track: each track is taken as silent past its own end, up to `end` (the
/// furthest anything was decoded); intersections shorter than `min_secs` are dropped.
pub(super) fn common_silence(tracks: &[TrackSilence], end: f64, min_secs: f64) -> Silence {
    let decoded_to = tracks.iter().map(|t| t.decoded_to).fold(0.0, f64::max);
    let mut common: Option<Vec<(f64, f64)>> = None;
    for track in tracks {
        let mut own = track.intervals.clone();
        if track.decoded_to < end {
            own.push((track.decoded_to, end));
        }
        let own = union(own);
        common = Some(match common {
            None => own,
            Some(so_far) => intersect(&so_far, &own),
        });
    }
    Silence {
        intervals: common
            .unwrap_or_default()
            .into_iter()
            .filter(|(a, b)| b - a >= min_secs - 1e-9)
            .collect(),
        decoded_to,
    }
}

/// Sorts intervals and merges the ones that overlap or touch.
fn union(mut list: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    list.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(list.len());
    for (a, b) in list {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The intersection of two sorted lists of disjoint intervals.
fn intersect(x: &[(f64, f64)], y: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < x.len() && j < y.len() {
        let start = x[i].0.max(y[j].0);
        let end = x[i].1.min(y[j].1);
        if end > start {
            out.push((start, end));
        }
        if x[i].1 < y[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(intervals: &[(f64, f64)], decoded_to: f64) -> TrackSilence {
        TrackSilence {
            intervals: intervals.to_vec(),
            decoded_to,
        }
    }

    #[test]
    fn silence_must_hold_on_every_track() {
        let first = track(&[(10.0, 12.0), (20.0, 22.0), (40.0, 41.0)], 60.0);
        let second = track(&[(10.5, 13.0), (40.8, 45.0)], 60.0);
        let silence = common_silence(&[first.clone(), second], 60.0, 0.5);
        // 20-22 plays on the second track; 40.8-41 is shorter than the minimum.
        assert_eq!(silence.intervals, vec![(10.5, 12.0)]);
        assert_eq!(silence.decoded_to, 60.0);
        let alone = common_silence(std::slice::from_ref(&first), 60.0, 0.5);
        assert_eq!(alone.intervals, first.intervals);
    }

    #[test]
    fn a_track_that_ended_is_silent_and_no_audio_is_no_silence() {
        let long = track(&[(50.0, 60.0)], 60.0);
        let short = track(&[(10.0, 11.0)], 55.0);
        let silence = common_silence(&[long, short], 60.0, 0.5);
        assert_eq!(silence.intervals, vec![(55.0, 60.0)]);
        assert_eq!(common_silence(&[], 60.0, 0.5).intervals, vec![]);
    }
}
