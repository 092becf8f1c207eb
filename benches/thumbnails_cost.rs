//! What the thumbnails analysis costs against a bare decode of the same asset, with the scenes
//! analysis (its shot detection) beside it: CPU time (user + sys) of the ffmpeg and ffprobe
//! children, in one run. Needs ffmpeg (scripts/install-test-deps.sh). Prints its figures; not
//! run by CI or `cargo test` (the figures come from the children, so the test profile measures
//! the same as the bench profile).
//!
//! `cargo test --bench thumbnails_cost`: a 120 s 1280x720 25 fps H.264 asset (libx264
//! veryfast) of 24 five-second shots cycling through six pictures (two moving test patterns,
//! SMPTE bars, an RGB pattern, orange, black), so 20 visible shots and 4 black ones; the
//! analyzer keeps its default of 20 stills. Made once and cached under target/bench-media/.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path as Key;
use task_core::prelude::MemoryStore;
use task_media::analyze::scenes::ScenesAnalyzer;
use task_media::analyze::thumbnails::ThumbnailsAnalyzer;
use task_media::asset_url::OutputRoot;

#[path = "support/cost.rs"]
mod cost;
#[path = "../task-media/tests/support/mod.rs"]
mod support;

const SHOT_SECS: u32 = 5;
const SOURCES: [&str; 6] = [
    "testsrc2=s=1280x720:r=25",
    "smptehdbars=s=1280x720:r=25",
    "rgbtestsrc=s=1280x720:r=25",
    "color=c=orange:s=1280x720:r=25",
    "testsrc=s=1280x720:r=25",
    "color=c=black:s=1280x720:r=25",
];
const SHOTS: usize = 24;

/// Makes the asset unless it is cached; returns its path.
fn asset() -> PathBuf {
    let dir = support::workspace_root().join("target/bench-media");
    cost::cached(&dir, "thumbnails-720p-120s-v1.mp4", |partial| {
        let sources: Vec<String> = (0..SHOTS)
            .map(|i| format!("{}:d={SHOT_SECS}", SOURCES[i % SOURCES.len()]))
            .collect();
        let inputs: String = (0..SHOTS).map(|i| format!("[{i}]")).collect();
        let filter = format!("{inputs}concat=n={SHOTS}:v=1:a=0,format=yuv420p[v]");
        support::lavfi_video(partial, &sources, &filter);
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let path = asset();
    let length = cost::duration(&path);
    let store = Arc::new(InMemory::new());
    let analyzer =
        ThumbnailsAnalyzer::new(OutputRoot::with_store(store, Key::default(), "memory:///"));
    let ctx = support::context(
        Arc::new(MemoryStore::default()),
        "memory:///asset.mp4",
        vec![],
        std::time::Duration::ZERO,
    );
    let ((), bare_cpu, bare_wall) = cost::measure(|| cost::bare_decode(&path));
    let (scenes, scenes_cpu, scenes_wall) = cost::measure_on(
        &runtime,
        "scenes",
        ScenesAnalyzer::default().detect(&path, length),
    );
    let (data, thumbs_cpu, thumbs_wall) =
        cost::measure_on(&runtime, "thumbnails", analyzer.stills(&ctx, &path, length));
    println!(
        "\nasset: {} ({length:.0} s, 1280x720 25 fps H.264, {SHOTS} shots of {SHOT_SECS} s)",
        path.display()
    );
    println!("| run | CPU (user+sys of children) | wall | vs bare decode | found |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| bare decode `ffmpeg -i X -f null -` | {bare_cpu:.2} s | {:.1} s | 1.000x | - |",
        bare_wall.as_secs_f64()
    );
    println!(
        "| scenes | {scenes_cpu:.2} s | {:.1} s | {:.3}x | {} shots |",
        scenes_wall.as_secs_f64(),
        scenes_cpu / bare_cpu,
        scenes.shots.len()
    );
    println!(
        "| thumbnails (its scenes pass included) | {thumbs_cpu:.2} s | {:.1} s | **{:.3}x** | {} stills |",
        thumbs_wall.as_secs_f64(),
        thumbs_cpu / bare_cpu,
        data.stills.len()
    );
    println!(
        "the stills' share: {:.2} s CPU ({:.3}x a bare decode)",
        thumbs_cpu - scenes_cpu,
        (thumbs_cpu - scenes_cpu) / bare_cpu
    );
}
