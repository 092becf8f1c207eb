//! What the fingerprint and markers products cost, in one run. Needs ffmpeg
//! (scripts/install-test-deps.sh). Prints its figures; not run by CI or `cargo test`.
//!
//! `cargo test --bench products_cost --config 'profile.test.package.task-fingerprint.opt-level=3'
//! --config 'profile.dev.package.task-fingerprint.opt-level=3'` (the comparisons of 2 run in
//! this binary: without the override task-fingerprint is built at opt-level 0, and one episode
//! took over 20 s of CPU instead of about 5 s):
//! 1. **fingerprint** against a bare decode of the same asset (CPU time, user + sys, of the
//!    ffmpeg and ffprobe children, so the test profile measures what the bench profile would),
//!    with the scenes analysis beside it: 300 s of 1280x720 25 fps H.264 (testsrc2, libx264
//!    veryfast) with 48 kHz stereo AAC of pseudo-random notes (task-media's test sound). Made
//!    once and cached under target/bench-media/.
//! 2. **markers**: no media is decoded; the CPU (user + sys) of this thread, from
//!    /proc/thread-self/stat, of `find_markers` for one 45-minute episode against its 9 siblings
//!    and for each episode of a season of 10, on synthetic fingerprints sharing an intro and
//!    credits, beside the fingerprints those comparisons need, extrapolated from 1.

use std::path::PathBuf;
use std::process::Command;

use task_fingerprint::{Fingerprint, FingerprintData, MarkerRules, find_markers, synthetic_items};
use task_media::analyze::fingerprint::{ALGORITHM, CHROMAPRINT_ITEM_SECS, FingerprintAnalyzer};
use task_media::analyze::scenes::ScenesAnalyzer;

#[path = "support/cost.rs"]
mod cost;
#[path = "../task-media/tests/support/mod.rs"]
mod support;

const ASSET_SECS: f64 = 300.0;
const EPISODE_SECS: f64 = 45.0 * 60.0;
const EPISODES: usize = 10;
const INTRO_SECS: f64 = 60.0;
const CREDITS_SECS: f64 = 40.0;

/// Makes the asset unless it is cached; returns its path.
fn asset() -> PathBuf {
    let dir = support::workspace_root().join("target/bench-media");
    cost::cached(&dir, "products-720p-300s-v1.mp4", |partial| {
        let mut command = Command::new("ffmpeg");
        command.args(["-v", "error", "-y", "-f", "lavfi", "-i"]);
        command.arg(format!("testsrc2=s=1280x720:r=25:d={ASSET_SECS}"));
        command.args(["-f", "lavfi", "-i", &support::sound(1, ASSET_SECS)]);
        command.args(["-map", "0:v", "-map", "1:a", "-pix_fmt", "yuv420p"]);
        command.args(["-c:v", "libx264", "-preset", "veryfast"]);
        command.args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]);
        support::run(command.arg(partial));
    })
}

/// Episode `e` of the season: its own opening (60 s + 25 s per episode), the shared intro, its
/// own body, the shared credits to the end.
fn episode(e: usize) -> Fingerprint {
    let items = |secs: f64| (secs / CHROMAPRINT_ITEM_SECS).round() as usize;
    let seed = 100 + 10 * e as u32;
    let opening = 60.0 + 25.0 * e as f64;
    let body = EPISODE_SECS - opening - INTRO_SECS - CREDITS_SECS;
    let mut values = synthetic_items(seed, items(opening));
    values.extend(synthetic_items(1, items(INTRO_SECS)));
    values.extend(synthetic_items(seed + 1, items(body)));
    values.extend(synthetic_items(2, items(CREDITS_SECS)));
    Fingerprint::new(CHROMAPRINT_ITEM_SECS, values).expect("fingerprint")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let path = asset();
    let length = cost::duration(&path);

    let ((), bare_cpu, bare_wall) = cost::measure(|| cost::bare_decode(&path));
    let ((), audio_cpu, audio_wall) = cost::measure(|| cost::bare_audio_decode(&path));
    let (fingerprint, fp_cpu, fp_wall) = cost::measure_on(
        &runtime,
        "fingerprint",
        FingerprintAnalyzer::default().fingerprint(&path, length),
    );
    let (scenes, scenes_cpu, scenes_wall) = cost::measure_on(
        &runtime,
        "scenes",
        ScenesAnalyzer::default().detect(&path, length),
    );
    let items = fingerprint.decode().expect("decode").values.len();
    println!(
        "\n1. asset: {} ({length:.0} s, 1280x720 25 fps H.264 + 48 kHz stereo AAC)",
        path.display()
    );
    println!("| run | CPU (user+sys of children) | wall | vs bare decode | found |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |name: &str, cpu: f64, wall: std::time::Duration, found: &str| {
        println!(
            "| {name} | {cpu:.2} s | {:.1} s | {:.3}x | {found} |",
            wall.as_secs_f64(),
            cpu / bare_cpu
        );
    };
    row(
        "bare decode `ffmpeg -i X -f null -`",
        bare_cpu,
        bare_wall,
        "",
    );
    row("bare audio decode `-vn`", audio_cpu, audio_wall, "");
    row(
        "fingerprint (stream listing + audio to Chromaprint)",
        fp_cpu,
        fp_wall,
        &format!("{items} items"),
    );
    row(
        "scenes",
        scenes_cpu,
        scenes_wall,
        &format!("{} shots", scenes.shots.len()),
    );

    println!("\n2. markers (CPU of this thread)");
    let season: Vec<Fingerprint> = (0..EPISODES).map(episode).collect();
    let stored: Vec<String> = season
        .iter()
        .map(|f| {
            serde_json::to_string(&FingerprintData::new(f, EPISODE_SECS, ALGORITHM)).expect("json")
        })
        .collect();
    let rules = MarkerRules::default();
    let (read, read_cpu, read_wall) = cost::measure_thread(|| {
        stored
            .iter()
            .map(|json| {
                serde_json::from_str::<FingerprintData>(json)
                    .expect("json")
                    .decode()
                    .expect("decode")
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(read, season);
    let others = |e: usize| -> Vec<Fingerprint> {
        (0..EPISODES)
            .filter(|&o| o != e)
            .map(|o| season[o].clone())
            .collect()
    };
    let siblings = others(0);
    let (one, one_cpu, one_wall) = cost::measure_thread(|| {
        find_markers(&season[0], EPISODE_SECS, &siblings, &rules).expect("markers")
    });
    let found = |m: &task_fingerprint::Markers| m.intro.is_some() && m.credits.is_some();
    assert!(found(&one), "episode 0: {one:?}");
    let (all, season_cpu, season_wall) = cost::measure_thread(|| {
        (0..EPISODES)
            .map(|e| find_markers(&season[e], EPISODE_SECS, &others(e), &rules).expect("markers"))
            .collect::<Vec<_>>()
    });
    let with_both = all.iter().filter(|m| found(m)).count();
    let fp_per_audio_sec = fp_cpu / length;
    let episode_fp = fp_per_audio_sec * EPISODE_SECS;
    println!(
        "season: {EPISODES} episodes of {:.0} min ({} items each), a {INTRO_SECS:.0} s intro \
         at 60-{:.0} s and {CREDITS_SECS:.0} s credits shared",
        EPISODE_SECS / 60.0,
        season[0].values.len(),
        60.0 + 25.0 * (EPISODES - 1) as f64
    );
    println!("| run | CPU | wall | found |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| fingerprint of one episode (from 1: {fp_per_audio_sec:.4} s CPU per s of audio) | \
         {episode_fp:.1} s | | |"
    );
    println!(
        "| fingerprints of the season | {:.1} s | | |",
        episode_fp * EPISODES as f64
    );
    println!(
        "| reading the {EPISODES} stored fingerprints (JSON, decode) | {read_cpu:.2} s | {:.2} s | |",
        read_wall.as_secs_f64()
    );
    println!(
        "| find_markers, one episode against {} siblings | {one_cpu:.2} s | {:.2} s | intro {:?}, credits {:?} |",
        EPISODES - 1,
        one_wall.as_secs_f64(),
        one.intro.as_ref().map(|m| [m.start, m.end]),
        one.credits.as_ref().map(|m| [m.start, m.end]),
    );
    println!(
        "| find_markers, the season ({} comparisons) | {season_cpu:.2} s | {:.2} s | both in {with_both} of {EPISODES} |",
        EPISODES * (EPISODES - 1),
        season_wall.as_secs_f64()
    );
    println!(
        "comparisons per episode / fingerprint per episode: {:.3}x",
        season_cpu / EPISODES as f64 / episode_fp
    );
}
