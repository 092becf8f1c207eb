//! Shared by the examples: an embedded engine (the sled store in a temporary directory, the
//! runner with the media steps, the Task API served on a free loopback port, the webhook
//! dispatcher) and short clips made with ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use media_task_engine::core::prelude::*;
use media_task_engine::media::analyze::Analyzer;
use media_task_engine::media::asset_url::{AssetLocator, S3Settings};
use media_task_engine::media::probe_step::ProberChoice;
use media_task_engine::runner::step::ProductSettings;
use media_task_engine::runner::{Runner, RunnerConfig, RunnerHandle};
use media_task_engine::sled::SledStore;
use task_client::Client;
use task_http::{ServiceConfig, TaskApi};
use task_webhooks::{Dispatcher, DispatcherConfig, UrlPolicy};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The examples' error type.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The API key of the examples' one tenant.
pub const API_KEY: &str = "example-key";

/// A product the engine runs, with its analyzer.
pub struct Product {
    /// Its limits (minimum length, timeout, attempts, concurrency).
    pub settings: ProductSettings,
    /// What its analyze step runs.
    pub analyzer: Arc<dyn Analyzer>,
}

impl Product {
    /// `name` analysed by `analyzer`, refusing assets shorter than `min_secs`.
    pub fn new(name: &str, analyzer: Arc<dyn Analyzer>, min_secs: u64) -> Result<Self, Error> {
        let settings = ProductSettings {
            min_duration: Duration::from_secs(min_secs),
            max_attempts: 2,
            ..ProductSettings::new(ProductName::new(name)?)
        };
        Ok(Self { settings, analyzer })
    }

    /// The built-in adbreaks product.
    pub fn adbreaks(min_secs: u64) -> Result<Self, Error> {
        let name = ProductName::new("adbreaks")?;
        let analyzer =
            media_task_engine::media::builtin_analyzer(&name).ok_or("no adbreaks analyzer")?;
        Self::new("adbreaks", analyzer, min_secs)
    }
}

/// An engine in this process: store, runner, Task API on loopback, webhook dispatcher.
pub struct Engine {
    /// A client of the engine's Task API, as tenant `demo`.
    pub client: Client,
    /// The media root: `file://` asset URLs point under it.
    pub media: PathBuf,
    runner: RunnerHandle,
    server: JoinHandle<std::io::Result<()>>,
    dispatcher: (CancellationToken, JoinHandle<()>),
    _dir: tempfile::TempDir,
}

impl Engine {
    /// Starts an engine running `products`; webhook receivers must pass `policy`.
    pub async fn start(products: Vec<Product>, policy: UrlPolicy) -> Result<Self, Error> {
        let dir = tempfile::tempdir()?;
        let media = dir.path().join("media");
        std::fs::create_dir_all(&media)?;
        let media = media.canonicalize()?;
        let store = Arc::new(SledStore::open(dir.path().join("tasks"))?);

        let locator = Arc::new(AssetLocator::new(
            S3Settings::default(),
            Some(media.clone()),
        ));
        let analyzers = products
            .iter()
            .map(|p| (p.settings.name.clone(), p.analyzer.clone()))
            .collect();
        let pipeline = media_task_engine::media::pipeline(locator, ProberChoice::Auto, analyzers)?;
        let mut runner_config = RunnerConfig::new(WorkerId::new("example")?);
        runner_config.concurrency = 2;
        let mut api_config = ServiceConfig::new().with_api_key(API_KEY, TenantId::new("demo")?);
        api_config.webhook_policy = policy;
        for product in products {
            api_config = api_config.with_product(product.settings.name.clone());
            runner_config = runner_config.with_product(product.settings);
        }
        let runner = Runner::start(store.clone(), pipeline, runner_config)?;

        let dispatcher = Dispatcher::new(
            store.clone() as Arc<dyn Store>,
            DispatcherConfig {
                policy,
                ..DispatcherConfig::default()
            },
        )?;
        let stop = CancellationToken::new();
        let dispatcher = (stop.clone(), tokio::spawn(dispatcher.run(stop)));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let router = TaskApi::new(store, api_config).router();
        let server = tokio::spawn(axum::serve(listener, router).into_future());
        Ok(Self {
            client: Client::new(&base, API_KEY)?,
            media,
            runner,
            server,
            dispatcher,
            _dir: dir,
        })
    }

    /// The `file://` URL of `name` in the media root.
    pub fn file_url(&self, name: &str) -> String {
        format!("file://{}", self.media.join(name).display())
    }

    /// Stops the dispatcher, the runner (releasing its leases) and the API.
    pub async fn stop(self) -> Result<(), Error> {
        self.dispatcher.0.cancel();
        self.dispatcher.1.await?;
        self.runner.shutdown(Duration::from_secs(10)).await?;
        self.server.abort();
        Ok(())
    }
}

/// Makes a `seconds`-long clip at `out`: a test picture, and a 1 kHz tone whose peak is at
/// `tone_dbfs` (its loudness is `tone_dbfs - 3.01` LUFS by ITU-R BS.1770's calibration).
pub fn make_clip(out: &Path, seconds: f64, tone_dbfs: f64) -> Result<(), Error> {
    let amplitude = 10f64.powf(tone_dbfs / 20.0);
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=64x36:rate=5:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "aevalsrc={amplitude}*sin(2*PI*1000*t):s=48000:d={seconds}"
        ))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .args(["-b:a", "128k", "-ac", "1", "-movflags", "+faststart"])
        .arg(out)
        .output()
        .map_err(|e| format!("ffmpeg is needed (scripts/install-test-deps.sh ffmpeg): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "ffmpeg could not make {}: {}",
            out.display(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}
