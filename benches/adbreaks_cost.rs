//! What the adbreaks analysis costs against a bare decode: CPU time (user + sys) of the ffmpeg
//! and ffprobe children, from the children's times in /proc/self/stat, in one run. Needs
//! ffmpeg (scripts/install-test-deps.sh). Prints its figures; not run by CI.
//!
//! `cargo bench --bench adbreaks_cost [-- SECONDS [gop=FRAMES]]`: the asset is a 1920x1080 25 fps
//! H.264 (libx264 veryfast, keyframes every FRAMES frames, x264's 250 by default, and at scene cuts) + 48 kHz stereo AAC file of
//! SECONDS seconds (default 1800), testsrc2 and a 440 Hz tone, with a black and silent gap every
//! minute (0.6, 1 and 2 s in turn), and every three minutes a 1 s silence over picture and a 1 s
//! black picture over sound. It is made once and cached under target/bench-media/ (30 minutes
//! take about 25 minutes of CPU to encode).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use task_media::analyze::adbreaks::{AdbreaksAnalyzer, AdbreaksData, AdbreaksMode};

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
fn asset(seconds: u32, gop: Option<u32>) -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.push("target/bench-media");
    let gop_name = gop.map_or(String::new(), |g| format!("-gop{g}"));
    let path = dir.join(format!("adbreaks-1080p-{seconds}s{gop_name}-v1.mp4"));
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
        .arg(&partial)
        .status()
        .expect("ffmpeg (scripts/install-test-deps.sh)");
    assert!(status.success(), "ffmpeg could not make the asset");
    std::fs::rename(&partial, &path).expect("rename");
    println!("made in {:.0} s", started.elapsed().as_secs_f64());
    path
}

/// CPU seconds (user + sys) of this process's reaped children so far.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which ends with ')'): state is field 3, cutime 16, cstime 17.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[13].parse::<f64>().expect("cutime") + fields[14].parse::<f64>().expect("cstime");
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds of the children and wall time of `work`.
fn measure<T>(work: impl FnOnce() -> T) -> (T, f64, Duration) {
    let cpu = children_cpu();
    let started = Instant::now();
    let out = work();
    (out, children_cpu() - cpu, started.elapsed())
}

fn bare_decode(path: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .status()
        .expect("ffmpeg");
    assert!(status.success());
}

fn duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("duration")
}

fn main() {
    let seconds: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1800);
    let gop: Option<u32> = std::env::args()
        .skip(1)
        .find_map(|a| a.strip_prefix("gop=").and_then(|g| g.parse().ok()));
    let path = asset(seconds, gop);
    let length = duration(&path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let analyse = |mode: AdbreaksMode| -> AdbreaksData {
        runtime
            .block_on(
                AdbreaksAnalyzer::default()
                    .with_mode(mode)
                    .detect(&path, length),
            )
            .expect("analysis")
    };
    let size = std::fs::metadata(&path).expect("size").len();
    println!(
        "asset: {} ({:.0} s, 1920x1080 25 fps H.264 + AAC, {:.1} Mb/s, keyframes every {} frames), {} black+silent gaps drawn",
        path.display(),
        length,
        size as f64 * 8.0 / length / 1e6,
        gop.unwrap_or(250),
        schedule(seconds).0.len()
    );
    let ((), bare, bare_wall) = measure(|| bare_decode(&path));
    let (full, full_cpu, full_wall) = measure(|| analyse(AdbreaksMode::Full));
    let (first, first_cpu, first_wall) = measure(|| analyse(AdbreaksMode::AudioFirst));
    println!("| run | CPU (user+sys of children) | wall | vs bare decode | candidates |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, cpu, wall, found) in [
        ("bare decode `ffmpeg -i X -f null -`", bare, bare_wall, None),
        (
            "adbreaks, full",
            full_cpu,
            full_wall,
            Some(full.candidates.len()),
        ),
        (
            "adbreaks, audio first",
            first_cpu,
            first_wall,
            Some(first.candidates.len()),
        ),
    ] {
        println!(
            "| {name} | {cpu:.2} s | {:.1} s | {:.3}x | {} |",
            wall.as_secs_f64(),
            cpu / bare,
            found.map_or("-".into(), |n| n.to_string())
        );
    }
    println!("audio first / full: {:.3}x CPU", first_cpu / full_cpu);
    let mut a: Vec<f64> = full.candidates.iter().map(|c| c.time).collect();
    let mut b: Vec<f64> = first.candidates.iter().map(|c| c.time).collect();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let same = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 0.05);
    println!("same candidates within 0.05 s: {same}");
}
