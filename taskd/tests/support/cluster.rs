//! Several `taskd` processes on one PostgreSQL schema: API nodes (`serve --no-runner`) and
//! workers (`worker`), one TOML config for all, tiny ffmpeg-made videos as the media.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::encode;

use super::Daemon;
use super::pg::{Backend, Schema};

/// The API key of the cluster's tenant.
pub const KEY: &str = "cluster-test-key-01";

/// The shared config, media and schema of a test's nodes.
pub struct Cluster {
    /// The config, media and scratch files.
    pub dir: tempfile::TempDir,
    /// The store (PostgreSQL).
    pub backend: Backend,
    /// The lease every worker takes.
    pub lease: Duration,
}

impl Cluster {
    /// A fresh schema, a config with `[runner]` concurrency `concurrency` and a lease of
    /// `lease_secs`, product `adbreaks` limited to `product_limit` tasks at once across all workers,
    /// and one 1-second video, `media/clip.mp4`.
    pub fn new(concurrency: usize, product_limit: usize, lease_secs: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::postgres();
        std::fs::create_dir_all(dir.path().join("media")).unwrap();
        encode(&dir.path().join("media/clip.mp4"), 1);
        // The store in the file, as README's "Running on several machines" has it.
        let url = &backend.schema().unwrap().url;
        let config = format!(
            "store = \"{url}\"\nscratch_dir = \"{}\"\n\n[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\n\
             [products.adbreaks]\nconcurrency = {product_limit}\n\n\
             [runner]\nconcurrency = {concurrency}\nlease_secs = {lease_secs}\nshutdown_grace_secs = 2\n{}",
            dir.path().join("scratch").display(),
            backend.toml()
        );
        std::fs::write(dir.path().join("taskd.toml"), config).unwrap();
        Self {
            dir,
            backend,
            lease: Duration::from_secs(lease_secs),
        }
    }

    /// The schema every node uses.
    pub fn schema(&self) -> &Schema {
        self.backend.schema().unwrap()
    }

    /// The `file://` URL of the clip.
    pub fn clip_url(&self) -> String {
        let media = self.dir.path().join("media").canonicalize().unwrap();
        format!("file://{}", media.join("clip.mp4").display())
    }

    fn node(&self, role: &[&str]) -> Daemon {
        let config: PathBuf = self.dir.path().join("taskd.toml");
        let mut args: Vec<std::ffi::OsString> = role.iter().map(Into::into).collect();
        args.extend(["--listen".into(), "127.0.0.1:0".into(), "--config".into()]);
        args.push(config.into());
        args.push("--media-root".into());
        args.push(self.dir.path().join("media").into());
        Daemon::launch(args)
    }

    /// Starts an API-only node.
    pub fn api(&self) -> Daemon {
        self.node(&["serve", "--no-runner"])
    }

    /// Starts a worker node.
    pub fn worker(&self) -> Daemon {
        self.node(&["worker"])
    }
}

/// A request with the cluster's key; `None` on a transport error.
pub async fn call(
    http: &reqwest::Client,
    node: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http
        .request(method.clone(), node.url(path))
        .header("X-API-Key", KEY)
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", node.addr));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Adds item `id` with the clip as its video.
pub async fn ingest(http: &reqwest::Client, node: &Daemon, cluster: &Cluster, id: &str) {
    let item =
        json!({"id": id, "type": "standalone", "title": id, "asset_url": cluster.clip_url()});
    let (status, body) = call(
        http,
        node,
        reqwest::Method::PUT,
        "/catalog/v1/item",
        Some(item),
    )
    .await;
    assert!(
        status == 200 || status == 201,
        "ingest {id}: {status} {body}"
    );
}

/// A history entry's time.
pub fn at(entry: &Value) -> SystemTime {
    let text = entry["at"]
        .as_str()
        .unwrap_or_else(|| panic!("no time in {entry}"));
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The history entries of task `id`.
pub async fn history(http: &reqwest::Client, node: &Daemon, id: &str) -> Vec<Value> {
    let (status, body) = call(
        http,
        node,
        reqwest::Method::GET,
        &format!("/task/{id}/history"),
        None,
    )
    .await;
    assert_eq!(status, 200, "history of {id}: {body}");
    body["history"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{body}"))
}

/// The worker named in a `claimed` entry's detail (`worker W, epoch N`).
pub fn claimer(entry: &Value) -> &str {
    entry["detail"]
        .as_str()
        .and_then(|d| d.strip_prefix("worker "))
        .and_then(|d| d.split(", epoch").next())
        .unwrap_or_else(|| panic!("no worker in {entry}"))
}

/// The p-th percentile of sorted `values`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Reads the server-sent events of one task stream: each `next` is the task body of the next
/// event, with the time it arrived; `None` once the stream closed.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// Opens `/task/{id}/events` on `node`.
    pub async fn open(http: &reqwest::Client, node: &Daemon, id: &str) -> Self {
        let response = http
            .get(node.url(&format!("/task/{id}/events")))
            .header("X-API-Key", KEY)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap_or_else(|e| panic!("events of {id} on {}: {e}", node.addr));
        assert_eq!(response.status(), 200, "events of {id}");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's task body and when it arrived.
    pub async fn next(&mut self) -> Option<(Value, std::time::Instant)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                let body = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{data}: {e}"));
                return Some((body, std::time::Instant::now()));
            }
            match self.response.chunk().await.expect("the event stream reads") {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }
}
