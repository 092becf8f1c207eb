//! Configuration: a TOML file, overridden by environment variables and flags (clap resolves
//! flag-over-env), over defaults that work with no file at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use task_core::ids::TenantId;

use crate::error::TaskdError;
pub use crate::products::{Product, ProductEntry};
use crate::store::{PostgresEntry, StoreSetting};

/// The key used when none is configured (only on a loopback address).
pub const DEV_KEY: &str = "dev-key";
/// The tenant of [`DEV_KEY`].
pub const DEV_TENANT: &str = "default";

/// The TOML file, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `host:port` to listen on (default `127.0.0.1:8080`).
    pub listen: Option<String>,
    /// The store: a sled directory or a `postgres://` URL (default: sled in `./data`).
    pub store: Option<String>,
    /// Where sled keeps its files: the older spelling of `store` for a sled directory.
    pub data_dir: Option<PathBuf>,
    /// How a `postgres://` store is used (schema, pool size).
    #[serde(default)]
    pub postgres: PostgresEntry,
    /// Days a finished task (with its history), or an ended webhook delivery, is kept before it
    /// is deleted; pending deliveries, results and catalog items are kept regardless (default:
    /// both are kept forever).
    pub retention_days: Option<u64>,
    /// Root of `file://` asset URLs (default `./media`).
    pub media_root: Option<PathBuf>,
    /// Where objects are downloaded for ffprobe and ffmpeg (default: the system's temporary
    /// directory); it needs room for the largest video times the runner's concurrency.
    pub scratch_dir: Option<PathBuf>,
    /// API keys and their tenants.
    #[serde(default)]
    pub api_keys: Vec<KeyEntry>,
    /// Enabled products and their settings (default: `adbreaks`).
    #[serde(default)]
    pub products: BTreeMap<String, ProductEntry>,
    /// Runner settings.
    #[serde(default)]
    pub runner: RunnerEntry,
    /// HTTP settings.
    #[serde(default)]
    pub http: HttpEntry,
    /// S3 endpoint and credentials (else the standard AWS variables).
    #[serde(default)]
    pub s3: S3Entry,
    /// Per-tenant asset scopes; a tenant without one may name any bucket and any file under
    /// the media root.
    #[serde(default)]
    pub tenants: BTreeMap<String, crate::scopes::TenantEntry>,
    /// Whether `memory://` asset URLs are accepted (default false: they name nothing real and
    /// exist for tests and examples).
    pub allow_memory_urls: Option<bool>,
    /// Webhook delivery and static subscriptions.
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhooksEntry,
    /// The web console at `/ui`.
    #[serde(default)]
    pub console: crate::console::ConsoleEntry,
    /// Where `/metrics` is served (default: nowhere, and nothing is recorded).
    #[serde(default)]
    pub metrics: crate::exporter::MetricsEntry,
}

/// One API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The secret.
    pub key: String,
    /// Its tenant.
    pub tenant: String,
}

/// Runner settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerEntry {
    /// Tasks at once (default 16).
    pub concurrency: Option<usize>,
    /// Lease in seconds (default 15).
    pub lease_secs: Option<u64>,
    /// Seconds running tasks get to finish at shutdown (default 10).
    pub shutdown_grace_secs: Option<u64>,
}

/// HTTP settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpEntry {
    /// Largest body in bytes (default 1 MiB).
    pub body_limit: Option<usize>,
    /// Longest long-poll in seconds (default 60).
    pub max_wait_secs: Option<u64>,
    /// Most entries per batch (default 5000).
    pub max_batch: Option<usize>,
    /// Seconds a client has to send a request's headers, and the longest idle wait between
    /// keep-alive requests (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's body (default 30; then 408).
    pub body_read_timeout_secs: Option<u64>,
    /// Seconds a connection may go without a byte read or written (default 120; keep it above
    /// `max_wait_secs`).
    pub idle_timeout_secs: Option<u64>,
    /// Connections served at once (default 1024); more wait in the listen backlog.
    pub max_connections: Option<usize>,
}

impl HttpEntry {
    /// The server's connection limits, checked.
    pub fn limits(&self) -> Result<crate::http_server::HttpLimits, TaskdError> {
        let mut limits = crate::http_server::HttpLimits::default();
        let positive = |field: &str, value: u64| {
            if value == 0 {
                Err(setting(&format!("http.{field}"), "must be at least 1"))
            } else {
                Ok(Duration::from_secs(value))
            }
        };
        if let Some(secs) = self.header_read_timeout_secs {
            limits.header_read_timeout = positive("header_read_timeout_secs", secs)?;
        }
        if let Some(secs) = self.idle_timeout_secs {
            limits.idle_timeout = positive("idle_timeout_secs", secs)?;
        }
        if let Some(secs) = self.body_read_timeout_secs {
            positive("body_read_timeout_secs", secs)?;
        }
        if let Some(max) = self.max_connections {
            if max == 0 {
                return Err(setting("http.max_connections", "must be at least 1"));
            }
            limits.max_connections = max;
        }
        let max_wait = Duration::from_secs(self.max_wait_secs.unwrap_or(60));
        if limits.idle_timeout <= max_wait {
            return Err(setting(
                "http.idle_timeout_secs",
                format!(
                    "must be more than max_wait_secs ({} s), or long-polls would be cut",
                    max_wait.as_secs()
                ),
            ));
        }
        Ok(limits)
    }
}

/// S3 settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Entry {
    /// Endpoint such as `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret key.
    pub secret_access_key: Option<String>,
}

/// What flags and environment variables override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `TASKD_LISTEN`.
    pub listen: Option<String>,
    /// `--store` / `TASKD_STORE`: a sled directory or a `postgres://` URL.
    pub store: Option<String>,
    /// `--data-dir` / `TASKD_DATA_DIR`: a sled directory.
    pub data_dir: Option<PathBuf>,
    /// `--media-root` / `TASKD_MEDIA_ROOT`.
    pub media_root: Option<PathBuf>,
    /// `--api-key KEY=TENANT` / `TASKD_API_KEYS` (comma-separated); replace the file's keys.
    pub api_keys: Vec<String>,
    /// `--product NAME` / `TASKD_PRODUCTS`; replace the file's list (keeping its settings).
    pub products: Vec<String>,
    /// The node serves no API (`taskd worker`): no API key is needed on any address.
    pub without_api: bool,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// The store.
    pub store: StoreSetting,
    /// How long finished tasks are kept (None: forever).
    pub retention: Option<Duration>,
    /// `file://` root.
    pub media_root: PathBuf,
    /// Downloads for the tools (None: the system's temporary directory).
    pub scratch_dir: Option<PathBuf>,
    /// (key, tenant) pairs.
    pub api_keys: Vec<(String, TenantId)>,
    /// The tenants with an asset scope, and it.
    pub asset_scopes: Vec<(TenantId, task_media::asset_url::AssetScope)>,
    /// Whether `memory://` asset URLs are accepted.
    pub allow_memory_urls: bool,
    /// Whether the development key was added because none was configured.
    pub dev_key: bool,
    /// Enabled products.
    pub products: Vec<Product>,
    /// Runner concurrency.
    pub concurrency: usize,
    /// Runner lease.
    pub lease: Duration,
    /// Shutdown grace for running tasks.
    pub shutdown_grace: Duration,
    /// HTTP settings.
    pub http: HttpEntry,
    /// S3 settings.
    pub s3: S3Entry,
    /// Webhook settings.
    pub webhooks: crate::webhooks::WebhooksEntry,
    /// Console settings.
    pub console: crate::console::ConsoleEntry,
    /// Metrics settings.
    pub metrics: crate::exporter::MetricsSettings,
}

pub(crate) fn setting(field: &str, reason: impl ToString) -> TaskdError {
    TaskdError::Setting {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

impl FileConfig {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, TaskdError> {
        let text = std::fs::read_to_string(path).map_err(|e| TaskdError::ConfigFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|message| TaskdError::ConfigFile {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies `overrides` and the defaults.
    pub fn resolve(mut self, overrides: Overrides) -> Result<Settings, TaskdError> {
        let listen = overrides
            .listen
            .or(self.listen.take())
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen
            .parse()
            .map_err(|e| setting("listen", format!("{listen:?}: {e}")))?;
        let mut api_keys = Vec::new();
        let raw_keys: Vec<(String, String)> = if overrides.api_keys.is_empty() {
            self.api_keys
                .iter()
                .map(|k| (k.key.clone(), k.tenant.clone()))
                .collect()
        } else {
            overrides
                .api_keys
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, t)| (k.to_owned(), t.to_owned()))
                        .ok_or_else(|| setting("api_key", "expected KEY=TENANT"))
                })
                .collect::<Result<_, _>>()?
        };
        for (key, tenant) in raw_keys {
            if key.len() < 8 {
                return Err(setting(
                    "api_key",
                    format!("keys must be at least 8 characters (tenant {tenant})"),
                ));
            }
            let tenant = TenantId::new(tenant).map_err(|e| setting("api_key", e))?;
            api_keys.push((key, tenant));
        }
        let dev_key = api_keys.is_empty();
        if dev_key {
            if !listen.ip().is_loopback() && !overrides.without_api {
                return Err(setting(
                    "api_keys",
                    format!(
                        "none configured: set some to listen on {listen} (only a loopback address gets the development key)"
                    ),
                ));
            }
            api_keys.push((
                DEV_KEY.to_owned(),
                TenantId::new(DEV_TENANT).map_err(|e| setting("api_key", e))?,
            ));
        }
        let mut names: Vec<String> = if overrides.products.is_empty() {
            self.products.keys().cloned().collect()
        } else {
            overrides.products.clone()
        };
        if names.is_empty() {
            names.push("adbreaks".to_owned());
        }
        let products = names
            .into_iter()
            .map(|name| {
                let entry = self.products.get(&name).cloned().unwrap_or_default();
                crate::products::resolve(name, entry)
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::products::check_markers(&products)?;
        let media_root = overrides
            .media_root
            .or(self.media_root)
            .unwrap_or_else(|| PathBuf::from("./media"));
        let allow_memory_urls = self.allow_memory_urls.unwrap_or(false);
        let absolute_root =
            std::path::absolute(&media_root).map_err(|e| setting("media_root", e))?;
        let asset_scopes =
            crate::scopes::resolve(&self.tenants, &absolute_root, allow_memory_urls)?;
        let store = resolve_store(
            (overrides.store, overrides.data_dir),
            (self.store, self.data_dir),
            &self.postgres,
        )?;
        let metrics = self.metrics.resolve(&api_keys)?;
        Ok(Settings {
            metrics,
            listen,
            store,
            retention: match self.retention_days {
                Some(0) => return Err(setting("retention_days", "must be at least 1 day")),
                Some(days) => Some(Duration::from_secs(days.saturating_mul(86_400))),
                None => None,
            },
            media_root,
            scratch_dir: self.scratch_dir,
            api_keys,
            asset_scopes,
            allow_memory_urls,
            dev_key,
            products,
            concurrency: self.runner.concurrency.unwrap_or(16),
            lease: Duration::from_secs(self.runner.lease_secs.unwrap_or(15)),
            shutdown_grace: Duration::from_secs(self.runner.shutdown_grace_secs.unwrap_or(10)),
            http: self.http,
            s3: self.s3,
            webhooks: self.webhooks,
            console: self.console,
        })
    }
}

/// The store from the flags (`--store`, `--data-dir`), else from the file (`store`,
/// `data_dir`), else sled in `./data`. Naming both spellings at one level is refused.
fn resolve_store(
    flags: (Option<String>, Option<PathBuf>),
    file: (Option<String>, Option<PathBuf>),
    postgres: &PostgresEntry,
) -> Result<StoreSetting, TaskdError> {
    match (flags, file) {
        ((Some(store), Some(dir)), _) => Err(setting(
            "store",
            format!(
                "--store/TASKD_STORE ({store:?}) and --data-dir/TASKD_DATA_DIR ({}) both given: keep one",
                dir.display()
            ),
        )),
        ((Some(store), None), _) => StoreSetting::parse(&store, "--store/TASKD_STORE", postgres),
        ((None, Some(dir)), _) => Ok(StoreSetting::Sled { dir }),
        (_, (Some(store), Some(dir))) => Err(setting(
            "store",
            format!(
                "store ({store:?}) and data_dir ({}) both set in the file: keep one (data_dir is the older spelling of a sled store)",
                dir.display()
            ),
        )),
        (_, (Some(store), None)) => StoreSetting::parse(&store, "store", postgres),
        (_, (None, Some(dir))) => Ok(StoreSetting::Sled { dir }),
        (_, (None, None)) => Ok(StoreSetting::Sled {
            dir: PathBuf::from("./data"),
        }),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
