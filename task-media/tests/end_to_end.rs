//! Tasks through the runner on the sled store with the real media steps: moto for S3, ffmpeg
//! fixtures, the exact failure messages of the contract, retries over a flaky store, and a
//! cancel during the ffmpeg analysis.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use task_core::prelude::*;
use task_media::analyze::adbreaks::AdbreaksData;
use task_media::asset_url::AssetLocator;
use task_media::probe_step::ProberChoice;
use task_runner::step::ProductSettings;
use task_runner::{RetryPolicy, Runner, RunnerConfig};
use task_store_sled::SledStore;

use support::*;

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

async fn submit(store: &SledStore, inventory: &str, url: &str) -> Task {
    let inventory_id = InventoryId::new(inventory).unwrap();
    store
        .upsert_item(ItemUpsert {
            tenant: tenant(),
            inventory_id: inventory_id.clone(),
            item_type: ItemType::Episode,
            title: inventory.into(),
            asset_url: url.into(),
            tags: vec![],
            extra: Default::default(),
            parent_id: None,
        })
        .await
        .unwrap();
    let key = TaskKey {
        tenant: tenant(),
        inventory_id,
        product: ProductName::new("adbreaks").unwrap(),
        version: Version::new("1.0.0").unwrap(),
    };
    store
        .create_task(NewTask {
            key,
            priority: Priority::High,
        })
        .await
        .unwrap()
        .task
}

async fn finished(store: &SledStore, id: TaskId) -> Task {
    tokio::time::timeout(
        Duration::from_secs(120),
        task_runner::wait_until_finished(store, &tenant(), id),
    )
    .await
    .expect("the task ends within two minutes")
    .unwrap()
}

/// ffmpeg processes working on one of our temporary downloads.
fn our_ffmpeg_processes() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("ffmpeg") && cmdline.contains("media-task-") {
            found.push(cmdline);
        }
    }
    found
}

/// The downloads in this test's scratch directory.
fn our_temp_files(scratch: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(scratch)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("media-task-"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_assets_end_as_the_contract_says() {
    let server = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let flaky = Arc::new(FlakyStore::new(Arc::new(server.client(BUCKET)), 2));
    // Downloads go to a directory of this test's own, so other tests' downloads never count.
    let scratch = tempfile::tempdir().unwrap();
    let locator = Arc::new(
        AssetLocator::new(server.settings(), None)
            .with_bucket("flaky", flaky.clone())
            .with_scratch_dir(scratch.path().to_path_buf()),
    );
    let product = ProductName::new("adbreaks").unwrap();
    let analyzer = task_media::builtin_analyzer(&product).unwrap();
    let pipeline = task_media::pipeline(
        locator,
        ProberChoice::Auto,
        vec![(product.clone(), analyzer)],
    )
    .unwrap();
    let mut config =
        RunnerConfig::new(WorkerId::new("e2e").unwrap()).with_product(ProductSettings {
            min_duration: Duration::from_secs(600),
            max_attempts: 5,
            concurrency: 4,
            ..ProductSettings::new(product.clone())
        });
    config.retry = RetryPolicy {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    let runner = Runner::start(store.clone(), pipeline, config).unwrap();

    let good = submit(&store, "good", &s3_url("long-faststart.mp4")).await;
    let missing = submit(&store, "missing", &s3_url("missing.mp4")).await;
    let corrupt = submit(&store, "corrupt", &s3_url("random.mp4")).await;
    let short = submit(&store, "short", &s3_url("short.mp4")).await;
    let flaky_task = submit(&store, "flaky", "s3://flaky/long-moov-at-end.mp4").await;

    let done = finished(&store, good.id).await;
    assert_eq!(done.status(), Status::Done, "{:?}", done.error());
    let result = store
        .get_result(
            &tenant(),
            &product,
            &done.key.inventory_id,
            Some(&done.key.version),
        )
        .await
        .unwrap()
        .unwrap();
    let data: AdbreaksData = serde_json::from_value(result.data).unwrap();
    let mut times: Vec<f64> = data.candidates.iter().map(|c| c.time).collect();
    times.sort_by(f64::total_cmp);
    assert_eq!(times.len(), GAPS.len(), "{data:?}");
    for ((start, end), found) in GAPS.iter().zip(&times) {
        assert!(
            (found - (start + end) / 2.0).abs() <= 0.5,
            "gap {start}-{end} found at {found}"
        );
    }

    let expect_failure = |task: Task, code: &str| {
        assert_eq!(task.status(), Status::Failed);
        assert_eq!(task.attempt, 1, "permanent failures are not retried");
        let error = task.error().unwrap().clone();
        assert_eq!(error.code(), code);
        error.to_string()
    };
    assert_eq!(
        expect_failure(finished(&store, missing.id).await, "asset_not_found"),
        "Asset not found in the provided S3 location."
    );
    assert!(
        expect_failure(finished(&store, corrupt.id).await, "probe_failed")
            .starts_with("Probe failed with error = ")
    );
    let short_task = finished(&store, short.id).await;
    assert_eq!(
        short_task.error(),
        Some(&TaskError::AssetTooShort {
            duration_secs: 540.0,
            minimum_secs: 600.0
        })
    );
    assert_eq!(
        expect_failure(short_task, "asset_too_short"),
        "Asset shorter than the minimum required length."
    );

    let recovered = finished(&store, flaky_task.id).await;
    assert_eq!(recovered.status(), Status::Done, "{:?}", recovered.error());
    assert_eq!(recovered.attempt, 3, "two injected failures, then success");
    assert_eq!(
        recovered.last_error.as_ref().map(TaskError::code),
        Some("storage_unavailable")
    );

    // A cancel while ffmpeg analyses: the task ends cancelled, ffmpeg is gone, the download too.
    let victim = submit(&store, "cancel-me", &s3_url("long-moov-at-end.mp4")).await;
    task_runner::wait_for(&*store, &tenant(), victim.id, |t| {
        t.current_step() == Some(Step::Analyze)
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The step downloads the asset first; wait (bounded) until ffmpeg is at work on it.
    while our_ffmpeg_processes().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !our_ffmpeg_processes().is_empty(),
        "ffmpeg should be analysing"
    );
    assert_eq!(
        our_temp_files(scratch.path()).len(),
        1,
        "ffmpeg reads the download in the scratch directory"
    );
    let asked = Instant::now();
    store.request_cancel(&tenant(), victim.id).await.unwrap();
    let cancelled = finished(&store, victim.id).await;
    println!(
        "cancel during ffmpeg analysis -> cancelled in {:?}",
        asked.elapsed()
    );
    assert_eq!(cancelled.status(), Status::Cancelled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !our_ffmpeg_processes().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        our_ffmpeg_processes().is_empty(),
        "ffmpeg left running: {:?}",
        our_ffmpeg_processes()
    );
    assert!(
        our_temp_files(scratch.path()).is_empty(),
        "temporary downloads left: {:?}",
        our_temp_files(scratch.path())
    );
    let history = store.history(&tenant(), victim.id).await.unwrap();
    assert_eq!(history.last().map(|e| e.event.as_str()), Some("cancelled"));

    // A second version of the same asset reuses the probe of the unchanged object.
    let mut v2 = good.key.clone();
    v2.version = Version::new("2.0.0").unwrap();
    let rerun = store
        .create_task(NewTask {
            key: v2,
            priority: Priority::High,
        })
        .await
        .unwrap()
        .task;
    let rerun = finished(&store, rerun.id).await;
    assert_eq!(rerun.status(), Status::Done);
    assert!(rerun.checkpoint(Step::Probe).unwrap().reused);
    let history = store.history(&tenant(), rerun.id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| e.detail.as_deref().is_some_and(|d| d.contains("reused")))
    );
    runner.shutdown(Duration::from_secs(10)).await.unwrap();
}
