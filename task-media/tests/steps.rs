//! The media steps against a real S3-compatible server (moto) and real video made with ffmpeg.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use task_core::prelude::*;
use task_media::analyze::adbreaks::AdbreaksAnalyzer;
use task_media::asset_url::{AssetLocator, S3Settings};
use task_media::length_gate::LengthGate;
use task_media::probe::{FfprobeProber, Mp4Prober, ProbeOutput, Prober, StreamKind};
use task_media::probe_step::{ProbeStep, ProberChoice};
use task_media::s3_check::{AssetInfo, head_asset};
use task_runner::step::TaskStep;

use support::*;

fn locator(server: &Moto) -> Arc<AssetLocator> {
    Arc::new(AssetLocator::new(server.settings(), None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_check_finds_describes_and_reports_missing_objects() {
    let server = seeded().await;
    let locator = locator(server);
    let info = head_asset(&locator.locate(&s3_url("short.mp4")).unwrap())
        .await
        .unwrap();
    let size = std::fs::metadata(fixtures().path("short.mp4"))
        .unwrap()
        .len();
    assert_eq!(info.size, size);
    assert!(info.etag.is_some(), "moto returns an ETag");
    for url in [
        s3_url("nope.mp4"),
        "s3://no-such-bucket/short.mp4".to_string(),
    ] {
        let err = head_asset(&locator.locate(&url).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "asset_not_found", "{url}: {err:?}");
        assert_eq!(
            err.to_string(),
            "Asset not found in the provided S3 location."
        );
        assert!(!err.is_retryable());
    }
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = AssetLocator::new(
        S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{dead_port}")),
            ..server.settings()
        },
        None,
    );
    let err = head_asset(&dead.locate(&s3_url("short.mp4")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "storage_unavailable", "{err:?}");
    assert!(err.is_retryable(), "a dead endpoint is worth retrying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_store_gives_retryable_errors() {
    let locator = AssetLocator::new(S3Settings::default(), None);
    locator
        .memory()
        .put(&Path::from("a.mp4"), vec![1u8; 10].into())
        .await
        .unwrap();
    let flaky = Arc::new(FlakyStore::new(locator.memory(), 1));
    let locator = locator.with_bucket("flaky", flaky.clone());
    let location = locator.locate("s3://flaky/a.mp4").unwrap();
    let err = head_asset(&location).await.unwrap_err();
    assert_eq!(err.code(), "storage_unavailable");
    assert!(err.is_retryable());
    assert_eq!(head_asset(&location).await.unwrap().size, 10);
    assert_eq!(flaky.reads(), 2);
}

fn same_streams(a: &ProbeOutput, b: &ProbeOutput) {
    assert_eq!(a.streams.len(), b.streams.len(), "{a:?} vs {b:?}");
    for (x, y) in a.streams.iter().zip(&b.streams) {
        assert_eq!((x.kind, &x.codec), (y.kind, &y.codec));
        assert_eq!((x.width, x.height), (y.width, y.height));
        assert_eq!((x.sample_rate, x.channels), (y.sample_rate, y.channels));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_probers_agree_on_every_mp4_fixture() {
    let server = seeded().await;
    let locator = locator(server);
    for name in Fixtures::VALID {
        let location = locator.locate(&s3_url(name)).unwrap();
        let size = std::fs::metadata(fixtures().path(name)).unwrap().len();
        let ours = Mp4Prober.probe(&location, size).await.unwrap();
        let theirs = FfprobeProber::default()
            .probe(&location, size)
            .await
            .unwrap();
        let frame = 0.5; // the fixtures run at 2 frames per second
        assert!(
            (ours.duration_secs - theirs.duration_secs).abs() <= frame,
            "{name}: {ours:?} vs {theirs:?}"
        );
        same_streams(&ours, &theirs);
        assert_eq!(ours.streams[0].kind, StreamKind::Video);
        assert!(
            ours.bytes_read * 10 < size,
            "{name}: the mp4 prober read {} of {size} bytes",
            ours.bytes_read
        );
        println!(
            "{name}: mp4 prober read {} of {size} bytes ({:.1}%)",
            ours.bytes_read,
            100.0 * ours.bytes_read as f64 / size as f64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_files_fail_with_the_probers_message() {
    let server = seeded().await;
    let locator = locator(server);
    let step = ProbeStep::new(
        locator.clone(),
        FfprobeProber::default(),
        ProberChoice::Auto,
    );
    let forced = ProbeStep::new(
        locator.clone(),
        FfprobeProber::default(),
        ProberChoice::Ffprobe,
    );
    for name in ["truncated.mp4", "random.mp4"] {
        let location = locator.locate(&s3_url(name)).unwrap();
        let size = std::fs::metadata(fixtures().path(name)).unwrap().len();
        let err = step.probe(&location, size).await.unwrap_err();
        assert_eq!(err.code(), "probe_failed", "{name}: {err:?}");
        assert!(
            err.to_string().starts_with("Probe failed with error = "),
            "{err}"
        );
        assert!(!err.is_retryable());
        println!("{name}: {err}");
    }
    let location = locator.locate(&s3_url("random.mp4")).unwrap();
    let err = forced.probe(&location, 200_000).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Probe failed with error = Invalid data found when processing input"
    );
}

/// A fragmented MP4 spreads its duration over fragments: the MP4 prober declines it and the
/// probe step hands it to ffprobe, which reads the full duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_files_go_to_ffprobe() {
    let server = seeded().await;
    let locator = locator(server);
    let location = locator.locate(&s3_url("fragmented.mp4")).unwrap();
    let size = std::fs::metadata(fixtures().path("fragmented.mp4"))
        .unwrap()
        .len();
    let declined = Mp4Prober.probe_or_decline(&location, size).await.unwrap();
    assert_eq!(
        declined.unwrap_err(),
        task_media::probe::Mp4Verdict::Fragmented
    );
    let step = ProbeStep::new(
        locator.clone(),
        FfprobeProber::default(),
        ProberChoice::Auto,
    );
    let output = step.probe(&location, size).await.unwrap();
    assert_eq!(output.prober, "ffprobe");
    assert!((output.duration_secs - 660.0).abs() <= 0.5, "{output:?}");
}

/// A faststart file cut short whose `mdat` header was rewritten to fit: every box lies inside
/// the object, but the sample tables point past its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_tables_past_the_end_fail_the_probe() {
    let server = seeded().await;
    let locator = locator(server);
    let full = std::fs::read(fixtures().path("long-faststart.mp4")).unwrap();
    let mut cut = full[..full.len() / 2].to_vec();
    let mdat = cut.windows(4).position(|w| w == b"mdat").unwrap() - 4;
    let fitted = u32::try_from(cut.len() - mdat).unwrap();
    cut[mdat..mdat + 4].copy_from_slice(&fitted.to_be_bytes());
    server
        .client(BUCKET)
        .put(&Path::from("patched.mp4"), cut.clone().into())
        .await
        .unwrap();
    let location = locator.locate(&s3_url("patched.mp4")).unwrap();
    let err = Mp4Prober
        .probe(&location, cut.len() as u64)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "probe_failed");
    assert!(err.to_string().contains("past the end"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_reused_for_an_unchanged_object_only() {
    let server = seeded().await;
    let locator = locator(server);
    let client = server.client(BUCKET);
    let original = std::fs::read(fixtures().path("short.mp4")).unwrap();
    client
        .put(&Path::from("reused.mp4"), original.into())
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let step = ProbeStep::new(
        locator.clone(),
        FfprobeProber::default(),
        ProberChoice::Auto,
    );
    let url = s3_url("reused.mp4");
    let checked = |info: &AssetInfo| vec![(Step::S3Check, serde_json::to_value(info).unwrap())];

    let info = head_asset(&locator.locate(&url).unwrap()).await.unwrap();
    let first = step
        .run(&context(
            store.clone(),
            &url,
            checked(&info),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    let again = step
        .run(&context(
            store.clone(),
            &url,
            checked(&info),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    assert!(!first.reused);
    assert!(again.reused, "the same URL, ETag and size reuse the probe");
    assert_eq!(first.value, again.value);

    let changed = std::fs::read(fixtures().path("long-faststart.mp4")).unwrap();
    client
        .put(&Path::from("reused.mp4"), changed.into())
        .await
        .unwrap();
    let info = head_asset(&locator.locate(&url).unwrap()).await.unwrap();
    let fresh = step
        .run(&context(
            store.clone(),
            &url,
            checked(&info),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    assert!(!fresh.reused, "a changed object is probed again");
    let probe: ProbeOutput = serde_json::from_value(fresh.value).unwrap();
    assert!(probe.duration_secs > 600.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_length_gate_keeps_both_numbers() {
    let probe = |duration_secs| {
        serde_json::to_value(ProbeOutput {
            prober: "mp4".into(),
            format: "isom".into(),
            duration_secs,
            streams: vec![],
            bytes_read: 0,
        })
        .unwrap()
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let ten_minutes = Duration::from_secs(600);
    let short = context(
        store.clone(),
        "memory:///a.mp4",
        vec![(Step::Probe, probe(540.0))],
        ten_minutes,
    );
    let err = LengthGate.run(&short).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Asset shorter than the minimum required length."
    );
    assert_eq!(
        err,
        TaskError::AssetTooShort {
            duration_secs: 540.0,
            minimum_secs: 600.0
        }
    );
    let long = context(
        store,
        "memory:///a.mp4",
        vec![(Step::Probe, probe(660.0))],
        ten_minutes,
    );
    assert!(LengthGate.run(&long).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbreaks_finds_the_black_silent_gaps() {
    let data = AdbreaksAnalyzer::default()
        .detect(&fixtures().path("long-faststart.mp4"), 660.0)
        .await
        .unwrap();
    let mut times: Vec<f64> = data.candidates.iter().map(|c| c.time).collect();
    times.sort_by(f64::total_cmp);
    assert_eq!(times.len(), GAPS.len(), "{data:?}");
    for ((start, end), found) in GAPS.iter().zip(times) {
        let expected = (start + end) / 2.0;
        assert!(
            (found - expected).abs() <= 0.5,
            "gap at {expected} s found at {found} s"
        );
    }
}
