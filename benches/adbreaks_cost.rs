//! What the adbreaks analysis costs against a bare decode: CPU time (user + sys) of this
//! process (which reads packets and writes the lead copies) and its ffmpeg and ffprobe
//! children, from /proc/self/stat, in one run: audio first, a bare decode, audio first, the
//! full analysis, audio first (the median of the three is compared). Needs ffmpeg
//! (scripts/install-test-deps.sh). Prints its figures; not run by CI or `cargo test`.
//!
//! `cargo bench --bench adbreaks_cost [-- [first-only]]` (the bench profile: the copies are
//! written by this process): two assets, both 1920x1080 25 fps
//! H.264 (libx264 veryfast, x264's keyframe every 250 frames and at scene cuts) + 48 kHz stereo
//! AAC, testsrc2 and a 440 Hz tone:
//! - a 300 s segment with a black and silent gap every minute (0.6, 1 and 2 s in turn), and every
//!   three minutes a 1 s silence over picture and a 1 s black picture over sound;
//! - a 30-minute asset made of six copies of that segment (concat demuxer, `-c copy`; encoding
//!   30 minutes of 1080p takes about 26 minutes here), so 42 silent intervals.
//!
//! Both are made once and cached under target/bench-media/. `first-only` runs audio first once
//! and nothing else (for quick iterations; the figures need all the runs). `keyint=N` makes
//! (and caches) the assets with a keyframe at most every N frames instead of x264's 250 (e.g.
//! 50: the 2 s GOPs of streaming encodes), since audio first decodes each window from the
//! keyframe before its silence.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use task_media::analyze::adbreaks::{AdbreaksAnalyzer, AdbreaksData, AdbreaksMode, AdbreaksWork};

#[path = "support/cost.rs"]
mod cost;
use cost::{bare_decode, duration, measure_with_self, process_cpu};

/// The stretches drawn into the asset: (black+silent gaps, silent only, black only).
type Spans = Vec<(f64, f64)>;

fn schedule(seconds: u32) -> (Spans, Spans, Spans) {
    let inside = |spans: Vec<(f64, f64)>| -> Spans {
        spans
            .into_iter()
            .filter(|(_, end)| *end < f64::from(seconds))
            .collect()
    };
    let gaps = (0..seconds / 60)
        .map(|k| {
            let start = f64::from(45 + 60 * k);
            (start, start + [0.6, 1.0, 2.0][k as usize % 3])
        })
        .collect();
    let every_three = |first: u32| {
        (0..seconds / 180 + 1)
            .map(|k| f64::from(first + 180 * k))
            .map(|start| (start, start + 1.0))
            .collect()
    };
    (
        inside(gaps),
        inside(every_three(100)),
        inside(every_three(130)),
    )
}

fn enable(spans: &[(f64, f64)]) -> String {
    spans
        .iter()
        .map(|(a, b)| format!("between(t,{a},{b})"))
        .collect::<Vec<_>>()
        .join("+")
}

/// Makes the asset unless it is cached; returns its path.
fn asset(seconds: u32, keyint: Option<u32>) -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.push("target/bench-media");
    let gop = keyint.map_or(String::new(), |k| format!("-k{k}"));
    let path = dir.join(format!("adbreaks-1080p-{seconds}s-v1{gop}.mp4"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("target/bench-media");
    let (gaps, silent, black) = schedule(seconds);
    let mut pictures: Spans = gaps.iter().chain(&black).copied().collect();
    pictures.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut sound: Spans = gaps.iter().chain(&silent).copied().collect();
    sound.sort_by(|a, b| a.0.total_cmp(&b.0));
    let partial = dir.join("partial.mp4");
    println!("making {} (once; cached)...", path.display());
    let started = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size=1920x1080:rate=25:duration={seconds}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .arg("-vf")
        .arg(format!(
            "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{}'",
            enable(&pictures)
        ))
        .arg("-af")
        .arg(format!("volume=enable='{}':volume=0", enable(&sound)))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-ac",
            "2",
            "-movflags",
            "+faststart",
        ])
        .args(keyint.map_or(Vec::new(), |k| vec!["-g".to_string(), k.to_string()]))
        .arg(&partial)
        .status()
        .expect("ffmpeg (scripts/install-test-deps.sh)");
    assert!(status.success(), "ffmpeg could not make the asset");
    std::fs::rename(&partial, &path).expect("rename");
    println!("made in {:.0} s", started.elapsed().as_secs_f64());
    path
}

/// The segment repeated `copies` times (concat demuxer, no re-encoding), cached beside it.
fn repeated(segment: &Path, copies: u32) -> PathBuf {
    let stem = segment.file_stem().and_then(|s| s.to_str()).expect("name");
    let path = segment.with_file_name(format!("{stem}-x{copies}.mp4"));
    if path.exists() {
        return path;
    }
    let list = segment.with_file_name("concat-list.txt");
    let name = segment.file_name().and_then(|s| s.to_str()).expect("name");
    std::fs::write(&list, format!("file '{name}'\n").repeat(copies as usize)).expect("list");
    let partial = segment.with_file_name("partial-concat.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "concat", "-safe", "0", "-i"])
        .arg(&list)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&partial)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not concatenate the segment");
    std::fs::rename(&partial, &path).expect("rename");
    path
}

/// One asset's runs: audio first, then (unless `first_only`) a bare decode, audio first, the
/// full analysis and audio first again.
fn bench(runtime: &tokio::runtime::Runtime, path: &Path, gaps: usize, first_only: bool) {
    let length = duration(path);
    let analyse = |mode: AdbreaksMode| -> (AdbreaksData, AdbreaksWork) {
        runtime
            .block_on(
                AdbreaksAnalyzer::default()
                    .with_mode(mode)
                    .detect_with_work(path, length),
            )
            .expect("analysis")
    };
    let size = std::fs::metadata(path).expect("size").len();
    println!(
        "\nasset: {} ({:.0} s, 1920x1080 25 fps H.264 + AAC, {:.1} Mb/s), {gaps} black+silent gaps drawn",
        path.display(),
        length,
        size as f64 * 8.0 / length / 1e6,
    );
    // Audio first three times, before, between and after the two whole decodes: on a shared
    // machine the same work costs more or less CPU from one minute to the next, and the median
    // of three places is fairer to both sides than one run placed first or last.
    let own = process_cpu();
    let mut firsts = vec![measure_with_self(|| analyse(AdbreaksMode::AudioFirst))];
    let own = process_cpu() - own;
    let bare = (!first_only).then(|| measure_with_self(|| bare_decode(path)));
    if !first_only {
        firsts.push(measure_with_self(|| analyse(AdbreaksMode::AudioFirst)));
    }
    let full = (!first_only).then(|| measure_with_self(|| analyse(AdbreaksMode::Full)));
    if !first_only {
        firsts.push(measure_with_self(|| analyse(AdbreaksMode::AudioFirst)));
    }
    let mut cpus: Vec<f64> = firsts.iter().map(|f| f.1).collect();
    cpus.sort_by(f64::total_cmp);
    let first_cpu = cpus[cpus.len() / 2];
    let ((first, work), _, first_wall) = firsts.swap_remove(0);
    let bare_cpu = bare.as_ref().map(|b| b.1);
    let ratio = |cpu: f64| bare_cpu.map_or("-".into(), |b| format!("{:.3}x", cpu / b));
    println!(
        "| run | CPU (user+sys, this process and children) | wall | vs bare decode | candidates |"
    );
    println!("| --- | --- | --- | --- | --- |");
    if let Some(((), cpu, wall)) = &bare {
        println!(
            "| bare decode `ffmpeg -i X -f null -` | {cpu:.2} s | {:.1} s | 1.000x | - |",
            wall.as_secs_f64()
        );
    }
    if let Some(((data, _), cpu, wall)) = &full {
        println!(
            "| adbreaks, full | {cpu:.2} s | {:.1} s | {} | {} |",
            wall.as_secs_f64(),
            ratio(*cpu),
            data.candidates.len()
        );
    }
    let each: Vec<String> = cpus.iter().map(|c| format!("{c:.2} s")).collect();
    println!(
        "| adbreaks, audio first (median of {}: {}) | {first_cpu:.2} s | {:.1} s | **{}** | {} |",
        cpus.len(),
        each.join(", "),
        first_wall.as_secs_f64(),
        ratio(first_cpu),
        first.candidates.len()
    );
    println!("audio first: {own:.2} s of its CPU in this process (the lead copies)");
    println!(
        "audio first: {} silent intervals, {} windows ({} widened), {} video ffmpeg runs, \
         {:.1} s of video decoded, lead pictures: {} left out, {} cut to their headers",
        work.silences,
        work.windows,
        work.windows_widened,
        work.video_runs,
        work.video_secs,
        work.frames_dropped,
        work.frames_cut
    );
    if let Some(((full, _), full_cpu, _)) = &full {
        println!("audio first / full: {:.3}x CPU", first_cpu / full_cpu);
        let mut a: Vec<f64> = full.candidates.iter().map(|c| c.time).collect();
        let mut b: Vec<f64> = first.candidates.iter().map(|c| c.time).collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let same = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 0.05);
        println!("same candidates within 0.05 s: {same}");
    }
}

fn main() {
    let first_only = std::env::args().any(|a| a == "first-only");
    let keyint = std::env::args()
        .find_map(|a| a.strip_prefix("keyint=").map(str::to_owned))
        .map(|k| k.parse::<u32>().expect("keyint=N: a number of frames"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let segment = asset(300, keyint);
    let long = repeated(&segment, 6);
    let gaps = schedule(300).0.len();
    bench(&runtime, &segment, gaps, first_only);
    bench(&runtime, &long, 6 * gaps, first_only);
}
