//! The quickstart's second part: a series, a season and three short episodes that share a 20 s
//! intro (at a different offset in each) and 15 s of end credits, each with its own picture and
//! sound. Markers tasks alone are created: each creates the fingerprint tasks its season lacks
//! and waits for them, holding no worker. Then scenes and thumbnails of the episodes.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use media_task_engine::core::prelude::*;
use media_task_engine::media::analyze::markers::{MarkersData, MarkersStep};
use media_task_engine::media::analyze::scenes::ScenesData;
use media_task_engine::media::analyze::thumbnails::ThumbnailsData;
use media_task_engine::media::asset_url::{AssetLocator, S3Settings};
use media_task_engine::media::probe_step::ProberChoice;
use media_task_engine::media::{AnalyzerOptions, builtin_analyzer_with};
use media_task_engine::runner::step::ProductSettings;
use media_task_engine::runner::{Runner, RunnerConfig, wait_for, wait_until_finished};
use media_task_engine::sled::SledStore;
use task_fingerprint::FingerprintData;

use crate::Error;

/// The seed of the intro's notes, and of the credits'.
const INTRO: u32 = 1_000;
const CREDITS: u32 = 2_000;
/// (inventory id, test pattern, seconds of its own before the intro, after it).
const EPISODES: [(&str, &str, f64, f64); 3] = [
    ("show-s1e1", "testsrc2", 4.0, 30.0),
    ("show-s1e2", "rgbtestsrc", 12.0, 25.0),
    ("show-s1e3", "smptebars", 19.0, 32.0),
];

/// Pseudo-random notes from `seed` (two voices, pitch from a hash of the note's index), as
/// an ffmpeg source of `seconds`: music-like sound, the same for the same seed.
fn notes(seed: u32, seconds: f64) -> String {
    let voice = |rate: f64, base: f64, semis: u32, salt: f64| {
        format!(
            "sin(2*PI*t*{base}*pow(2,floor({semis}*mod(abs(sin(floor(t*{rate})*12.9898+{s})*43758.5453),1))/12))",
            s = f64::from(seed) * 7.31 + salt,
        )
    };
    format!(
        "aevalsrc=exprs='0.25*{}+0.2*{}':s=22050:d={seconds}",
        voice(4.0, 110.0, 36, 0.0),
        voice(3.0, 220.0, 24, 3.7)
    )
}

/// An episode: its own opening, the intro, its own middle, the credits, each part with its own
/// picture (the intro orange, the credits HD bars) and sound.
fn make_episode(
    out: &Path,
    index: u32,
    pattern: &str,
    before: f64,
    after: f64,
) -> Result<(), Error> {
    let own = 10 * (index + 1);
    let parts = [
        (pattern, own, before),
        ("color=c=orange", INTRO, 20.0),
        (pattern, own + 1, after),
        ("smptehdbars", CREDITS, 15.0),
    ];
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y"]);
    let mut filter = String::new();
    for (i, (picture, seed, seconds)) in parts.iter().enumerate() {
        let sep = if picture.contains('=') { ':' } else { '=' };
        let source = format!("{picture}{sep}s=160x120:r=5:d={seconds}");
        command.args(["-f", "lavfi", "-i", &source]);
        command.args(["-f", "lavfi", "-i", &notes(*seed, *seconds)]);
        filter.push_str(&format!("[{}:v]format=yuv420p,setsar=1[v{i}];", 2 * i));
    }
    for i in 0..parts.len() {
        filter.push_str(&format!("[v{i}][{}:a]", 2 * i + 1));
    }
    filter.push_str(&format!("concat=n={}:v=1:a=1[v][a]", parts.len()));
    command.args(["-filter_complex", &filter, "-map", "[v]", "-map", "[a]"]);
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
    ]);
    if !command.arg(out).status()?.success() {
        return Err(format!("ffmpeg could not make {}", out.display()).into());
    }
    Ok(())
}

async fn ingest(
    store: &SledStore,
    id: &str,
    item_type: ItemType,
    url: String,
    parent: Option<&str>,
) -> Result<(), Error> {
    store
        .upsert_item(ItemUpsert {
            tenant: TenantId::new("demo")?,
            inventory_id: InventoryId::new(id)?,
            item_type,
            title: id.replace('-', " "),
            asset_url: url,
            tags: vec![],
            extra: Default::default(),
            parent_id: parent.map(InventoryId::new).transpose()?,
        })
        .await?;
    Ok(())
}

/// Makes the season's media, runs markers, scenes and thumbnails on it, prints the results.
pub async fn run(store: Arc<SledStore>, media_dir: &Path, work: &Path) -> Result<(), Error> {
    let tenant = TenantId::new("demo")?;
    ingest(
        &store,
        "show",
        ItemType::Series,
        "s3://none/show".into(),
        None,
    )
    .await?;
    ingest(
        &store,
        "show-s1",
        ItemType::Season,
        "s3://none/s1".into(),
        Some("show"),
    )
    .await?;
    for (i, (id, pattern, before, after)) in EPISODES.iter().enumerate() {
        let file = media_dir.join(format!("{id}.mp4"));
        if !file.exists() {
            println!("making {id}.mp4 with ffmpeg...");
            make_episode(&file, i as u32, pattern, *before, *after)?;
        }
        let url = format!("file://{}", file.display());
        ingest(&store, id, ItemType::Episode, url, Some("show-s1")).await?;
    }

    let stills = work.join("stills");
    let _ = std::fs::remove_dir_all(&stills);
    std::fs::create_dir_all(&stills)?;
    let stills = stills.canonicalize()?;
    let version = Version::new("1")?;
    let [fingerprint, markers, scenes, thumbnails] =
        ["fingerprint", "markers", "scenes", "thumbnails"].map(ProductName::new);
    let (fingerprint, markers, scenes, thumbnails) = (fingerprint?, markers?, scenes?, thumbnails?);
    let options = AnalyzerOptions {
        output: Some(format!("file://{}", stills.display())),
        max_stills: Some(5),
        ..AnalyzerOptions::default()
    };
    let mut analyzers = Vec::new();
    for product in [&fingerprint, &scenes, &thumbnails] {
        let wanted = if *product == thumbnails {
            options.clone()
        } else {
            AnalyzerOptions::default()
        };
        let analyzer = builtin_analyzer_with(product, &wanted)?.ok_or("no such analyzer")?;
        analyzers.push((product.clone(), analyzer));
    }
    let locator = Arc::new(AssetLocator::new(
        S3Settings::default(),
        Some(media_dir.to_path_buf()),
    ));
    let pipeline = media_task_engine::media::pipeline(locator, ProberChoice::Auto, analyzers)?
        .with_analyzer(markers.clone(), Arc::new(MarkersStep::new(version.clone())))?;
    let mut config = RunnerConfig::new(WorkerId::new("quickstart")?);
    for product in [&fingerprint, &markers, &scenes, &thumbnails] {
        config = config.with_product(ProductSettings::new(product.clone()));
    }
    config.concurrency = 2;

    println!(
        "\na season of {} episodes; markers tasks only, then scenes and thumbnails:",
        EPISODES.len()
    );
    let new = |id: &str, product: &ProductName| -> Result<NewTask, Error> {
        Ok(NewTask {
            key: TaskKey {
                tenant: tenant.clone(),
                inventory_id: InventoryId::new(id)?,
                product: product.clone(),
                version: version.clone(),
            },
            priority: Priority::Medium,
        })
    };
    let mut tasks = Vec::new();
    for (id, ..) in EPISODES {
        tasks.push(store.create_task(new(id, &markers)?).await?.task);
    }
    let runner = Runner::start(store.clone(), pipeline, config)?;
    let first = tasks[0].id;
    let waiting = tokio::time::timeout(
        Duration::from_secs(30),
        wait_for(&*store, &tenant, first, |t| {
            !t.waiting_for().is_empty() || !t.status().is_active()
        }),
    )
    .await??;
    let mut awaited = Vec::new();
    for id in waiting.waiting_for() {
        let task = store.get_task(&tenant, *id).await?.ok_or("task vanished")?;
        awaited.push(format!("{} {}", task.key.product, task.key.inventory_id));
    }
    println!(
        "  markers {} is {} (no worker held), waiting for: {}",
        waiting.key.inventory_id,
        waiting.status(),
        awaited.join(", ")
    );
    for (id, ..) in EPISODES {
        tasks.push(store.create_task(new(id, &scenes)?).await?.task);
    }
    tasks.push(
        store
            .create_task(new(EPISODES[0].0, &thumbnails)?)
            .await?
            .task,
    );
    for task in &tasks {
        let done = wait_until_finished(&*store, &tenant, task.id).await?;
        if done.status() != Status::Done {
            return Err(format!(
                "{} {}: {:?}",
                done.key.product,
                done.key.inventory_id,
                done.error()
            )
            .into());
        }
    }
    runner.shutdown(Duration::from_secs(10)).await?;

    let result = |product: &ProductName, id: &str| {
        let (store, tenant, product) = (store.clone(), tenant.clone(), product.clone());
        let id = InventoryId::new(id);
        async move {
            let result = store.get_result(&tenant, &product, &id?, None).await?;
            Ok::<_, Error>(result.ok_or("no result")?.data)
        }
    };
    let span =
        |s: Option<[f64; 2]>| s.map_or("none".to_owned(), |[a, b]| format!("{a:5.1}-{b:5.1} s"));
    println!("\nmarkers (intro made at 4, 12, 19 s for 20 s; credits the last 15 s):");
    for (id, _, before, after) in EPISODES {
        let data: MarkersData = serde_json::from_value(result(&markers, id).await?)?;
        println!(
            "  {id}  intro {}  credits {} (made {:.1}-{:.1} s)  shared with {}",
            span(data.intro),
            span(data.credits),
            before + 20.0 + after,
            before + 35.0 + after,
            data.intro_shared_with.join(", ")
        );
    }
    println!("\nfingerprints (made by the markers tasks):");
    for (id, ..) in EPISODES {
        let data: FingerprintData = serde_json::from_value(result(&fingerprint, id).await?)?;
        println!(
            "  {id}  {} items, {:.1} s of {:.1} s",
            data.items,
            data.items as f64 * data.item_secs,
            data.duration_secs
        );
    }
    println!("\nscenes (four parts, each its own picture: four shots):");
    for (id, ..) in EPISODES {
        let data: ScenesData = serde_json::from_value(result(&scenes, id).await?)?;
        let cuts: Vec<String> = data.cuts.iter().map(|c| format!("{:.1}", c.time)).collect();
        println!(
            "  {id}  {} shots, cuts at {} s",
            data.shots.len(),
            cuts.join(", ")
        );
    }
    let data: ThumbnailsData = serde_json::from_value(result(&thumbnails, EPISODES[0].0).await?)?;
    println!(
        "\nthumbnails of {} ({} stills of {} shots):",
        EPISODES[0].0,
        data.stills.len(),
        data.shots
    );
    for still in &data.stills {
        let bytes = std::fs::metadata(stills.join(&still.key))?.len();
        println!(
            "  {:5.1} s  {}  {}x{}  {bytes} bytes",
            still.time_secs, still.url, still.width, still.height
        );
    }
    Ok(())
}
