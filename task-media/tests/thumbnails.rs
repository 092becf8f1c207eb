//! The thumbnails product against shots known by construction (solid colours and test patterns,
//! one shot black), on an in-memory store, a directory and a real S3 server (moto): one still
//! per visible shot and from inside it, at most N, re-runs without orphans, and nothing left by
//! a cancelled or failed run.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use task_core::prelude::MemoryStore;
use task_core::store::Store;
use task_media::analyze::thumbnails::{ThumbnailsAnalyzer, ThumbnailsData, jpeg_dimensions};
use task_media::asset_url::OutputRoot;
use task_runner::step::StepContext;

use support::{FlakyStore, context, moto};

/// The shots of [`fixture`]: (start, end, source), the black one at index 2.
const SHOTS: [(f64, f64, &str); 6] = [
    (0.0, 3.0, "color=c=red:"),
    (3.0, 6.0, "testsrc2="),
    (6.0, 9.0, "color=c=black:"),
    (9.0, 11.0, "color=c=yellow:"),
    (11.0, 15.0, "smptebars="),
    (15.0, 20.0, "color=c=green:"),
];
const DURATION: f64 = 20.0;
const BLACK: usize = 2;
/// Where the stills of the test context's task go (tenant t1, item asset, version 1).
const DIR: &str = "t1/asset/thumbnails/1";

/// 20 s at 25 fps, 320x180, the shots of [`SHOTS`] cut hard; made once, cached under
/// target/media-fixtures/.
fn fixture() -> &'static Path {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = support::workspace_root().join("target/media-fixtures/thumbnails");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shots-v1.mp4");
        if path.exists() {
            return path;
        }
        let partial = dir.join(format!("partial-{}.mp4", std::process::id()));
        let sources: Vec<String> = SHOTS
            .iter()
            .map(|(start, end, source)| format!("{source}s=320x180:r=25:d={}", end - start))
            .collect();
        let inputs: String = (0..SHOTS.len()).map(|i| format!("[{i}]")).collect();
        let filter = format!("{inputs}concat=n={}:v=1:a=0,format=yuv420p[v]", SHOTS.len());
        support::lavfi_video(&partial, &sources, &filter);
        std::fs::rename(&partial, &path).unwrap();
        path
    })
}

fn task_context() -> StepContext {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    context(store, "memory:///shots.mp4", vec![], Duration::ZERO)
}

fn memory_output(store: Arc<dyn ObjectStore>) -> OutputRoot {
    OutputRoot::with_store(store, Key::default(), "memory:///")
}

async fn keys(store: &dyn ObjectStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// The width and height ffprobe decodes from a JPEG.
fn decoded_size(jpeg: &[u8]) -> (u32, u32) {
    let file = tempfile::Builder::new().suffix(".jpg").tempfile().unwrap();
    std::fs::write(file.path(), jpeg).unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe cannot decode the still");
    let text = String::from_utf8_lossy(&out.stdout);
    let (w, h) = text.trim().split_once(',').unwrap();
    (w.parse().unwrap(), h.parse().unwrap())
}

/// Every still's shot is one of [`SHOTS`] (not the black one) within a frame, its time inside
/// it, and its JPEG at its key decodes to its size.
async fn assert_truthful(data: &ThumbnailsData, store: &dyn ObjectStore, size: (u32, u32)) {
    for (i, still) in data.stills.iter().enumerate() {
        let truth = SHOTS
            .iter()
            .position(|(s, e, _)| {
                (still.shot[0] - s).abs() <= 0.04 && (still.shot[1] - e).abs() <= 0.04
            })
            .unwrap_or_else(|| panic!("shot {:?} is none of the fixture's", still.shot));
        assert_ne!(truth, BLACK, "the black shot gave a still: {data:?}");
        assert!(
            still.time_secs >= still.shot[0] && still.time_secs < still.shot[1],
            "still at {} s outside its shot {:?}",
            still.time_secs,
            still.shot
        );
        assert!(still.mean_luma >= 24.0, "{still:?}");
        assert_eq!(still.key, format!("{DIR}/{:03}.jpg", i + 1));
        let jpeg = store
            .get(&Key::from(still.key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(jpeg_dimensions(&jpeg), Some(size));
        assert_eq!(decoded_size(&jpeg), size);
        assert_eq!((still.width, still.height), size);
    }
    let times: Vec<f64> = data.stills.iter().map(|s| s.time_secs).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "in time order: {times:?}"
    );
}

#[tokio::test]
async fn one_still_per_visible_shot_from_inside_it_and_none_for_the_black_shot() {
    let video = fixture();
    let store = Arc::new(InMemory::new());
    let analyzer = ThumbnailsAnalyzer::new(memory_output(store.clone()));
    let data = analyzer
        .stills(&task_context(), video, DURATION)
        .await
        .unwrap();
    assert_eq!(data.shots, SHOTS.len(), "{data:?}");
    assert_eq!(data.stills.len(), SHOTS.len() - 1, "{data:?}");
    assert_truthful(&data, store.as_ref(), (320, 180)).await;
    assert_eq!(data.stills[0].url, format!("memory:///{DIR}/001.jpg"));
    let expected: Vec<String> = (1..=5).map(|i| format!("{DIR}/{i:03}.jpg")).collect();
    assert_eq!(
        keys(store.as_ref()).await,
        expected,
        "no staging object left"
    );
}

#[tokio::test]
async fn at_most_n_stills_from_the_longest_shots_scaled_to_the_maximum_width() {
    let video = fixture();
    let store = Arc::new(InMemory::new());
    let mut analyzer = ThumbnailsAnalyzer::new(memory_output(store.clone())).with_max_stills(2);
    analyzer.max_width = 160;
    let data = analyzer
        .stills(&task_context(), video, DURATION)
        .await
        .unwrap();
    let shots: Vec<[f64; 2]> = data.stills.iter().map(|s| s.shot).collect();
    assert_eq!(shots.len(), 2, "{data:?}");
    assert!(
        (shots[0][0] - 11.0).abs() <= 0.04 && (shots[1][0] - 15.0).abs() <= 0.04,
        "{shots:?}"
    );
    assert_truthful(&data, store.as_ref(), (160, 90)).await;
}

/// Runs with 5 and then 2 stills over stray objects of the version, and checks the second run
/// left exactly its own stills there (and another version's alone).
async fn rerun_leaves_no_orphans(output: OutputRoot, video: &Path) {
    let store = output.store().clone();
    let prefix = output.key(Vec::<&str>::new()).to_string();
    let at = |key: &str| -> Key {
        if prefix.is_empty() {
            Key::from(key)
        } else {
            Key::from(format!("{prefix}/{key}"))
        }
    };
    for stray in [
        format!("{DIR}/099.jpg"),
        format!("{DIR}/.staging/dead-task/001.jpg"),
        "t1/asset/thumbnails/2/001.jpg".into(),
    ] {
        store
            .put(&at(&stray), b"stray".to_vec().into())
            .await
            .unwrap();
    }
    let first = ThumbnailsAnalyzer::new(output.clone())
        .stills(&task_context(), video, DURATION)
        .await
        .unwrap();
    assert_eq!(first.stills.len(), 5);
    let second = ThumbnailsAnalyzer::new(output.clone())
        .with_max_stills(2)
        .stills(&task_context(), video, DURATION)
        .await
        .unwrap();
    let written: Vec<String> = second.stills.iter().map(|s| s.key.clone()).collect();
    assert_eq!(
        written,
        vec![
            at(&format!("{DIR}/001.jpg")).to_string(),
            at(&format!("{DIR}/002.jpg")).to_string()
        ]
    );
    let mut expected = written.clone();
    expected.push(at("t1/asset/thumbnails/2/001.jpg").to_string());
    expected.sort();
    assert_eq!(
        keys(store.as_ref()).await,
        expected,
        "the same keys, no orphans"
    );
    for still in &second.stills {
        assert_eq!(still.url, output.url(&Key::from(still.key.as_str())));
    }
}

/// A run cancelled at its second staged still (directly, and with its future dropped as the
/// analyze step does), and runs that fail at a write and at a copy: none leaves an object.
async fn unfinished_runs_leave_nothing(output: OutputRoot, video: &Path) {
    let inner = output.store().clone();
    let prefix = output.key(Vec::<&str>::new());
    for what in ["cancelled", "dropped", "failed write", "failed copy"] {
        let ctx = task_context();
        let flaky = FlakyStore::new(inner.clone(), 0);
        let flaky = match what {
            "failed write" => flaky.failing_put(3),
            "failed copy" => flaky.failing_copy(4),
            _ => flaky.cancelling_put(2, ctx.cancel.clone()),
        };
        let wrapped = OutputRoot::with_store(Arc::new(flaky), prefix.clone(), "test:///");
        let analyzer = ThumbnailsAnalyzer::new(wrapped);
        let result = if what == "dropped" {
            tokio::select! {
                r = analyzer.stills(&ctx, video, DURATION) => r.map(|_| ()),
                _ = ctx.cancel.cancelled() => Err(task_core::error::TaskError::Cancelled),
            }
        } else {
            analyzer.stills(&ctx, video, DURATION).await.map(|_| ())
        };
        let err = result.expect_err(what);
        let code = if what.starts_with("failed") {
            "storage_unavailable"
        } else {
            "cancelled"
        };
        assert_eq!(err.code(), code, "{what}: {err}");
        analyzer.cleanups_finished().await;
        assert_eq!(
            keys(inner.as_ref()).await,
            Vec::<String>::new(),
            "{what} left objects"
        );
    }
}

#[tokio::test]
async fn reruns_and_unfinished_runs_in_memory() {
    let video = fixture();
    unfinished_runs_leave_nothing(memory_output(Arc::new(InMemory::new())), video).await;
    rerun_leaves_no_orphans(memory_output(Arc::new(InMemory::new())), video).await;
}

#[tokio::test]
async fn reruns_and_unfinished_runs_on_a_file_root() {
    let dir = tempfile::tempdir().unwrap();
    let video = fixture();
    let out = dir.path().join("stills");
    let url = format!("file://{}", out.display());
    let output = OutputRoot::open(&url, &Default::default()).unwrap();
    unfinished_runs_leave_nothing(output.clone(), video).await;
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "no directory left either"
    );
    rerun_leaves_no_orphans(output, video).await;
    let still = out.join(DIR).join("001.jpg");
    assert!(
        jpeg_dimensions(&std::fs::read(&still).unwrap()).is_some(),
        "{}",
        still.display()
    );
    assert!(
        !out.join(DIR).join(".staging").exists(),
        "the staging directories are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reruns_and_unfinished_runs_on_s3() {
    let video = fixture();
    let server = moto();
    server.create_bucket("stills");
    let settings = server.settings();
    let output = OutputRoot::open("s3://stills/unfinished", &settings).unwrap();
    unfinished_runs_leave_nothing(output, video).await;
    let output = OutputRoot::open("s3://stills/thumbs/", &settings).unwrap();
    rerun_leaves_no_orphans(output.clone(), video).await;
    let data = ThumbnailsAnalyzer::new(output.clone())
        .stills(&task_context(), video, DURATION)
        .await
        .unwrap();
    assert_eq!(data.stills[0].key, format!("thumbs/{DIR}/001.jpg"));
    assert_eq!(
        data.stills[0].url,
        format!("s3://stills/thumbs/{DIR}/001.jpg")
    );
    let client = server.client("stills");
    let jpeg = client
        .get(&Key::from(data.stills[0].key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(decoded_size(&jpeg), (320, 180));
}
