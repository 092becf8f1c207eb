//! The markers product against a season whose intro and credits are known by construction:
//! four episodes (each its own test pattern and sound) share a 30 s intro at a different offset
//! in each and a 20 s credits sequence at the end. Markers tasks alone are submitted: they
//! create their siblings' fingerprint tasks, wait for them without holding a slot, and resume.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use task_core::memory::MemoryStore;
use task_core::prelude::*;
use task_media::analyze::fingerprint::FingerprintAnalyzer;
use task_media::analyze::markers::{MarkersData, MarkersStep};
use task_media::asset_url::{AssetLocator, S3Settings};
use task_media::probe_step::ProberChoice;
use task_runner::step::ProductSettings;
use task_runner::{Runner, RunnerConfig};

use support::media;

const INTRO_SEED: u32 = 1_000;
const CREDITS_SEED: u32 = 2_000;
/// (intro offset, seconds of the episode's own sound after the intro, test pattern).
const EPISODES: [(f64, f64, &str); 4] = [
    (8.0, 50.0, "testsrc2"),
    (17.5, 40.0, "smptebars"),
    (31.0, 45.0, "rgbtestsrc"),
    (44.0, 35.0, "testsrc"),
];

fn tenant() -> TenantId {
    TenantId::new("studio").unwrap()
}

async fn ingest(
    store: &MemoryStore,
    id: &str,
    item_type: ItemType,
    url: &str,
    parent: Option<&str>,
) {
    store
        .upsert_item(ItemUpsert {
            tenant: tenant(),
            inventory_id: InventoryId::new(id).unwrap(),
            item_type,
            title: id.into(),
            asset_url: url.into(),
            tags: vec![],
            extra: Default::default(),
            parent_id: parent.map(|p| InventoryId::new(p).unwrap()),
        })
        .await
        .unwrap();
}

fn key(id: &str, product: &str) -> TaskKey {
    TaskKey {
        tenant: tenant(),
        inventory_id: InventoryId::new(id).unwrap(),
        product: ProductName::new(product).unwrap(),
        version: Version::new("1").unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seasons_intro_and_credits_are_found_within_half_a_second_and_a_film_gets_none() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().canonicalize().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    ingest(&store, "show", ItemType::Series, "memory:///none", None).await;
    ingest(
        &store,
        "s1",
        ItemType::Season,
        "memory:///none",
        Some("show"),
    )
    .await;
    let mut truth = Vec::new();
    for (i, (intro_at, middle, pattern)) in EPISODES.iter().enumerate() {
        let seed = 10 * (i as u32 + 1);
        let parts = [
            (seed, *intro_at),
            (INTRO_SEED, 30.0),
            (seed + 1, *middle),
            (CREDITS_SEED, 20.0),
        ];
        let name = format!("e{}.mp4", i + 1);
        media(&dir, &name, &parts, Some(pattern));
        let credits_at = intro_at + 30.0 + middle;
        let url = format!("file://{}", dir.join(&name).display());
        let id = format!("e{}", i + 1);
        ingest(&store, &id, ItemType::Episode, &url, Some("s1")).await;
        truth.push((id, *intro_at, credits_at));
    }
    media(&dir, "film.mp4", &[(500, 70.0)], Some("testsrc2"));
    let film_url = format!("file://{}", dir.join("film.mp4").display());
    ingest(&store, "film", ItemType::Standalone, &film_url, None).await;

    let locator = Arc::new(AssetLocator::new(S3Settings::default(), Some(dir.clone())));
    let fingerprint = ProductName::new("fingerprint").unwrap();
    let markers = ProductName::new("markers").unwrap();
    let pipeline = task_media::pipeline(
        locator,
        ProberChoice::Auto,
        vec![(
            fingerprint.clone(),
            Arc::new(FingerprintAnalyzer::default()) as _,
        )],
    )
    .unwrap()
    .with_analyzer(
        markers.clone(),
        Arc::new(MarkersStep::new(Version::new("1").unwrap())),
    )
    .unwrap();
    let mut config = RunnerConfig::new(WorkerId::new("w").unwrap())
        .with_product(ProductSettings::new(fingerprint))
        .with_product(ProductSettings::new(markers));
    // Two slots for five markers tasks: they would deadlock if a waiting task held one.
    config.concurrency = 2;
    let runner = Runner::start(store.clone(), pipeline, config).unwrap();

    let mut tasks = Vec::new();
    for (id, _, _) in &truth {
        let new = NewTask {
            key: key(id, "markers"),
            priority: Priority::Medium,
        };
        tasks.push(store.create_task(new).await.unwrap().task);
    }
    let film = NewTask {
        key: key("film", "markers"),
        priority: Priority::Medium,
    };
    let film = store.create_task(film).await.unwrap().task;

    for (task, (id, intro_at, credits_at)) in tasks.iter().zip(&truth) {
        let done = tokio::time::timeout(
            Duration::from_secs(300),
            task_runner::wait_until_finished(&*store, &tenant(), task.id),
        )
        .await
        .expect("markers end within five minutes")
        .unwrap();
        assert_eq!(done.status(), Status::Done, "{id}: {:?}", done.error());
        let history = store.history(&tenant(), task.id).await.unwrap();
        assert!(
            history.iter().any(|e| e.event == "waiting"),
            "{id} waited for fingerprints: {history:?}"
        );
        let result = store
            .get_result(&tenant(), &task.key.product, &task.key.inventory_id, None)
            .await
            .unwrap()
            .unwrap();
        let data: MarkersData = serde_json::from_value(result.data).unwrap();
        eprintln!("{id}: {data:?}");
        let duration = credits_at + 20.0;
        let intro = data.intro.expect("an intro");
        let credits = data.credits.expect("credits");
        for (what, got, want) in [
            ("intro start", intro[0], *intro_at),
            ("intro end", intro[1], intro_at + 30.0),
            ("credits start", credits[0], *credits_at),
            ("credits end", credits[1], duration),
        ] {
            assert!(
                (got - want).abs() <= 0.5,
                "{id} {what}: {got} s, expected {want} s"
            );
        }
        assert_eq!(data.siblings_compared.len(), 3, "{id}");
        assert_eq!(data.intro_shared_with.len(), 3, "{id}: {data:?}");
    }
    let film = task_runner::wait_until_finished(&*store, &tenant(), film.id)
        .await
        .unwrap();
    assert_eq!(film.status(), Status::Done);
    let result = store
        .get_result(&tenant(), &film.key.product, &film.key.inventory_id, None)
        .await
        .unwrap()
        .unwrap();
    let data: MarkersData = serde_json::from_value(result.data).unwrap();
    assert_eq!(
        (data.intro, data.credits),
        (None, None),
        "a film has no siblings"
    );

    // One fingerprint task per item, however many markers tasks needed it.
    let all = store
        .list_tasks(&tenant(), &TaskFilter::default(), &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    let fingerprints = all
        .iter()
        .filter(|t| t.key.product.as_str() == "fingerprint")
        .count();
    assert_eq!(fingerprints, 5, "{all:?}");
    runner.shutdown(Duration::from_secs(10)).await.unwrap();
}
