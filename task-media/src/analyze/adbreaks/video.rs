//! The video passes: `blackdetect` over the whole video ([`AdbreaksMode::Full`]) or only over
//! windows around the silent intervals ([`AdbreaksMode::AudioFirst`]).
//!
//! A window starts at the last keyframe at or before its silence starts (ffmpeg has to decode
//! from there anyway, so everything decoded is analysed) and ends a minimum interval plus two
//! frames after the silence ends, so a black run that overlaps the silence is seen for at least
//! the minimum interval whenever it is that long. Windows that overlap are merged. Inside a
//! window `blackdetect` reports every run (`d=0`) and the minimum is applied here, with one
//! correction: a short black run that begins at the window's first frame may have begun before
//! it, so that window is decoded again from the keyframe before.
//!
//! [`AdbreaksMode::Full`]: super::AdbreaksMode::Full
//! [`AdbreaksMode::AudioFirst`]: super::AdbreaksMode::AudioFirst

use std::path::Path;

use task_core::error::TaskError;

use super::tools::{VideoIndex, ffmpeg_args, intervals, progress_end, run};

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
    let mut args = ffmpeg_args(["-progress", "pipe:1", "-an", "-sn", "-dn", "-i"]);
    args.push(path.as_os_str().to_owned());
    args.extend(
        [
            "-map".to_owned(),
            "0:V:0".to_owned(),
            "-vf".to_owned(),
            format!("blackdetect=d={min_secs}:{BLACK}"),
            "-f".to_owned(),
            "null".to_owned(),
            "-".to_owned(),
        ]
        .map(Into::into),
    );
    let printed = run("ffmpeg", program, args, path, "the full video pass").await?;
    Ok(FullVideo {
        black: intervals(&printed.stderr, "black_start:", "black_end:"),
        decoded_to: progress_end(&printed.stdout),
    })
}

/// A stretch of video to decode around one or more silent intervals.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Window {
    /// Index of the keyframe it starts at (in [`VideoIndex::keyframes`]).
    pub keyframe: usize,
    /// Where it ends, seconds.
    pub end: f64,
    /// The silent intervals it covers.
    pub silences: Vec<(f64, f64)>,
}

/// Windows closer than this are decoded as one: a new ffmpeg costs about as much as decoding
/// this much more video.
const MERGE_SLACK_SECS: f64 = 0.3;

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
                end: end + tail,
                silences: vec![(start, end)],
            }),
        }
    }
    windows
}

/// Black runs (of any length) inside `window`, on the file's time line.
async fn black_in_window(
    program: &str,
    path: &Path,
    index: &VideoIndex,
    window: &Window,
) -> Result<Vec<(f64, f64)>, TaskError> {
    let from = index.keyframes.get(window.keyframe).copied().unwrap_or(0.0);
    // Seek between the window's keyframe and the next one without dropping what comes before
    // the seek point: decoding starts at that keyframe (some demuxers, such as Matroska's, need
    // the target well past it), and times in the log count from the target.
    let target = if window.keyframe == 0 {
        0.0
    } else {
        let next = index
            .keyframes
            .get(window.keyframe + 1)
            .copied()
            .unwrap_or(from + 2.0);
        from + (next - from) / 2.0
    };
    let mut args = ffmpeg_args::<_, String>([]);
    if target > 0.0 {
        args.extend([
            "-noaccurate_seek".into(),
            "-ss".into(),
            format!("{target:.6}").into(),
        ]);
    }
    args.extend(["-an", "-sn", "-dn", "-i"].map(Into::into));
    args.push(path.as_os_str().to_owned());
    args.extend(
        [
            "-map".to_owned(),
            "0:V:0".to_owned(),
            "-vf".to_owned(),
            format!(
                "trim=end={:.6},blackdetect=d=0:{BLACK}",
                window.end - target
            ),
            "-f".to_owned(),
            "null".to_owned(),
            "-".to_owned(),
        ]
        .map(Into::into),
    );
    let what = format!("the video pass over {from:.3}-{:.3} s", window.end);
    let printed = run("ffmpeg", program, args, path, &what).await?;
    Ok(intervals(&printed.stderr, "black_start:", "black_end:")
        .into_iter()
        .map(|(a, b)| (a + target, b + target))
        .collect())
}

/// Whether the first black run of a window began at its first frame, is shorter than the
/// minimum and reaches into a silence: then it may have begun before the window.
fn clipped_at_start(black: &[(f64, f64)], from: f64, window: &Window, min_secs: f64) -> bool {
    black.first().is_some_and(|&(a, b)| {
        (a - from).abs() <= 0.002
            && b - a < min_secs - 1e-6
            && window.silences.iter().any(|&(s, _)| b > s)
    })
}

/// Decodes `window` (moving its start back a keyframe at a time while a black run may have been
/// cut by it) and returns its black runs at least `min_secs` long.
pub(super) async fn window_pass(
    program: &str,
    path: &Path,
    index: &VideoIndex,
    mut window: Window,
    min_secs: f64,
    work: &mut super::AdbreaksWork,
) -> Result<Vec<(f64, f64)>, TaskError> {
    loop {
        let black = black_in_window(program, path, index, &window).await?;
        let from = index.keyframes.get(window.keyframe).copied().unwrap_or(0.0);
        work.video_runs += 1;
        work.video_secs += window.end - from;
        if window.keyframe > 0 && clipped_at_start(&black, from, &window, min_secs) {
            tracing::debug!(
                from,
                "black run at a window's first frame: one keyframe back"
            );
            window.keyframe -= 1;
            continue;
        }
        return Ok(black
            .into_iter()
            .filter(|(a, b)| b - a >= min_secs - 1e-6)
            .collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> VideoIndex {
        VideoIndex {
            keyframes: vec![0.0, 10.0, 20.0, 21.0, 30.0],
            end: 40.0,
            frame: 0.04,
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
        let got: Vec<(usize, f64, usize)> = windows
            .iter()
            .map(|w| {
                (
                    w.keyframe,
                    (w.end * 1000.0).round() / 1000.0,
                    w.silences.len(),
                )
            })
            .collect();
        // 12-13 and 14-15 start from the same keyframe; 21.5 starts at the keyframe at 21 s.
        assert_eq!(
            got,
            vec![(0, 1.38, 1), (1, 15.58, 2), (3, 22.58, 1), (4, 40.58, 1)]
        );
    }

    #[test]
    fn a_short_run_at_the_first_frame_may_have_begun_earlier() {
        let window = Window {
            keyframe: 3,
            end: 22.58,
            silences: vec![(21.0, 22.0)],
        };
        assert!(clipped_at_start(&[(21.0, 21.3)], 21.0, &window, 0.5));
        assert!(!clipped_at_start(&[(21.0, 21.6)], 21.0, &window, 0.5));
        assert!(!clipped_at_start(&[(21.1, 21.3)], 21.0, &window, 0.5));
    }
}
