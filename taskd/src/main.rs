//! `taskd`: the media task engine daemon and its client.
//!
//! `taskd serve` runs the Task API (task-http) and the runner (task-runner) together, with the
//! media steps (task-media), over the embedded sled store or a PostgreSQL database (`--store`).
//! On PostgreSQL a deployment may split them: `taskd serve --no-runner` nodes serve the API and
//! `taskd worker` nodes run the tasks (answering only `/healthz` and `/readyz`), all on one
//! database with one TOML file. The other subcommands are a client of a running service:
//! `ingest`, `submit`, `status`, `watch`, `cancel`, `results`.
//!
//! Configuration: a TOML file (`--config`), overridden by environment variables, overridden by
//! flags. With nothing at all: listen on 127.0.0.1:8080, sled under `./data`, `file://` assets
//! under `./media`, product `adbreaks`, and the development key `dev-key` (loopback only).
#![deny(missing_docs)]

mod commands;
mod config;
mod console;
mod error;
mod exporter;
mod health;
mod http_server;
mod presenter;
mod products;
mod scopes;
mod serve;
mod store;
mod submit;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{FileConfig, Overrides};
use crate::error::TaskdError;
use crate::serve::Role;
use task_client::Client;

/// The media task engine daemon and its client.
#[derive(Debug, Parser)]
#[command(name = "taskd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the client subcommands find the service.
#[derive(Debug, clap::Args)]
struct Remote {
    /// The service's base URL.
    #[arg(
        long,
        env = "TASKD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// The API key.
    #[arg(long, env = "TASKD_API_KEY", default_value = config::DEV_KEY, hide_env_values = true, global = true)]
    key: String,
}

/// The settings of a node (`serve`, `worker`).
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// A TOML configuration file.
    #[arg(long, env = "TASKD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (host:port; port 0 picks a free one).
    #[arg(long, env = "TASKD_LISTEN")]
    listen: Option<String>,
    /// The store: a sled directory, or a postgres:// URL shared by every node.
    #[arg(long, env = "TASKD_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Directory of the sled store (the older spelling of --store DIR).
    #[arg(long, env = "TASKD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Root directory of file:// asset URLs.
    #[arg(long, env = "TASKD_MEDIA_ROOT")]
    media_root: Option<PathBuf>,
    /// An API key and its tenant as KEY=TENANT (repeatable; replaces the file's keys).
    #[arg(
        long = "api-key",
        env = "TASKD_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// An enabled product (repeatable; replaces the file's list).
    #[arg(long = "product", env = "TASKD_PRODUCTS", value_delimiter = ',')]
    products: Vec<String>,
}

impl NodeArgs {
    /// The file's settings under these flags; a node without the API needs no API key.
    fn settings(self, without_api: bool) -> Result<config::Settings, TaskdError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        file.resolve(Overrides {
            listen: self.listen,
            store: self.store,
            data_dir: self.data_dir,
            media_root: self.media_root,
            api_keys: self.api_keys,
            products: self.products,
            without_api,
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the service and the runner until SIGTERM or SIGINT.
    Serve {
        #[command(flatten)]
        node: NodeArgs,
        /// Serve the API only; `taskd worker` nodes on the same PostgreSQL store run the tasks.
        #[arg(long)]
        no_runner: bool,
    },
    /// Runs tasks from a shared (PostgreSQL) store until SIGTERM or SIGINT, then releases its
    /// leases; its listen address answers only /healthz and /readyz.
    Worker {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Copies the live data of a stopped service's store into a new directory (sled never
    /// gives back memory for deleted tasks; swap the directories, then start the service).
    Compact {
        /// Directory of the sled store (the service must be stopped).
        #[arg(long, env = "TASKD_DATA_DIR")]
        data_dir: PathBuf,
        /// The new directory to write (must not exist).
        #[arg(long)]
        into: PathBuf,
    },
    /// Adds or replaces a catalog item.
    Ingest {
        #[command(flatten)]
        remote: Remote,
        /// The inventory id.
        id: String,
        /// Where the video is (s3://bucket/key, file:///path under the media root, memory:///key).
        asset_url: String,
        /// standalone, series, season or episode.
        #[arg(long = "type", default_value = "standalone")]
        item_type: String,
        /// Title (default: the id).
        #[arg(long)]
        title: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The parent item's inventory id: an episode's season, a season's series.
        #[arg(long)]
        parent: Option<String>,
    },
    /// Creates one task, or every task of a CSV/JSONL file (--file) with a progress bar.
    Submit {
        #[command(flatten)]
        remote: Remote,
        /// The inventory id (one task).
        #[arg(required_unless_present = "file")]
        inventory_id: Option<String>,
        /// The product (one task).
        #[arg(required_unless_present = "file")]
        product: Option<String>,
        /// The product version (one task).
        #[arg(required_unless_present = "file")]
        version: Option<String>,
        /// high, medium or low (one task).
        #[arg(long)]
        priority: Option<String>,
        /// A .csv (header: `inventory_id,product,version[,priority]`) or JSONL file.
        #[arg(long, conflicts_with_all = ["inventory_id", "product", "version", "priority"])]
        file: Option<PathBuf>,
        /// Entries per request.
        #[arg(long, default_value_t = 500)]
        chunk: usize,
        /// Print the id of each task, one per line.
        #[arg(long)]
        ids: bool,
    },
    /// Shows a task; with --wait, answers once its status changes (long-poll).
    Status {
        #[command(flatten)]
        remote: Remote,
        /// The task id.
        task_id: String,
        /// Seconds to wait for a status change.
        #[arg(long)]
        wait: Option<f64>,
    },
    /// Follows tasks live until they end; exits 0 if all ended done.
    Watch {
        #[command(flatten)]
        remote: Remote,
        /// Task ids.
        #[arg(required = true)]
        task_ids: Vec<String>,
    },
    /// Cancels a task.
    Cancel {
        #[command(flatten)]
        remote: Remote,
        /// The task id.
        task_id: String,
    },
    /// Shows the result of a product for an item.
    Results {
        #[command(flatten)]
        remote: Remote,
        /// The product.
        product: String,
        /// The inventory id.
        inventory_id: String,
        /// The product version (default: the latest result).
        #[arg(long)]
        version: Option<String>,
        /// adbreaks: minimum minutes between breaks.
        #[arg(long)]
        minimum_separation: Option<f64>,
        /// adbreaks: maximum minutes between breaks.
        #[arg(long)]
        maximum_separation: Option<f64>,
        /// adbreaks: minutes skipped at the start.
        #[arg(long)]
        skip_first: Option<f64>,
        /// adbreaks: minutes skipped at the end.
        #[arg(long)]
        skip_last: Option<f64>,
    },
}

async fn run(command: Command) -> Result<bool, TaskdError> {
    match command {
        Command::Serve { node, no_runner } => {
            let role = if no_runner { Role::Api } else { Role::Full };
            serve::serve(node.settings(false)?, role).await?;
        }
        Command::Worker { node } => {
            serve::serve(node.settings(true)?, Role::Worker).await?;
        }
        Command::Compact { data_dir, into } => {
            let report = tokio::task::spawn_blocking(move || {
                task_store_sled::SledStore::compact_into(
                    &data_dir,
                    &into,
                    task_store_sled::SledOptions::default(),
                )
            })
            .await
            .map_err(|e| TaskdError::Setting {
                field: "compact".into(),
                reason: e.to_string(),
            })??;
            println!(
                "copied {} keys; {} bytes on disk before, {} after",
                report.keys, report.bytes_before, report.bytes_after
            );
        }
        Command::Ingest {
            remote,
            id,
            asset_url,
            item_type,
            title,
            tags,
            parent,
        } => {
            let client = Client::new(&remote.url, &remote.key)?;
            let item = commands::Ingest {
                id: &id,
                asset_url: &asset_url,
                item_type: &item_type,
                title: title.as_deref(),
                tags: &tags,
                parent: parent.as_deref(),
            };
            commands::ingest(&client, &item).await?;
        }
        Command::Submit {
            remote,
            inventory_id,
            product,
            version,
            priority,
            file,
            chunk,
            ids,
        } => {
            let client = Client::new(&remote.url, &remote.key)?;
            match (file, inventory_id, product, version) {
                (Some(path), ..) => {
                    let totals = submit::file(&client, &path, chunk, ids).await?;
                    return Ok(totals.refused == 0);
                }
                (None, Some(i), Some(p), Some(v)) => {
                    submit::one(&client, &i, &p, &v, priority.as_deref()).await?
                }
                _ => {
                    return Err(TaskdError::Setting {
                        field: "submit".into(),
                        reason: "give INVENTORY_ID PRODUCT VERSION or --file".into(),
                    });
                }
            }
        }
        Command::Status {
            remote,
            task_id,
            wait,
        } => {
            commands::status(&Client::new(&remote.url, &remote.key)?, &task_id, wait).await?;
        }
        Command::Watch { remote, task_ids } => {
            return commands::watch(&Client::new(&remote.url, &remote.key)?, &task_ids).await;
        }
        Command::Cancel { remote, task_id } => {
            commands::cancel(&Client::new(&remote.url, &remote.key)?, &task_id).await?;
        }
        Command::Results {
            remote,
            product,
            inventory_id,
            version,
            minimum_separation,
            maximum_separation,
            skip_first,
            skip_last,
        } => {
            let mut query = Vec::new();
            if let Some(v) = version {
                query.push(("version".to_owned(), v));
            }
            for (name, value) in [
                ("minimum_separation", minimum_separation),
                ("maximum_separation", maximum_separation),
                ("skip_first", skip_first),
                ("skip_last", skip_last),
            ] {
                if let Some(value) = value {
                    query.push((name.to_owned(), value.to_string()));
                }
            }
            commands::results(
                &Client::new(&remote.url, &remote.key)?,
                &product,
                &inventory_id,
                &query,
            )
            .await?;
        }
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("taskd: {e}");
            ExitCode::from(2)
        }
    }
}
