//! The main job on the embedded default: sled, media from a local folder, the real media steps.
//!
//! Ingests a few assets, creates adbreaks tasks with different priorities, cancels one, shows
//! every status change live, then the final statuses (failures with the contract's exact
//! messages) and the adbreak results. Then a small season (see [`season`]): markers tasks that
//! create and wait for their episodes' fingerprint tasks, the intro and credits they find, the
//! shots of each episode and the stills of one. Needs ffmpeg; makes its videos on first run.
//!
//! `cargo run --example quickstart`

mod season;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media_task_engine::core::prelude::*;
use media_task_engine::media::analyze::adbreaks::{AdbreakFilter, AdbreaksData, filter_adbreaks};
use media_task_engine::media::asset_url::{AssetLocator, S3Settings};
use media_task_engine::media::probe_step::ProberChoice;
use media_task_engine::runner::step::ProductSettings;
use media_task_engine::runner::{Runner, RunnerConfig};
use media_task_engine::sled::SledStore;

type Error = Box<dyn std::error::Error>;

/// Makes an `seconds`-long tiny video with black, silent gaps at `gaps` (seconds).
fn make_video(out: &Path, seconds: u32, gaps: &[(u32, u32)]) -> Result<(), Error> {
    let enable = gaps
        .iter()
        .map(|(a, b)| format!("between(t,{a},{b})"))
        .collect::<Vec<_>>()
        .join("+");
    let (video, audio) = if gaps.is_empty() {
        ("null".to_string(), "anull".to_string())
    } else {
        (
            format!("drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{enable}'"),
            format!("volume=enable='{enable}':volume=0"),
        )
    };
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=64x36:rate=2:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=330:sample_rate=16000:duration={seconds}"
        ))
        .args([
            "-vf",
            &video,
            "-af",
            &audio,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-c:a",
            "aac",
            "-b:a",
            "16k",
            "-ac",
            "1",
            "-movflags",
            "+faststart",
        ])
        .arg(out)
        .status()?;
    if !status.success() {
        return Err(format!("ffmpeg could not make {}", out.display()).into());
    }
    Ok(())
}

fn prepare_media(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    type Gaps = &'static [(u32, u32)];
    let videos: [(&str, u32, Gaps); 3] = [
        ("feature.mp4", 720, &[(150, 152), (390, 392), (600, 602)]),
        ("episode.mp4", 660, &[(200, 202), (450, 452)]),
        ("trailer.mp4", 150, &[]),
    ];
    for (name, seconds, gaps) in videos {
        if !dir.join(name).exists() {
            println!("making {name} with ffmpeg...");
            make_video(&dir.join(name), seconds, gaps)?;
        }
    }
    std::fs::write(
        dir.join("corrupt.mp4"),
        b"this is not a video, whatever its name says".repeat(100),
    )?;
    Ok(())
}

fn ffmpeg_available() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("ffprobe")
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if !ffmpeg_available() {
        eprintln!(
            "ffmpeg is missing: install it with `bash scripts/install-test-deps.sh ffmpeg` (or `apt-get install -y ffmpeg`), then run this again."
        );
        std::process::exit(1);
    }
    let work = PathBuf::from("target/quickstart");
    let media_dir = work.join("media");
    prepare_media(&media_dir)?;
    let media_dir = media_dir.canonicalize()?;
    let data_dir = work.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);

    let store = Arc::new(SledStore::open(&data_dir)?);
    let locator = Arc::new(AssetLocator::new(
        S3Settings::default(),
        Some(media_dir.clone()),
    ));
    let adbreaks = ProductName::new("adbreaks")?;
    let analyzer =
        media_task_engine::media::builtin_analyzer(&adbreaks).ok_or("no adbreaks analyzer")?;
    let pipeline = media_task_engine::media::pipeline(
        locator,
        ProberChoice::Auto,
        vec![(adbreaks.clone(), analyzer)],
    )?;
    let mut config =
        RunnerConfig::new(WorkerId::new("quickstart")?).with_product(ProductSettings {
            min_duration: Duration::from_secs(600),
            concurrency: 2,
            ..ProductSettings::new(adbreaks.clone())
        });
    config.concurrency = 2;

    let tenant = TenantId::new("demo")?;
    let assets = [
        ("feature-film", "feature.mp4", Priority::High),
        ("episode-101", "episode.mp4", Priority::Medium),
        ("trailer", "trailer.mp4", Priority::Low),
        ("broken-upload", "corrupt.mp4", Priority::Low),
        ("lost-file", "missing.mp4", Priority::Medium),
        ("not-needed", "episode.mp4", Priority::Low),
    ];
    let version = Version::new("1.0.1")?;
    let mut names = HashMap::new();
    let mut tasks = Vec::new();
    println!(
        "\ningesting {} assets and creating adbreaks {version} tasks:",
        assets.len()
    );
    for (inventory, file, priority) in assets {
        let inventory_id = InventoryId::new(inventory)?;
        let url = format!("file://{}", media_dir.join(file).display());
        store
            .upsert_item(ItemUpsert {
                tenant: tenant.clone(),
                inventory_id: inventory_id.clone(),
                item_type: ItemType::Standalone,
                title: inventory.replace('-', " "),
                asset_url: url,
                tags: vec![],
                extra: Default::default(),
                parent_id: None,
            })
            .await?;
        let key = TaskKey {
            tenant: tenant.clone(),
            inventory_id,
            product: adbreaks.clone(),
            version: version.clone(),
        };
        let task = store.create_task(NewTask { key, priority }).await?.task;
        println!("  {inventory:<14} {priority:<6} -> task {}", task.id);
        names.insert(task.id, inventory);
        tasks.push(task);
    }
    let cancelled = store.request_cancel(&tenant, tasks[5].id).await?;
    println!(
        "  cancelled {} while pending: {}",
        names[&cancelled.id],
        cancelled.status()
    );

    println!("\nlive progress (2 workers, high priority first):");
    let mut changes = store.subscribe();
    let started = Instant::now();
    let runner = Runner::start(store.clone(), pipeline, config)?;
    let mut open: usize = tasks.iter().filter(|t| t.id != cancelled.id).count();
    while open > 0 {
        let change = match tokio::time::timeout(Duration::from_secs(60), changes.recv()).await {
            Ok(Ok(change)) => change,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err("no progress for a minute".into()),
        };
        let Some(name) = names.get(&change.task_id) else {
            continue;
        };
        let step = change.step.map(|s| s.to_string()).unwrap_or_default();
        println!(
            "  {:>7.3}s  {name:<14} {:<10} {step}",
            started.elapsed().as_secs_f64(),
            change.status.to_string()
        );
        if !change.status.is_active() {
            open -= 1;
        }
    }
    runner.shutdown(Duration::from_secs(10)).await?;

    println!("\nfinal statuses:");
    for task in &tasks {
        let task = store
            .get_task(&tenant, task.id)
            .await?
            .ok_or("task vanished")?;
        let outcome = match task.error() {
            Some(error) => format!("{} ({}): {error}", task.status(), error.code()),
            None => task.status().to_string(),
        };
        println!(
            "  {:<14} {:<6} attempt {}  {outcome}",
            names[&task.id], task.priority, task.attempt
        );
    }

    println!("\nadbreak results (minimum_separation 1, maximum_separation 5 minutes):");
    for task in &tasks {
        let result = store
            .get_result(&tenant, &adbreaks, &task.key.inventory_id, Some(&version))
            .await?;
        let Some(result) = result else { continue };
        let data: AdbreaksData = serde_json::from_value(result.data)?;
        let groups = filter_adbreaks(&data, &AdbreakFilter::default());
        println!("  {} ({:.0} s):", names[&task.id], data.duration_secs);
        for group in groups {
            println!("    rank {}: {:?}", group.rank, group.candidates);
        }
    }
    season::run(store, &media_dir, &work).await?;
    println!(
        "\ndone in {:.1} s; the store is in {}",
        started.elapsed().as_secs_f64(),
        data_dir.display()
    );
    Ok(())
}
