//! The video passes: `blackdetect` over the whole video ([`AdbreaksMode::Full`]) or only over
//! windows around the silent intervals ([`AdbreaksMode::AudioFirst`]).
//!
//! A window is decoded from the last keyframe at or before its silence starts and first analysed
//! narrowly, from two frames before the silence (or from the keyframe, if later) to two frames
//! after it: black rarely straddles the edge of a silence, and wider margins on every window
//! would decode more video after each one and leave fewer pictures before it to drop unread
//! ([`super::lead`]). Inside a window `blackdetect` reports every run (`d=0`) and the minimum is
//! applied here. Only an edge can make a run look shorter than it is, so a window where a run cut
//! by an edge is shorter than the minimum yet reaches into a silence is decoded again with wide
//! margins ([`Margin::Wide`]). Windows that overlap are merged. Last, a short black run that
//! begins at the first frame of a window analysed from its keyframe may have begun before it, so
//! that window is decoded again from the keyframe before.
//!
//! The windows are decoded several to an ffmpeg process (an input each, seeked to its keyframe,
//! with file timestamps so each black run says which window it is in), one thread per decoder.
//! Where it can, a window is decoded from a copy of its packets without the work of its lead that
//! no analysed picture depends on ([`super::lead`]).
//!
//! [`AdbreaksMode::Full`]: super::AdbreaksMode::Full
//! [`AdbreaksMode::AudioFirst`]: super::AdbreaksMode::AudioFirst

use std::path::Path;

use task_core::error::TaskError;

use futures::{StreamExt, TryStreamExt};

use super::lead;
use crate::analyze::tools::{VideoIndex, ffmpeg_args, intervals, progress_end, run, whole_video};

/// The `blackdetect` settings shared by every video pass (besides the minimum duration).
const BLACK: &str = "pix_th=0.1";

/// Black runs of a full decode, and how far the video was decoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FullVideo {
    /// Black intervals at least the minimum long.
    pub black: Vec<(f64, f64)>,
    /// Where decoding ended, seconds.
    pub decoded_to: f64,
}

/// Decodes the whole first video stream through `blackdetect`.
pub(super) async fn full_pass(
    program: &str,
    path: &Path,
    min_secs: f64,
) -> Result<FullVideo, TaskError> {
    let filter = format!("blackdetect=d={min_secs}:{BLACK}");
    let printed = whole_video(program, path, &filter, "the full video pass").await?;
    Ok(FullVideo {
        black: intervals(&printed.stderr, "black_start:", "black_end:"),
        decoded_to: progress_end(&printed.stdout),
    })
}

/// A stretch of video to decode around one or more silent intervals.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Window {
    /// Index of the keyframe decoding starts at (in [`VideoIndex::keyframes`]).
    pub keyframe: usize,
    /// Where `blackdetect` starts, seconds: the keyframe, or [`Window::margin`] before the first
    /// silence when that is later (the frames before it are decoded only as references).
    pub start: f64,
    /// Where it ends, seconds: [`Window::margin`] after the last silence.
    pub end: f64,
    /// The silent intervals it covers.
    pub silences: Vec<(f64, f64)>,
    /// How far around its silences it is analysed.
    pub margin: Margin,
}

/// How far around its silences a window is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Margin {
    /// Two frames: a run that begins or ends with the silence is seen whole (one cut by an edge
    /// may widen the window, [`widens`]). Every window is planned so.
    Narrow,
    /// A minimum interval and two frames: a black run that reaches into a silence and was cut
    /// by an edge is then seen for more than the minimum, so it counts however far beyond the
    /// edge it goes, and that does not move the candidate (clipped to the silence).
    Wide,
}

impl Margin {
    fn secs(self, index: &VideoIndex, min_secs: f64) -> f64 {
        match self {
            Margin::Narrow => 2.0 * frame(index),
            Margin::Wide => min_secs + 2.0 * frame(index),
        }
    }
}

/// A frame's length as the margins count it: at least 20 ms (an index may not know it).
fn frame(index: &VideoIndex) -> f64 {
    index.frame.max(0.02)
}

impl Window {
    /// The window decoded from `keyframe` and analysed `margin` around `silences` (ascending).
    fn around(
        index: &VideoIndex,
        keyframe: usize,
        silences: Vec<(f64, f64)>,
        margin: Margin,
        min_secs: f64,
    ) -> Self {
        let from = index.keyframes.get(keyframe).copied().unwrap_or(0.0);
        let secs = margin.secs(index, min_secs);
        let first = silences.first().map_or(from, |s| s.0);
        let last = silences.iter().map(|s| s.1).fold(first, f64::max);
        Self {
            keyframe,
            start: from.max(first - secs),
            end: last + secs,
            silences,
            margin,
        }
    }
}

/// Windows whose analysed parts are closer than this are analysed as one: opening another
/// chain costs about as much as decoding this much more video.
const MERGE_SLACK_SECS: f64 = 0.3;

/// The narrow windows to decode for `silences` (ascending), merged where their analysed parts
/// overlap. Windows that start from the same keyframe but are further apart stay apart: they
/// share one decode ([`black_in_windows`]), and what lies between them is decoded only as a
/// reference ([`super::lead`]), not analysed. A window's candidates come from its own silences
/// and the runs around them, whatever else it covers, and a window is widened from its own
/// silences.
pub(super) fn plan(silences: &[(f64, f64)], index: &VideoIndex, min_secs: f64) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    for &silence in silences {
        let keyframe = index
            .keyframes
            .partition_point(|k| *k <= silence.0 + 1e-6)
            .saturating_sub(1);
        let window = Window::around(index, keyframe, vec![silence], Margin::Narrow, min_secs);
        match windows.last_mut() {
            Some(last) if window.start <= last.end + MERGE_SLACK_SECS => {
                let mut covered = std::mem::take(&mut last.silences);
                covered.push(silence);
                *last = Window::around(index, last.keyframe, covered, Margin::Narrow, min_secs);
            }
            _ => windows.push(window),
        }
    }
    windows
}

/// Windows decoded by one ffmpeg process: each is an input of its own (seeked to its keyframe)
/// with its own `blackdetect` chain. One process instead of one per window saves ffmpeg's
/// start-up (about 0.1 s of CPU each here) and bounds the decoders alive at once.
const WINDOWS_PER_RUN: usize = 8;

/// Decoder options of a window: one thread, and no deblocking filter (about 15% of an H.264
/// decode here). Deblocking smooths block edges; a black frame has none to smooth, and the
/// equivalence tests hold the windows' candidates to the full decode's, which keeps it.
const WINDOW_DECODER: [&str; 4] = ["-threads", "1", "-skip_loop_filter", "all"];

/// ffmpeg processes decoding windows at once (each decodes with one thread).
const RUNS_AT_ONCE: usize = 2;

/// The video being analysed, as every window pass needs it.
pub(super) struct Source<'a> {
    /// The ffmpeg executable.
    pub program: &'a str,
    /// The asset.
    pub path: &'a Path,
    /// Its video's packet index.
    pub index: &'a VideoIndex,
    /// The container's start time, seconds.
    pub start_time: f64,
    /// The video's `avcC` (H.264 decoder configuration), when it has one.
    pub avcc: Option<&'a [u8]>,
    /// Whether the leads may be copied without their unneeded pictures ([`super::lead`]).
    pub drop_leads: bool,
}

/// Where to seek for `window`: between its keyframe and the next one, so decoding starts at that
/// keyframe (some demuxers, such as Matroska's, need the target well past it); 0 for the first.
pub(super) fn seek_target(index: &VideoIndex, window: &Window) -> f64 {
    if window.keyframe == 0 {
        return 0.0;
    }
    let from = index.keyframes.get(window.keyframe).copied().unwrap_or(0.0);
    let next = index
        .keyframes
        .get(window.keyframe + 1)
        .copied()
        .unwrap_or(from + 2.0);
    from + (next - from) / 2.0
}

/// Black runs per window of a batch.
type WindowRuns = Vec<Vec<(f64, f64)>>;

/// What a batch's decode spared and covered.
#[derive(Debug, Default)]
struct Decoded {
    /// Lead pictures left out.
    dropped: usize,
    /// Lead pictures cut to their headers.
    cut: usize,
    /// Seconds of video decoded, from each keyframe to its last window's end.
    secs: f64,
}

/// The windows of `windows` (ascending) that start from the same keyframe, in runs.
fn by_keyframe(windows: &[Window]) -> Vec<&[Window]> {
    windows.chunk_by(|a, b| a.keyframe == b.keyframe).collect()
}

/// Black runs (of any length) inside each of `windows` (ascending, disjoint), on the file's
/// time line, decoded by one ffmpeg process: an input per keyframe, split into a chain per
/// window.
async fn black_in_windows(
    source: &Source<'_>,
    windows: &[Window],
) -> Result<(WindowRuns, Decoded), TaskError> {
    let groups = by_keyframe(windows);
    let copies = lead::copies(source, &groups).await;
    let mut decoded = Decoded {
        dropped: copies.dropped,
        cut: copies.cut,
        secs: 0.0,
    };
    // Timestamps as in the file (-copyts), so every run says by its time which window it is in.
    let mut args = ffmpeg_args(["-copyts"]);
    let mut chains = Vec::with_capacity(windows.len() + groups.len());
    let mut w = 0;
    for (i, group) in groups.iter().enumerate() {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        args.extend(WINDOW_DECODER.map(Into::into));
        let target = seek_target(source.index, first);
        decoded.secs += last.end
            - source
                .index
                .keyframes
                .get(first.keyframe)
                .copied()
                .unwrap_or(0.0);
        if copies.has_headers_only(i) {
            args.extend(["-ec".into(), "0".into()]);
        }
        let input = match copies.file(i) {
            Some(copy) => copy.as_os_str().to_owned(),
            None if target > 0.0 => {
                args.extend([
                    "-noaccurate_seek".into(),
                    "-ss".into(),
                    format!("{target:.6}").into(),
                ]);
                source.path.as_os_str().to_owned()
            }
            None => source.path.as_os_str().to_owned(),
        };
        args.extend(["-an", "-sn", "-dn", "-i"].map(Into::into));
        args.push(input);
        let labels: Vec<String> = (0..group.len()).map(|k| format!("[d{i}_{k}]")).collect();
        chains.push(format!("[{i}:V:0]split={}{}", group.len(), labels.concat()));
        for (label, window) in labels.iter().zip(group.iter()) {
            // `trim` counts in the file's time (start time included, which may be negative); a
            // millisecond of slack keeps a first frame exactly at the start.
            chains.push(format!(
                "{label}trim=start={:.6}:end={:.6},blackdetect=d=0:{BLACK}[w{w}]",
                window.start + source.start_time - 0.001,
                window.end + source.start_time,
            ));
            w += 1;
        }
    }
    args.extend(["-filter_complex".into(), chains.join(";").into()]);
    for w in 0..w {
        args.extend([
            "-map".into(),
            format!("[w{w}]").into(),
            "-f".into(),
            "null".into(),
            "-".into(),
        ]);
    }
    let what = match (windows.first(), windows.last()) {
        (Some(first), Some(last)) => format!(
            "the video pass over {} windows in {:.3}-{:.3} s",
            windows.len(),
            first.start,
            last.end
        ),
        _ => "the video pass".to_owned(),
    };
    let printed = run("ffmpeg", source.program, args, source.path, &what).await?;
    let runs = black_runs(&printed.stderr)
        .into_iter()
        .map(|(a, b)| (a - source.start_time, b - source.start_time))
        .collect::<Vec<_>>();
    let starts: Vec<f64> = windows.iter().map(|w| w.start - 0.002).collect();
    Ok((attribute(runs, &starts), decoded))
}

/// Black runs in a log of one or more `blackdetect` filters: each run is one line with its
/// start and end. Lines without both numbers are ignored.
pub(super) fn black_runs(log: &str) -> Vec<(f64, f64)> {
    let value = |line: &str, marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    log.lines()
        .filter_map(|line| Some((value(line, "black_start:")?, value(line, "black_end:")?)))
        .collect()
}

/// Sorts `runs` into the windows they were found in: `starts` are the windows' first analysed
/// times, ascending, and each run belongs to the last window starting at or before it (windows
/// in one run do not overlap). A run before every window is dropped.
fn attribute(mut runs: Vec<(f64, f64)>, starts: &[f64]) -> Vec<Vec<(f64, f64)>> {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = vec![Vec::new(); starts.len()];
    for run in runs {
        let after = starts.partition_point(|s| *s <= run.0);
        if let Some(window) = after.checked_sub(1).and_then(|i| out.get_mut(i)) {
            window.push(run);
        }
    }
    out
}

/// Whether the first black run of a window began at its first frame, is shorter than the
/// minimum and reaches into a silence: then it may have begun before the window. Only a window
/// that starts at its keyframe can cut a run this way; an edge later than that is a margin
/// before the silence, which [`widens`] and [`Margin::Wide`] take care of.
fn clipped_at_start(
    black: &[(f64, f64)],
    index: &VideoIndex,
    window: &Window,
    min_secs: f64,
) -> bool {
    let from = index.keyframes.get(window.keyframe).copied().unwrap_or(0.0);
    window.keyframe > 0
        && window.start <= from + 1e-6
        && black.first().is_some_and(|&(a, b)| {
            (a - window.start).abs() <= 0.002
                && b - a < min_secs - 1e-6
                && window.silences.iter().any(|&(s, _)| b > s)
        })
}

/// Whether a narrow `window` is decoded again wide: a run of `black` (every run it saw) shorter
/// than the minimum may have been cut by one of its margins and reaches into a silence, so the
/// whole run may be long enough to count.
///
/// A run that counts as a narrow window saw it gives the full decode's candidate even if an
/// edge cut it, since the candidate is its overlap with a silence `(s, e)`, `(max(a, s),
/// min(b, e))`. Cut at the start, it begins at the first analysed frame, before `start + frame`
/// = `first silence start - frame`, so `max(a, s) = s` as for the whole run. Cut at the end,
/// `blackdetect` ends it at the last frame's start, at least `end - frame` =
/// `last silence end + frame`, so `min(b, e) = e` as for the whole run. (A window that starts at
/// its keyframe is [`clipped_at_start`]'s business.)
fn widens(black: &[(f64, f64)], index: &VideoIndex, window: &Window, min_secs: f64) -> bool {
    let frame = frame(index);
    let from = index.keyframes.get(window.keyframe).copied().unwrap_or(0.0);
    let first = window.silences.first().map_or(window.start, |s| s.0);
    let last = window.silences.iter().map(|s| s.1).fold(first, f64::max);
    // The first frame is within a frame after `start`; a run that lasts to the last frame ends
    // at its start, within a frame before `end` (a half frame more of slack for rounding).
    let cut_at_start = |a: f64, b: f64| {
        window.start > from + 1e-6 && a <= window.start + frame + 0.002 && b > first
    };
    let cut_at_end = |a: f64, b: f64| b >= window.end - 1.5 * frame && a < last;
    window.margin == Margin::Narrow
        && black
            .iter()
            .any(|&(a, b)| b - a < min_secs - 1e-6 && (cut_at_start(a, b) || cut_at_end(a, b)))
}

/// Groups `windows` (ascending by keyframe) into runs of at most [`WINDOWS_PER_RUN`] whose
/// windows do not overlap (a window moved back a keyframe may reach into the one before),
/// keeping windows from the same keyframe together.
fn batches(windows: Vec<Window>) -> Vec<Vec<Window>> {
    let mut out: Vec<Vec<Window>> = Vec::new();
    for window in windows {
        let fits = |batch: &Vec<Window>| {
            batch.len() < WINDOWS_PER_RUN
                && batch
                    .last()
                    .is_none_or(|last| last.end + 0.01 < window.start)
        };
        // Beside a window from the same keyframe when it fits: they then share a decode.
        let sibling = out.iter().position(|batch| {
            batch.last().is_some_and(|l| l.keyframe == window.keyframe) && fits(batch)
        });
        match sibling.or_else(|| out.iter().position(fits)) {
            Some(batch) => out[batch].push(window),
            None => out.push(vec![window]),
        }
    }
    out
}

/// Decodes `windows` (widening a narrow window, and moving a window's start back a keyframe at a
/// time, while a black run that may count may have been cut by an edge) and returns, per
/// window, its silences and its black runs at least `min_secs` long.
pub(super) async fn windows_pass(
    source: &Source<'_>,
    windows: Vec<Window>,
    min_secs: f64,
    work: &mut super::AdbreaksWork,
) -> Result<Vec<(Window, Vec<(f64, f64)>)>, TaskError> {
    let mut done = Vec::with_capacity(windows.len());
    let mut pending = windows;
    while !pending.is_empty() {
        pending.sort_by(|a, b| a.start.total_cmp(&b.start));
        let groups = batches(std::mem::take(&mut pending));
        work.video_runs += groups.len();
        let runs: Vec<_> = groups
            .iter()
            .map(|group| black_in_windows(source, group))
            .collect();
        let found: Vec<(WindowRuns, Decoded)> = futures::stream::iter(runs)
            .buffered(RUNS_AT_ONCE)
            .try_collect()
            .await?;
        let index = source.index;
        for (group, (black, decoded)) in groups.into_iter().zip(found) {
            work.frames_dropped += decoded.dropped;
            work.frames_cut += decoded.cut;
            work.video_secs += decoded.secs;
            for (window, black) in group.into_iter().zip(black) {
                let from = index.keyframes.get(window.keyframe).copied().unwrap_or(0.0);
                let again = if widens(&black, index, &window, min_secs) {
                    tracing::debug!(from, "black run cut by a narrow window: widening it");
                    work.windows_widened += 1;
                    Some((window.keyframe, Margin::Wide))
                } else if clipped_at_start(&black, index, &window, min_secs) {
                    tracing::debug!(
                        from,
                        "black run at a window's first frame: one keyframe back"
                    );
                    Some((window.keyframe - 1, window.margin))
                } else {
                    None
                };
                if let Some((keyframe, margin)) = again {
                    let silences = window.silences;
                    pending.push(Window::around(index, keyframe, silences, margin, min_secs));
                    continue;
                }
                let black = black
                    .into_iter()
                    .filter(|(a, b)| b - a >= min_secs - 1e-6)
                    .collect();
                done.push((window, black));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
