//! The real `taskd` binary: serve on a free port with real media (ffmpeg-made fixtures), drive
//! it with its own client subcommands and with reqwest, stop it with SIGTERM, restart it on the
//! same store and find every task, history and result again. Run once on sled (then also
//! compacted) and once on PostgreSQL.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::encode;
use support::pg::Backend;

const KEY: &str = "daemon-test-key";
const BIN: &str = env!("CARGO_BIN_EXE_taskd");

/// `taskd serve` on the test's directory, with its base URL and the client subcommands.
struct Daemon {
    node: support::Daemon,
    url: String,
}

impl Daemon {
    fn start(dir: &Path, backend: &Backend) -> Self {
        let mut args: Vec<OsString> = ["serve", "--listen", "127.0.0.1:0", "--config"]
            .map(OsString::from)
            .to_vec();
        args.push(dir.join("taskd.toml").into());
        args.extend(backend.args(dir));
        args.extend(["--media-root".into(), dir.join("media").into()]);
        let node = support::Daemon::launch(args);
        let url = format!("http://{}", node.addr);
        Self { node, url }
    }

    /// SIGTERM, then whether it exited cleanly and the rest of stdout.
    fn terminate(self) -> (bool, String) {
        self.node.sigterm();
        let (status, stdout) = self.node.wait();
        (status.success(), stdout)
    }

    fn cli(&self, args: &[&str]) -> (i32, String) {
        let (code, stdout, _) = self.cli_output(args);
        (code, stdout)
    }

    /// The exit code, stdout and stderr of a client subcommand.
    fn cli_output(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(BIN)
            .args(args)
            .args(["--url", &self.url, "--key", KEY])
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = http.get(url).header("X-API-Key", KEY).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Every task of `ids` and its history read back as `before` holds them.
async fn same_tasks(
    http: &reqwest::Client,
    daemon: &Daemon,
    ids: &[String],
    before: &[(Value, Value)],
) {
    for (id, (task, history)) in ids.iter().zip(before) {
        let (_, again) = get(http, &format!("{}/task/{id}", daemon.url)).await;
        assert_eq!(&again, task);
        let (_, again) = get(http, &format!("{}/task/{id}/history", daemon.url)).await;
        assert_eq!(&again, history);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_drive_terminate_restart_keeps_everything_on_sled() {
    serve_drive_terminate_restart_keeps_everything(Backend::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_drive_terminate_restart_keeps_everything_on_postgres() {
    serve_drive_terminate_restart_keeps_everything(Backend::postgres()).await;
}

async fn serve_drive_terminate_restart_keeps_everything(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    encode(&media.join("good.mp4"), 40);
    encode(&media.join("short.mp4"), 8);
    std::fs::write(media.join("garbage.mp4"), vec![7u8; 50_000]).unwrap();
    std::fs::write(
        dir.path().join("taskd.toml"),
        format!(
            "scratch_dir = \"{}\"\n\n[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\n[products.adbreaks]\nmin_duration_secs = 20\n{}",
            dir.path().join("scratch").display(),
            backend.toml()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(dir.path(), &backend);
    assert!(
        dir.path().join("scratch").is_dir(),
        "the configured scratch directory is made at start"
    );
    let m = media.canonicalize().unwrap();
    for (id, file) in [
        ("good", "good.mp4"),
        ("short", "short.mp4"),
        ("garbage", "garbage.mp4"),
        ("missing", "missing.mp4"),
    ] {
        let url = format!("file://{}", m.join(file).display());
        let (code, out) = daemon.cli(&["ingest", id, &url]);
        assert_eq!(code, 0, "{out}");
    }
    let batch = dir.path().join("tasks.jsonl");
    let lines: Vec<String> = ["good", "short", "garbage", "missing"]
        .iter()
        .map(|id| {
            format!(
                "{{\"inventory_id\": \"{id}\", \"product\": \"adbreaks\", \"version\": \"1.0\"}}"
            )
        })
        .collect();
    std::fs::write(&batch, lines.join("\n")).unwrap();
    let (code, out) = daemon.cli(&["submit", "--file", batch.to_str().unwrap(), "--ids"]);
    assert_eq!(code, 0, "{out}");
    let ids: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 4, "{out}");

    // watch follows all four to their end over SSE; not all end done, so it exits 1.
    let mut args = vec!["watch"];
    args.extend(ids.iter().map(String::as_str));
    let (code, out) = daemon.cli(&args);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Asset shorter than the minimum required length."),
        "{out}"
    );
    assert!(
        out.contains("error_code=probe_failed error=\"Probe failed with error = "),
        "{out}"
    );

    let http = reqwest::Client::new();
    let mut before = Vec::new();
    let expected = [
        ("done", None),
        ("failed", Some("asset_too_short")),
        ("failed", Some("probe_failed")),
        ("failed", Some("asset_not_found")),
    ];
    for (id, (status, code)) in ids.iter().zip(expected) {
        let (_, task) = get(&http, &format!("{}/task/{id}", daemon.url)).await;
        assert_eq!(task["status"], status, "{task}");
        assert_eq!(task["error_code"].as_str(), code, "{task}");
        let (_, history) = get(&http, &format!("{}/task/{id}/history", daemon.url)).await;
        before.push((task, history));
    }
    assert_eq!(
        before[3].0["error"],
        "Asset not found in the provided S3 location."
    );
    let (status, result) = get(
        &http,
        &format!("{}/results/adbreaks/good?version=1.0", daemon.url),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["status"], "success");
    assert!(result["data"]["adbreak"].is_array(), "{result}");
    let (code, out) = daemon.cli(&[
        "results",
        "adbreaks",
        "good",
        "--version",
        "1.0",
        "--minimum-separation",
        "0.5",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"status\": \"success\""), "{out}");
    let (code, _) = daemon.cli(&["cancel", &ids[0]]);
    assert_eq!(code, 2, "cancelling a done task is a 409");
    if let Some(schema) = backend.schema() {
        let mut conn = schema.connect().await;
        let counts = schema.status_counts(&mut conn).await;
        assert_eq!(
            counts,
            [("done".to_owned(), 1), ("failed".to_owned(), 3)],
            "the tasks are in the test's PostgreSQL schema"
        );
        assert!(
            !dir.path().join("data").exists(),
            "and nothing went to sled"
        );
    }

    client_covers_the_contract(&daemon.url, &ids, &before).await;

    let (clean, out) = daemon.terminate();
    assert!(clean, "{out}");
    assert!(out.contains("taskd stopped cleanly"), "{out}");

    let daemon = Daemon::start(dir.path(), &backend);
    same_tasks(&http, &daemon, &ids, &before).await;
    let (status, again) = get(
        &http,
        &format!("{}/results/adbreaks/good?version=1.0", daemon.url),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again, result);
    let (code, out) = daemon.cli(&["status", &ids[1]]);
    assert_eq!(code, 0);
    assert!(out.contains("asset_too_short"), "{out}");
    // A season and its episode from the command line; an unknown parent is refused by name.
    let good = format!("file://{}", m.join("good.mp4").display());
    let (code, out) = daemon.cli(&["ingest", "season-1", &good, "--type", "season"]);
    assert_eq!(code, 0, "{out}");
    let episode = [
        "ingest", "ep-1", &good, "--type", "episode", "--parent", "season-1",
    ];
    let (code, out) = daemon.cli(&episode);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"parent_id\": \"season-1\""), "{out}");
    let orphan = [
        "ingest", "ep-2", &good, "--type", "episode", "--parent", "season-9",
    ];
    let (code, _, err) = daemon.cli_output(&orphan);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("season-9"), "{err}");
    let (clean, _) = daemon.terminate();
    assert!(clean);
    if !matches!(backend, Backend::Sled) {
        return;
    }

    // Compacted into a new directory, swapped in: the service starts on it with everything.
    let output = Command::new(BIN)
        .args(["compact", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--into")
        .arg(dir.path().join("compacted"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("copied"), "{printed}");
    std::fs::rename(
        dir.path().join("data"),
        dir.path().join("before-compaction"),
    )
    .unwrap();
    std::fs::rename(dir.path().join("compacted"), dir.path().join("data")).unwrap();
    let daemon = Daemon::start(dir.path(), &backend);
    same_tasks(&http, &daemon, &ids, &before).await;
    let (clean, _) = daemon.terminate();
    assert!(clean);
}

/// The typed client of `task-client` against the same daemon: every route, the same bodies as
/// the raw JSON, and the contract's errors.
async fn client_covers_the_contract(url: &str, ids: &[String], raw: &[(Value, Value)]) {
    use futures::StreamExt;
    use task_client::api::bodies::{ItemBody, NewTaskBody};
    use task_client::{Client, ClientError, Detail, ItemQuery, ResultQuery};

    let client = Client::new(url, KEY).unwrap();
    assert_eq!(client.health().await.unwrap().status, "ok");
    assert_eq!(client.ready().await.unwrap().status, "ready");
    for (id, (task, history)) in ids.iter().zip(raw) {
        let typed = client.get_task(id).await.unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), *task, "same body");
        let typed = client.history(id).await.unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), *history);
    }
    let page = client
        .list_items(&ItemQuery {
            page_size: Some(2),
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.has_next), (2, true));
    let good = client.get_item("standalone", "good").await.unwrap();
    assert!(good.asset_url.ends_with("good.mp4"));
    let latest = client.task_by_key("good", "adbreaks", "1.0").await.unwrap();
    assert_eq!(latest.task_id, ids[0]);
    assert_eq!(client.item_tasks("good").await.unwrap().tasks.len(), 1);

    // A new version: created once, then found; followed over SSE to its end; its result read.
    let (task, created) = client
        .create_by_key("good", "adbreaks", "2.0", Some("high"))
        .await
        .unwrap();
    assert!(created);
    let (same, created) = client
        .create_task(&NewTaskBody::new("good", "adbreaks", "2.0"))
        .await
        .unwrap();
    assert_eq!(
        (same.task_id.as_str(), created),
        (task.task_id.as_str(), false)
    );
    let seen: Vec<_> = client
        .events(&task.task_id)
        .await
        .unwrap()
        .into_stream()
        .collect()
        .await;
    let last = seen.last().expect("events").as_ref().unwrap();
    assert_eq!(last.status, "done", "{seen:?}");
    let done = client
        .wait_until_finished(&task.task_id, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(done.status, "done");
    let result = client
        .results(
            "adbreaks",
            "good",
            &ResultQuery {
                version: Some("2.0".into()),
                filters: vec![("minimum_separation".into(), "0.5".into())],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (result.status.as_str(), result.version_id.as_str()),
        ("success", "2.0")
    );

    // A batch with one invalid entry: refused alone, naming the field.
    let batch = client
        .create_tasks(&[
            serde_json::json!({"inventory_id": "short", "product": "adbreaks", "version": "3.0"}),
            serde_json::json!({"inventory_id": "short", "product": "adbreaks"}),
        ])
        .await
        .unwrap();
    assert_eq!((batch.created, batch.refused), (1, 1));
    let cancelled = client.cancel_by_key("short", "adbreaks", "3.0").await;
    assert!(
        cancelled.is_ok() || cancelled.as_ref().is_err_and(|e| e.status() == Some(409)),
        "{cancelled:?}"
    );

    // The contract's errors, typed.
    let missing = client
        .get_task("0190b5d2-7c3e-7000-8000-000000000001")
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let conflict = client.cancel_task(&ids[0]).await.unwrap_err();
    assert_eq!(conflict.status(), Some(409), "{conflict}");
    let invalid = client
        .create_task(&NewTaskBody::new("good", "no-such-product", "1.0"))
        .await
        .unwrap_err();
    match &invalid {
        ClientError::Api {
            status: 422,
            detail: Detail::Invalid(errors),
            ..
        } => assert!(
            errors.iter().any(|e| e.msg.contains("product")),
            "{invalid}"
        ),
        other => panic!("expected a 422 with field errors: {other}"),
    }
    let (item, created) = client
        .put_item(&ItemBody::new(
            "extra",
            "standalone",
            "Extra",
            &good.asset_url,
        ))
        .await
        .unwrap();
    assert!(created && item.id == "extra");
    let deleted = client.delete_item("standalone", "extra").await.unwrap();
    assert!(deleted.item.deleted_at.is_some());
    // A season and its episode: the parent is shown, the children listed by parent.
    let season = ItemBody::new("season-1", "season", "Season 1", &good.asset_url);
    client.put_item(&season).await.unwrap();
    let episode =
        ItemBody::new("s1-e1", "episode", "Pilot", &good.asset_url).with_parent("season-1");
    let (episode, _) = client.put_item(&episode).await.unwrap();
    assert_eq!(episode.parent_id.as_deref(), Some("season-1"));
    let children = client
        .list_items(&ItemQuery::children_of("season-1"))
        .await
        .unwrap();
    let child_ids: Vec<&str> = children.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(child_ids, ["s1-e1"]);
    let orphan = ItemBody::new("s1-e2", "episode", "Lost", &good.asset_url).with_parent("nowhere");
    match client.put_item(&orphan).await.unwrap_err() {
        ClientError::Api {
            detail: Detail::Invalid(errors),
            ..
        } => assert!(
            errors.iter().any(|e| e.msg.contains("parent_id")),
            "{errors:?}"
        ),
        other => panic!("expected a 422 naming parent_id: {other}"),
    }
    let refused = Client::new(url, "wrong-key")
        .unwrap()
        .get_task(&ids[0])
        .await;
    assert_eq!(refused.unwrap_err().status(), Some(401));
}
