use super::*;

fn index() -> VideoIndex {
    VideoIndex {
        keyframes: vec![0.0, 10.0, 20.0, 21.0, 30.0, 35.0],
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
        (21.05, 22.0),
        (29.3, 29.6),
        (30.1, 30.8),
        (39.0, 40.0),
    ];
    let windows = plan(&silences, &index(), 0.5);
    let ms = |t: f64| (t * 1000.0).round() / 1000.0;
    let got: Vec<(usize, f64, f64, usize)> = windows
        .iter()
        .map(|w| (w.keyframe, ms(w.start), ms(w.end), w.silences.len()))
        .collect();
    // Two frames (0.08 s) around the silences. 12-13 and 14-15 start from the same keyframe, as
    // do 21.05-22 and 29.3-29.6, but are analysed apart (they share a decode); 21.05 starts at
    // the keyframe at 21 s (later than 0.08 s before the silence). 30.1-30.8 starts from the
    // next keyframe, at 30 s, and is analysed apart from 29.3-29.6, more than the slack after
    // its narrow end at 29.68 s (the wide ends would have met).
    assert_eq!(
        got,
        vec![
            (0, 0.0, 0.88, 1),
            (1, 11.92, 13.08, 1),
            (1, 13.92, 15.08, 1),
            (3, 21.0, 22.08, 1),
            (3, 29.22, 29.68, 1),
            (4, 30.02, 30.88, 1),
            (5, 38.92, 40.08, 1)
        ]
    );
    // Silences whose analysed parts come within the slack are analysed as one.
    let close = plan(&[(12.0, 13.0), (13.3, 14.0)], &index(), 0.5);
    assert_eq!(close.len(), 1);
    assert_eq!((ms(close[0].start), ms(close[0].end)), (11.92, 14.08));
    assert!(windows.iter().all(|w| w.margin == Margin::Narrow));
    // Widened: 0.58 s around the silences, from the same keyframe.
    let wide = Window::around(&index(), 1, vec![(12.0, 13.0)], Margin::Wide, 0.5);
    assert_eq!((ms(wide.start), ms(wide.end)), (11.42, 13.58));
}

#[test]
fn a_short_run_cut_by_a_narrow_edge_into_a_silence_widens_the_window() {
    let narrow = Window::around(&index(), 1, vec![(12.0, 13.0)], Margin::Narrow, 0.5);
    assert_eq!((narrow.start, narrow.end), (11.92, 13.08));
    let widens = |run: (f64, f64)| widens(&[(10.5, 10.8), run], &index(), &narrow, 0.5);
    // Cut at the start (the first frame is at 11.92 s or within a frame after it).
    assert!(widens((11.92, 12.3)));
    assert!(widens((11.96, 12.3)));
    assert!(!widens((11.92, 12.5)), "long enough as seen");
    assert!(!widens((11.92, 12.0)), "not into the silence");
    assert!(!widens((12.0, 12.3)), "begins with the silence");
    // Cut at the end (ended at the last frame's start, 13.04 s).
    assert!(widens((12.8, 13.04)));
    assert!(!widens((12.5, 13.04)), "long enough as seen");
    assert!(!widens((13.02, 13.04)), "begins after the silence");
    assert!(!widens((12.8, 13.0)), "ends two frames before the end");
    // A wide window does not widen again.
    let wide = Window {
        margin: Margin::Wide,
        ..narrow.clone()
    };
    assert!(!super::widens(&[(11.92, 12.3)], &index(), &wide, 0.5));
    // At its keyframe the start cuts what the keyframe does: moved back, not widened.
    let at_keyframe = Window::around(&index(), 3, vec![(21.05, 22.0)], Margin::Narrow, 0.5);
    assert_eq!(at_keyframe.start, 21.0);
    assert!(!super::widens(&[(21.0, 21.3)], &index(), &at_keyframe, 0.5));
    assert!(clipped_at_start(
        &[(21.0, 21.3)],
        &index(),
        &at_keyframe,
        0.5
    ));
}

#[test]
fn a_short_run_at_the_first_frame_may_have_begun_earlier() {
    let window = Window::around(&index(), 3, vec![(21.0, 22.0)], Margin::Wide, 0.5);
    assert_eq!((window.start, window.end), (21.0, 22.58));
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
        margin: Margin::Narrow,
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
