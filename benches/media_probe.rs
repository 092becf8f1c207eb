//! Probing and analysis figures: bytes read by the range-reading MP4 prober against the file
//! size, probe time pure-Rust vs ffprobe (ratio within one run), and the adbreaks analysis time
//! of the 11-minute fixture. Needs ffmpeg (scripts/install-test-deps.sh). Prints its figures.

#[allow(unused_imports)]
#[path = "../task-media/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use task_media::analyze::adbreaks::AdbreaksAnalyzer;
use task_media::asset_url::{AssetLocator, S3Settings};
use task_media::probe::{FfprobeProber, Mp4Prober, Prober};

const ROUNDS: u32 = 30;

async fn time_probe(
    prober: &dyn Prober,
    location: &task_media::asset_url::AssetLocation,
    size: u64,
) -> Duration {
    let started = Instant::now();
    for _ in 0..ROUNDS {
        prober.probe(location, size).await.expect("probe");
    }
    started.elapsed() / ROUNDS
}

fn main() {
    let fixtures = support::fixtures();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let locator = Arc::new(AssetLocator::new(S3Settings::default(), Some(fixtures.dir.clone())));
        println!("| fixture | size | bytes read by the MP4 prober | share | MP4 prober | ffprobe | ffprobe / MP4 |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for name in support::Fixtures::VALID {
            let path = fixtures.path(name).canonicalize().expect("fixture");
            let location = locator.locate(&format!("file://{}", path.display())).expect("locate");
            let size = std::fs::metadata(&path).expect("size").len();
            let read = Mp4Prober.probe(&location, size).await.expect("probe").bytes_read;
            let ours = time_probe(&Mp4Prober, &location, size).await;
            let theirs = time_probe(&FfprobeProber::default(), &location, size).await;
            println!(
                "| {name} | {size} | {read} | {:.1}% | {:.2} ms | {:.2} ms | {:.0}x |",
                100.0 * read as f64 / size as f64,
                ours.as_secs_f64() * 1e3,
                theirs.as_secs_f64() * 1e3,
                theirs.as_secs_f64() / ours.as_secs_f64(),
            );
        }
        let started = Instant::now();
        let data = AdbreaksAnalyzer::default()
            .detect(&fixtures.path("long-faststart.mp4"), 660.0)
            .await
            .expect("analysis");
        println!(
            "adbreaks analysis of the 11-minute fixture (64x36, 2 fps, AAC 16 kHz): {:.2} s, {} candidates",
            started.elapsed().as_secs_f64(),
            data.candidates.len()
        );
    });
}
