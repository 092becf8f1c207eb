//! What an analysis costs: CPU time (user + sys) of the ffmpeg and ffprobe children, from the
//! children's times in /proc/self/stat, or of the calling thread (/proc/thread-self/stat), and
//! the wall time; a bare decode as the yardstick.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// CPU seconds (user + sys) of this process's reaped children so far.
pub fn children_cpu() -> f64 {
    stat_cpu("/proc/self/stat", 16)
}

/// CPU seconds (user + sys) of this process (all its threads) and its reaped children so far.
pub fn process_and_children_cpu() -> f64 {
    process_cpu() + children_cpu()
}

/// CPU seconds (user + sys) of this process (all its threads) so far.
pub fn process_cpu() -> f64 {
    stat_cpu("/proc/self/stat", 14)
}

/// CPU seconds (user + sys) of the calling thread so far.
pub fn thread_cpu() -> f64 {
    stat_cpu("/proc/thread-self/stat", 14)
}

/// The sum of the user field `user` and the sys field after it of a /proc stat file, seconds.
fn stat_cpu(path: &str, user: usize) -> f64 {
    let stat = std::fs::read_to_string(path).expect("/proc stat");
    // Fields after the command name (which ends with ')'): state is field 3, utime 14, stime
    // 15, cutime 16, cstime 17.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[user - 3].parse::<f64>().expect("user time")
        + fields[user - 2].parse::<f64>().expect("sys time");
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
pub fn measure<T>(work: impl FnOnce() -> T) -> (T, f64, Duration) {
    measure_by(children_cpu, work)
}

/// CPU seconds of this process and its children, and wall time, of `work` (for work split
/// between ffmpeg and this process).
pub fn measure_with_self<T>(work: impl FnOnce() -> T) -> (T, f64, Duration) {
    measure_by(process_and_children_cpu, work)
}

/// CPU seconds of the children and wall time of an analysis run on `runtime`; panics when it
/// fails, naming `what`.
pub fn measure_on<T, E: std::fmt::Debug>(
    runtime: &tokio::runtime::Runtime,
    what: &str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> (T, f64, Duration) {
    measure(|| runtime.block_on(work).expect(what))
}

/// CPU seconds of the calling thread and wall time of `work` (work done on this thread).
pub fn measure_thread<T>(work: impl FnOnce() -> T) -> (T, f64, Duration) {
    measure_by(thread_cpu, work)
}

fn measure_by<T>(clock: fn() -> f64, work: impl FnOnce() -> T) -> (T, f64, Duration) {
    let cpu = clock();
    let started = Instant::now();
    let out = work();
    (out, clock() - cpu, started.elapsed())
}

/// `ffmpeg -i X -f null -`: every stream decoded, nothing more.
pub fn bare_decode(path: &Path) {
    null_decode(&[], path);
}

/// `ffmpeg -vn -sn -dn -i X -f null -`: the audio alone decoded (the demuxer still reads the
/// video packets interleaved with it).
pub fn bare_audio_decode(path: &Path) {
    null_decode(&["-vn", "-sn", "-dn"], path);
}

fn null_decode(input_options: &[&str], path: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(input_options)
        .arg("-i")
        .arg(path)
        .args(["-f", "null", "-"])
        .status()
        .expect("ffmpeg");
    assert!(status.success());
}

pub fn duration(path: &Path) -> f64 {
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

/// `dir/name`, made by `make` (given a partial path to write) unless it is there already.
pub fn cached(dir: &Path, name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let path = dir.join(name);
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(dir).expect("the asset directory");
    let partial = dir.join(format!("partial-{name}"));
    println!("making {} (once; cached)...", path.display());
    let started = Instant::now();
    make(&partial);
    std::fs::rename(&partial, &path).expect("rename");
    println!("made in {:.0} s", started.elapsed().as_secs_f64());
    path
}
