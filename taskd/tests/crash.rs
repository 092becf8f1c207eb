//! The daemon under SIGKILL: real media tasks (ffmpeg-made fixtures, the real steps), killed at
//! random moments and restarted on the same data directory, `CRASH_ROUNDS` times (default 20;
//! the documented long run is 1,000). Afterwards every acknowledged create exists, every task
//! ends, and no task's history shows a step that succeeded twice or `done` twice.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use support::{Daemon, encode};

const KEY: &str = "crash-test-key-0123";

fn config() -> String {
    format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\
         [products.adbreaks]\nmax_attempts = 100\nversions = [\"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\"]\n\
         [runner]\nconcurrency = 4\nlease_secs = 2\nshutdown_grace_secs = 1\n"
    )
}

async fn call(
    http: &reqwest::Client,
    daemon: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = http
        .request(method, daemon.url(path))
        .header("X-API-Key", KEY)
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

fn kill(daemon: &mut Daemon) {
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_repeats_nothing() {
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    for (name, seconds) in [("a.mp4", 12), ("b.mp4", 20), ("c.mp4", 6)] {
        encode(&media.join(name), seconds);
    }
    let http = reqwest::Client::new();
    let mut rng = rand::rng();
    let mut acknowledged: BTreeMap<String, Value> = BTreeMap::new();
    let mut next = 0usize;
    let start = |dir: &Path| Daemon::start_in(&config(), dir);
    let mut daemon = start(dir.path());
    for name in ["a", "b", "c"] {
        let url = format!(
            "file://{}/{name}.mp4",
            media.canonicalize().unwrap().display()
        );
        let item = json!({"id": name, "type": "standalone", "title": name, "asset_url": url});
        let (status, body) = call(
            &http,
            &daemon,
            reqwest::Method::PUT,
            "/catalog/v1/item",
            Some(item),
        )
        .await
        .unwrap();
        assert!(status < 300, "{body}");
    }
    for round in 0..rounds {
        // Creates go on while the runner works, until the kill at a random moment.
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(100..1_500));
        while Instant::now() < deadline {
            let item = ["a", "b", "c"][next % 3];
            let version = (next / 3) % 8 + 1;
            let priority = ["low", "medium", "high"][rng.random_range(0..3)];
            let body = json!({"inventory_id": item, "product": "adbreaks",
                "version": version.to_string(), "priority": priority});
            if let Some((status, task)) =
                call(&http, &daemon, reqwest::Method::POST, "/task", Some(body)).await
                && status == 201
            {
                acknowledged.insert(task["task_id"].as_str().unwrap().to_owned(), task);
            }
            next += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(10..80))).await;
        }
        kill(&mut daemon);
        daemon = start(dir.path());
        if round % 50 == 49 {
            eprintln!(
                "round {}: {} acknowledged creates",
                round + 1,
                acknowledged.len()
            );
        }
    }
    // Let everything finish, then check each acknowledged task.
    let ended =
        |v: &Value| ["done", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or(""));
    let give_up = Instant::now() + Duration::from_secs(300);
    let mut finals: BTreeMap<String, Value> = BTreeMap::new();
    while finals.len() < acknowledged.len() {
        assert!(
            Instant::now() < give_up,
            "{} of {} tasks ended",
            finals.len(),
            acknowledged.len()
        );
        for id in acknowledged.keys() {
            if finals.contains_key(id) {
                continue;
            }
            let (status, task) = call(
                &http,
                &daemon,
                reqwest::Method::GET,
                &format!("/task/{id}"),
                None,
            )
            .await
            .unwrap();
            assert_eq!(status, 200, "acknowledged task {id} is lost: {task}");
            if ended(&task) {
                finals.insert(id.clone(), task);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut done = 0;
    for (id, task) in &finals {
        assert_eq!(task["status"], "done", "{id} did not end done: {task}");
        done += 1;
        let (_, history) = call(
            &http,
            &daemon,
            reqwest::Method::GET,
            &format!("/task/{id}/history"),
            None,
        )
        .await
        .unwrap();
        let entries = history["history"]
            .as_array()
            .or(history.as_array())
            .cloned()
            .unwrap_or_default();
        let mut succeeded = HashSet::new();
        let mut dones = 0;
        for entry in &entries {
            match entry["event"].as_str() {
                Some("step_succeeded") => {
                    let step = entry["step"].as_str().unwrap_or_default().to_owned();
                    assert!(
                        succeeded.insert(step.clone()),
                        "{id}: {step} succeeded twice: {history}"
                    );
                }
                Some("done") => dones += 1,
                _ => {}
            }
        }
        assert_eq!(dones, 1, "{id}: done {dones} times: {history}");
        assert_eq!(succeeded.len(), 4, "{id}: {history}");
    }
    eprintln!(
        "{rounds} SIGKILL rounds: {} acknowledged creates, {done} done, 0 lost",
        acknowledged.len()
    );
    drop(daemon);
}
