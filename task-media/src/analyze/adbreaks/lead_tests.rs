//! Copies decoded by ffmpeg: the analysed pictures of a copy are the asset's, bit for bit,
//! whatever the encoder's reference structure.

use std::process::Command;

use super::*;
use crate::analyze::tools::{streams, video_index};

fn ffmpeg(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(args)
        .output()
        .expect("ffmpeg (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The MD5 of every picture from 2 to 2.5 s and from 6 to 8 s of `input`, decoded with
/// `options`.
fn pictures(options: &[&str], input: &Path) -> Vec<String> {
    let input = input.to_str().expect("a UTF-8 path");
    let mut args = vec!["-v", "error"];
    args.extend_from_slice(options);
    let select = "select=between(t\\,2\\,2.499)+between(t\\,6\\,7.999)";
    args.extend_from_slice(&["-i", input, "-an", "-vf", select]);
    args.extend_from_slice(&["-f", "framemd5", "-"]);
    ffmpeg(&args)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|m| m.trim().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_left_out_lead_pictures_leave_the_analysed_pictures_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let encoders: [(&str, &[&str]); 4] = [
        ("veryfast", &["-preset", "veryfast"]),
        ("medium", &["-preset", "medium"]),
        (
            "four references",
            &["-x264-params", "ref=4:bframes=3:weightp=2:b-adapt=2"],
        ),
        ("no B-frames", &["-preset", "veryfast", "-bf", "0"]),
    ];
    let mut cut = 0;
    for (i, (name, options)) in encoders.iter().enumerate() {
        let asset = dir.path().join(format!("a{i}.mp4"));
        let mut args = vec!["-v", "error", "-f", "lavfi", "-i"];
        args.push("testsrc2=size=640x360:rate=25:duration=9");
        args.extend_from_slice(&["-c:v", "libx264"]);
        args.extend_from_slice(options);
        args.push(asset.to_str().expect("a UTF-8 path"));
        ffmpeg(&args);
        let listed = streams("ffprobe", &asset).await.expect("streams");
        let index = video_index("ffprobe", &asset, listed.start_time)
            .await
            .expect("index");
        let keyframe = index.keyframes.partition_point(|k| *k <= 6.0) - 1;
        assert!(
            index.keyframes[keyframe] <= 4.0,
            "{name}: {:?}",
            index.keyframes
        );
        // Two windows from one keyframe: what lies between them is not analysed.
        let window = |start: f64, end: f64| Window {
            keyframe,
            start,
            end,
            silences: vec![(start, end - 1.0)],
            margin: super::super::video::Margin::Narrow,
        };
        let windows = [window(2.0, 2.5), window(6.0, 8.0)];
        let copy = dir.path().join(format!("a{i}.mkv"));
        let file = File::open(&asset).expect("open");
        let avcc = listed.video_extradata.as_deref();
        let copied = copy_window(
            &file,
            avcc,
            (
                window_packets(&index, listed.start_time, &windows),
                index.frame,
            ),
            listed.start_time,
            &windows,
            &copy,
        )
        .expect("copy");
        let Some(copied) = copied else {
            // Every picture of an all-P stream is a reference for the next: nothing to spare.
            assert_eq!(*name, "no B-frames", "{name}: nothing spared");
            continue;
        };
        println!("{name}: {} left out, {} cut", copied.left_out, copied.cut);
        assert!(copied.left_out > 0, "{name}");
        cut += copied.cut;
        let whole = pictures(&[], &asset);
        assert_eq!(whole.len(), 63, "{name}");
        assert_eq!(pictures(&["-ec", "0"], &copy), whole, "{name}");
    }
    assert!(cut > 0, "no picture was cut to its headers");
}
