//! Test fixtures made with ffmpeg, a moto S3 server started by the tests, and a flaky store.
#![allow(dead_code, clippy::unwrap_used)]

mod codecs;
mod flaky;
mod moto;
mod scenes;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[allow(unused_imports)]
pub use codecs::{CODECS, CodecFixture, FPS, codec_fixtures};
#[allow(unused_imports)]
pub use flaky::FlakyStore;
#[allow(unused_imports)]
pub use moto::{Moto, moto};
#[allow(unused_imports)]
pub use scenes::{SCENES, Scene, scene, scene_path, truncated_mkv};

/// Black and silent gaps drawn into the gapped fixtures, in seconds.
pub const GAPS: [(f64, f64); 3] = [(120.0, 122.0), (300.0, 302.0), (480.0, 482.0)];

/// The generated fixture files.
#[derive(Debug)]
pub struct Fixtures {
    pub dir: PathBuf,
}

impl Fixtures {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Every fixture name with the kind of file it is.
    pub const ALL: [&'static str; 6] = [
        "long-faststart.mp4",
        "long-moov-at-end.mp4",
        "short.mp4",
        "truncated.mp4",
        "random.mp4",
        "fragmented.mp4",
    ];

    /// The fixtures that are valid MP4 files.
    pub const VALID: [&'static str; 3] =
        ["long-faststart.mp4", "long-moov-at-end.mp4", "short.mp4"];
}

pub(crate) fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e}. Run scripts/install-test-deps.sh to install ffmpeg.",
            command.get_program()
        )
    });
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn encode(out: &Path, seconds: u32, gaps: bool, movflags: Option<&str>) {
    let enable = GAPS
        .iter()
        .map(|(a, b)| format!("between(t,{a},{b})"))
        .collect::<Vec<_>>()
        .join("+");
    let video = if gaps {
        format!("drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{enable}'")
    } else {
        "null".into()
    };
    let audio = if gaps {
        format!("volume=enable='{enable}':volume=0")
    } else {
        "anull".into()
    };
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y", "-f", "lavfi", "-i"]);
    command.arg(format!("testsrc=size=64x36:rate=2:duration={seconds}"));
    command.args(["-f", "lavfi", "-i"]);
    command.arg(format!(
        "sine=frequency=440:sample_rate=16000:duration={seconds}"
    ));
    command.args([
        "-vf",
        &video,
        "-af",
        &audio,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-b:a",
        "16k",
        "-ac",
        "1",
    ]);
    if let Some(flags) = movflags {
        command.args(["-movflags", flags]);
    }
    command.arg(out);
    run(&mut command);
}

/// The workspace root: the nearest directory above this crate holding Cargo.lock.
pub fn workspace_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("Cargo.lock").exists() && dir.pop() {}
    dir
}

/// Makes the fixtures once per run (cached under target/ across runs).
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = workspace_root().join("target/media-fixtures/v2");
        let done = dir.join(".complete");
        if !done.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            encode(
                &dir.join("long-faststart.mp4"),
                660,
                true,
                Some("+faststart"),
            );
            encode(&dir.join("long-moov-at-end.mp4"), 660, true, None);
            encode(&dir.join("short.mp4"), 540, false, Some("+faststart"));
            encode(
                &dir.join("fragmented.mp4"),
                660,
                false,
                Some("frag_keyframe+empty_moov"),
            );
            let full = std::fs::read(dir.join("long-faststart.mp4")).unwrap();
            std::fs::write(dir.join("truncated.mp4"), &full[..full.len() / 2]).unwrap();
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            let noise: Vec<u8> = (0..200_000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            std::fs::write(dir.join("random.mp4"), noise).unwrap();
            std::fs::write(&done, b"ok").unwrap();
        }
        Fixtures { dir }
    })
}

/// The bucket holding every fixture on this binary's moto server.
pub const BUCKET: &str = "media";

/// Starts moto (once) and uploads the fixtures to [`BUCKET`] (once).
pub async fn seeded() -> &'static Moto {
    static SEEDED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let server = moto();
    SEEDED
        .get_or_init(|| async {
            server.create_bucket(BUCKET);
            let client = server.client(BUCKET);
            for name in Fixtures::ALL {
                let bytes = std::fs::read(fixtures().path(name)).unwrap();
                object_store::ObjectStoreExt::put(
                    &client,
                    &object_store::path::Path::from(name),
                    bytes.into(),
                )
                .await
                .unwrap();
            }
        })
        .await;
    server
}

/// The `s3://` URL of a fixture.
pub fn s3_url(name: &str) -> String {
    format!("s3://{BUCKET}/{name}")
}

/// A step context for a task on `url`, with the given earlier checkpoints.
pub fn context(
    store: std::sync::Arc<dyn task_core::store::Store>,
    url: &str,
    checkpoints: Vec<(task_core::task::Step, serde_json::Value)>,
    min_duration: std::time::Duration,
) -> task_runner::step::StepContext {
    use task_core::prelude::*;
    let key = task_core::testing::key("t1", "asset", "adbreaks", "1");
    let mut task = Task::new(
        TaskId::generate(),
        key.clone(),
        Priority::Low,
        Timestamp::from_millis(0),
    );
    task.attempt = 1;
    for (step, output) in checkpoints {
        task.checkpoints.push(Checkpoint {
            step,
            output,
            finished_at: Timestamp(0),
            started_at: None,
            attempt: 1,
            reused: false,
        });
    }
    let item = CatalogItem {
        item: ItemUpsert {
            tenant: key.tenant,
            inventory_id: key.inventory_id,
            item_type: ItemType::Standalone,
            title: "asset".into(),
            asset_url: url.into(),
            tags: vec![],
            extra: Default::default(),
            parent_id: None,
        },
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
        deleted_at: None,
    };
    let product = task_runner::step::ProductSettings {
        min_duration,
        ..task_runner::step::ProductSettings::new(ProductName::new("adbreaks").unwrap())
    };
    task_runner::step::StepContext {
        task,
        item,
        product: std::sync::Arc::new(product),
        cancel: tokio_util::sync::CancellationToken::new(),
        store,
    }
}
