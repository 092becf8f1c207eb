//! `taskd` on a disk that fills up (a small tmpfs): writes answer 503 with `Retry-After` and a
//! path-free reason, `/readyz` says not ready and why, reads go on, the daemon takes writes
//! again by itself once space returns (no restart), SIGTERM with the disk full exits cleanly,
//! and every acknowledged write is there after a restart.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN), as the test command runs on CI.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Daemon;

const KEY: &str = "disk-full-key";

/// A tmpfs of `size` on a fresh directory, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "this test mounts a {size} tmpfs to fill it: it needs root or CAP_SYS_ADMIN ({status})"
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn fill(root: &Path) -> PathBuf {
    let path = root.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    while file.write_all(&[7u8; 64 << 10]).is_ok() {}
    while file.write_all(&[7u8; 512]).is_ok() {}
    path
}

fn config() -> String {
    format!("[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n[products.adbreaks]\n")
}

async fn put_item(
    http: &reqwest::Client,
    daemon: &Daemon,
    root: &Path,
    id: &str,
) -> reqwest::Response {
    let item = json!({"id": id, "type": "standalone", "title": "x".repeat(2000),
        "asset_url": format!("file://{}/media/{id}.mp4", root.display())});
    http.put(daemon.url("/catalog/v1/item"))
        .header("X-API-Key", KEY)
        .json(&item)
        .send()
        .await
        .unwrap()
}

async fn get(http: &reqwest::Client, daemon: &Daemon, path: &str) -> (u16, Value) {
    let response = http
        .get(daemon.url(path))
        .header("X-API-Key", KEY)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Upserts the next item, which must be stored.
async fn put_stored(
    http: &reqwest::Client,
    daemon: &Daemon,
    root: &Path,
    stored: &mut Vec<String>,
) {
    let id = format!("item-{}", stored.len());
    let status = put_item(http, daemon, root, &id).await.status();
    assert_eq!(status.as_u16(), 201, "{id}");
    stored.push(id);
}

/// Upserts items until one is refused; the refusal.
async fn put_until_refused(
    http: &reqwest::Client,
    daemon: &Daemon,
    root: &Path,
    stored: &mut Vec<String>,
) -> reqwest::Response {
    loop {
        let id = format!("item-{}", stored.len());
        let response = put_item(http, daemon, root, &id).await;
        if response.status().as_u16() != 201 {
            return response;
        }
        stored.push(id);
        assert!(stored.len() < 50_000, "the full disk never refused a write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_then_recovers_and_sigterm_exits_cleanly() {
    let disk = Tmpfs::mount("64m");
    let root = disk.0.path().to_path_buf();
    let mut daemon = Daemon::start_in(&config(), &root);
    let http = reqwest::Client::new();
    let mut stored = Vec::new();
    for _ in 0..20 {
        put_stored(&http, &daemon, &root, &mut stored).await;
    }

    let ballast = fill(&root);
    let refused = put_until_refused(&http, &daemon, &root, &mut stored).await;
    assert_eq!(refused.status().as_u16(), 503, "a full disk is 503");
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("the disk is full"), "{detail}");
    assert!(
        !detail.contains(&root.display().to_string()),
        "no path: {detail}"
    );

    let (status, ready) = get(&http, &daemon, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable");
    assert!(
        ready["reason"].as_str().unwrap().contains("disk is full"),
        "{ready}"
    );
    let (status, item) = get(&http, &daemon, "/catalog/v1/item/standalone/item-0").await;
    assert_eq!(status, 200, "reads go on: {item}");

    std::fs::remove_file(&ballast).unwrap();
    let began = Instant::now();
    loop {
        let (status, ready) = get(&http, &daemon, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "not ready 60 s after space returned: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ready again {:?} after space returned", began.elapsed());
    put_stored(&http, &daemon, &root, &mut stored).await;

    // SIGTERM with the disk full: a clean exit.
    let ballast = fill(&root);
    let refused = put_until_refused(&http, &daemon, &root, &mut stored).await;
    assert_eq!(refused.status().as_u16(), 503);
    daemon.sigterm();
    let status = daemon.child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM with a full disk exits cleanly: {status}"
    );

    std::fs::remove_file(&ballast).unwrap();
    let daemon = Daemon::start_in(&config(), &root);
    for id in &stored {
        let (status, item) =
            get(&http, &daemon, &format!("/catalog/v1/item/standalone/{id}")).await;
        assert_eq!(
            status, 200,
            "acknowledged {id} is there after the restart: {item}"
        );
    }
}
