//! The video passes: `blackdetect` over the whole video ([`AdbreaksMode::Full`]) or only over
//! windows around the silent intervals ([`AdbreaksMode::AudioFirst`]).
//!
//! A window is decoded from the last keyframe at or before its silence starts, and analysed from
//! a minimum interval plus two frames before the silence (or from the keyframe, if later) to a
//! minimum interval plus two frames after it, so a black run that overlaps the silence is seen
//! for at least the minimum interval whenever it is that long. Windows that overlap are merged.
//! Inside a window `blackdetect` reports every run (`d=0`) and the minimum is applied here, with
//! one correction: a short black run that begins at the first frame of a window analysed from
//! its keyframe may have begun before it, so that window is decoded again from the keyframe
//! before.
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
    /// Where `blackdetect` starts, seconds: the keyframe, or [`lead`] before the first silence
    /// when that is later (the frames before it are decoded only as references).
    pub start: f64,
    /// Where it ends, seconds.
    pub end: f64,
    /// The silent intervals it covers.
    pub silences: Vec<(f64, f64)>,
}

/// Windows closer than this are decoded as one: opening another input costs about as much as
/// decoding this much more video.
const MERGE_SLACK_SECS: f64 = 0.3;

/// How long before a silence the black is looked at: a minimum interval and two frames. A black
/// run that reaches into the silence and began before that is then seen for more than the
/// minimum, so it counts however long before it began, and where it began does not move the
/// candidate (which starts where the silence does).
fn lead(index: &VideoIndex, min_secs: f64) -> f64 {
    min_secs + 2.0 * index.frame.max(0.02)
}

/// Where `blackdetect` starts in a window decoded from `keyframe` whose first silence starts at
/// `silence`.
fn analysis_start(index: &VideoIndex, keyframe: usize, silence: f64, min_secs: f64) -> f64 {
    let from = index.keyframes.get(keyframe).copied().unwrap_or(0.0);
    from.max(silence - lead(index, min_secs))
}

/// The windows to decode for `silences` (ascending), merged where they overlap.
pub(super) fn plan(silences: &[(f64, f64)], index: &VideoIndex, min_secs: f64) -> Vec<Window> {
    let tail = min_secs + 2.0 * index.frame.max(0.02);
    let mut windows: Vec<Window> = Vec::new();
    for &(start, end) in silences {
        let keyframe = index
            .keyframes
            .partition_point(|k| *k <= start + 1e-6)
            .saturating_sub(1);
        let begins = index.keyframes.get(keyframe).copied().unwrap_or(0.0);
        match windows.last_mut() {
            Some(last) if begins <= last.end + MERGE_SLACK_SECS => {
                last.end = last.end.max(end + tail);
                last.silences.push((start, end));
            }
            _ => windows.push(Window {
                keyframe,
                start: analysis_start(index, keyframe, start, min_secs),
                end: end + tail,
                silences: vec![(start, end)],
            }),
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

/// Lead pictures left out and cut to their headers.
type Spared = (usize, usize);

/// Black runs (of any length) inside each of `windows` (ascending, disjoint), on the file's
/// time line, decoded by one ffmpeg process, and how many lead packets were dropped.
async fn black_in_windows(
    source: &Source<'_>,
    windows: &[Window],
) -> Result<(WindowRuns, Spared), TaskError> {
    let copies = lead::copies(source, windows).await;
    // Timestamps as in the file (-copyts), so every run says by its time which window it is in.
    let mut args = ffmpeg_args(["-copyts"]);
    let mut chains = Vec::with_capacity(windows.len());
    for (i, window) in windows.iter().enumerate() {
        args.extend(WINDOW_DECODER.map(Into::into));
        let target = seek_target(source.index, window);
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
        // `trim` counts in the file's time (start time included, which may be negative); a
        // millisecond of slack keeps a first frame exactly at the start.
        chains.push(format!(
            "[{i}:V:0]trim=start={:.6}:end={:.6},blackdetect=d=0:{BLACK}[w{i}]",
            window.start + source.start_time - 0.001,
            window.end + source.start_time,
        ));
    }
    args.extend(["-filter_complex".into(), chains.join(";").into()]);
    for i in 0..windows.len() {
        args.extend([
            "-map".into(),
            format!("[w{i}]").into(),
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
    Ok((attribute(runs, &starts), (copies.dropped, copies.cut)))
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
/// that starts at its keyframe can cut a run that matters (one that starts [`lead`] before the
/// silence sees such a run for longer than the minimum).
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

/// Groups `windows` (ascending by keyframe) into runs of at most [`WINDOWS_PER_RUN`] whose
/// windows do not overlap (a window moved back a keyframe may reach into the one before).
fn batches(windows: Vec<Window>) -> Vec<Vec<Window>> {
    let mut out: Vec<Vec<Window>> = Vec::new();
    for window in windows {
        let fits = |batch: &Vec<Window>| {
            batch.len() < WINDOWS_PER_RUN
                && batch
                    .last()
                    .is_none_or(|last| last.end + 0.01 < window.start)
        };
        match out.iter_mut().find(|b| fits(b)) {
            Some(batch) => batch.push(window),
            None => out.push(vec![window]),
        }
    }
    out
}

/// Decodes `windows` (moving a window's start back a keyframe at a time while a black run may
/// have been cut by it) and returns, per window, its silences and its black runs at least
/// `min_secs` long.
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
        let found: Vec<(WindowRuns, Spared)> = futures::stream::iter(runs)
            .buffered(RUNS_AT_ONCE)
            .try_collect()
            .await?;
        let index = source.index;
        for (group, (black, (dropped, cut))) in groups.into_iter().zip(found) {
            work.frames_dropped += dropped;
            work.frames_cut += cut;
            for (mut window, black) in group.into_iter().zip(black) {
                let from = index.keyframes.get(window.keyframe).copied().unwrap_or(0.0);
                work.video_secs += window.end - from;
                if clipped_at_start(&black, index, &window, min_secs) {
                    tracing::debug!(
                        from,
                        "black run at a window's first frame: one keyframe back"
                    );
                    window.keyframe -= 1;
                    let silence = window.silences.first().map_or(window.start, |s| s.0);
                    window.start = analysis_start(index, window.keyframe, silence, min_secs);
                    pending.push(window);
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
mod tests {
    use super::*;

    fn index() -> VideoIndex {
        VideoIndex {
            keyframes: vec![0.0, 10.0, 20.0, 21.0, 30.0],
            end: 40.0,
            frame: 0.04,
            packets: Vec::new(),
            keyframe_packets: Vec::new(),
        }
    }

    #[test]
    fn windows_start_at_the_keyframe_before_and_merge_when_they_overlap() {
        let silences = [
            (0.0, 0.8),
            (12.0, 13.0),
            (14.0, 15.0),
            (21.5, 22.0),
            (39.0, 40.0),
        ];
        let windows = plan(&silences, &index(), 0.5);
        let ms = |t: f64| (t * 1000.0).round() / 1000.0;
        let got: Vec<(usize, f64, f64, usize)> = windows
            .iter()
            .map(|w| (w.keyframe, ms(w.start), ms(w.end), w.silences.len()))
            .collect();
        // 12-13 and 14-15 start from the same keyframe; 21.5 starts at the keyframe at 21 s
        // (later than 0.58 s before the silence), the others 0.58 s before their silence.
        assert_eq!(
            got,
            vec![
                (0, 0.0, 1.38, 1),
                (1, 11.42, 15.58, 2),
                (3, 21.0, 22.58, 1),
                (4, 38.42, 40.58, 1)
            ]
        );
    }

    #[test]
    fn a_short_run_at_the_first_frame_may_have_begun_earlier() {
        let window = Window {
            keyframe: 3,
            start: 21.0,
            end: 22.58,
            silences: vec![(21.0, 22.0)],
        };
        assert!(clipped_at_start(&[(21.0, 21.3)], &index(), &window, 0.5));
        assert!(!clipped_at_start(&[(21.0, 21.6)], &index(), &window, 0.5));
        assert!(!clipped_at_start(&[(21.1, 21.3)], &index(), &window, 0.5));
        // Analysed from before the keyframe: a run cut there is longer than the minimum anyway.
        let earlier = Window {
            keyframe: 2,
            start: 20.42,
            ..window
        };
        assert!(!clipped_at_start(&[(20.42, 20.6)], &index(), &earlier, 0.5));
    }

    /// What ffmpeg 5.1 printed for three windows decoded by one process (runs of different
    /// filters interleaved, in file time), with other lines and odd ones around them.
    const MULTI: &str = "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.mp4':\n\
        [h264 @ 0x5603] co located POCs unavailable\n\
        [blackdetect @ 0x55bad72bfdc0] black_start:105.021 black_end:106.061 black_duration:1.04\n\
        [blackdetect @ 0x55bad72bf380] black_start:45.021 black_end:45.661 black_duration:0.64\n\
        [blackdetect @ 0x55bad72bf380] black_start:46 black_end:\n\
        [blackdetect @ 0x55bad72bf380] black_start:nan black_end:47 black_duration:nan\n\
        [blackdetect @ 0x55bad72bfdc0] black_start:107.5 black_end:108.021 black_duration:0.52\n\
        black_end:1.0 black_start:\n\
        [blackdetect @ 0x55bad72c1840] black_start:165.021 black_end:167.061 black_duration:2.04\n\
        frame= 250 fps=0.0 q=-0.0 Lsize=N/A time=00:00:10.00 bitrate=N/A speed=  20x\n";

    #[test]
    fn runs_of_many_windows_are_read_from_one_log_and_sorted_by_time() {
        let runs = black_runs(MULTI);
        assert_eq!(
            runs,
            vec![
                (105.021, 106.061),
                (45.021, 45.661),
                (107.5, 108.021),
                (165.021, 167.061)
            ]
        );
        let windows = attribute(runs, &[44.4, 104.4, 164.4]);
        assert_eq!(
            windows,
            vec![
                vec![(45.021, 45.661)],
                vec![(105.021, 106.061), (107.5, 108.021)],
                vec![(165.021, 167.061)]
            ]
        );
        // A run before every window belongs to none; an empty log gives empty windows.
        assert_eq!(attribute(vec![(1.0, 2.0)], &[5.0]), vec![vec![]]);
        assert_eq!(attribute(black_runs(""), &[5.0, 9.0]), vec![vec![], vec![]]);
        assert!(black_runs("black_start:\nblack_start:1e400 black_end:2\n").is_empty());
    }

    #[test]
    fn batches_hold_windows_that_do_not_overlap() {
        let window = |start: f64, end: f64| Window {
            keyframe: 0,
            start,
            end,
            silences: vec![],
        };
        let sizes: Vec<usize> = batches(
            (0..20)
                .map(|i| window(f64::from(i) * 10.0, f64::from(i) * 10.0 + 5.0))
                .collect(),
        )
        .iter()
        .map(Vec::len)
        .collect();
        assert_eq!(
            sizes,
            vec![WINDOWS_PER_RUN, WINDOWS_PER_RUN, 20 - 2 * WINDOWS_PER_RUN]
        );
        let overlapping = batches(vec![window(0.0, 5.0), window(3.0, 8.0), window(9.0, 12.0)]);
        assert_eq!(overlapping.len(), 2, "{overlapping:?}");
        assert_eq!(overlapping[0].len(), 2);
    }
}
