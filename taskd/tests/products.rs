//! Every built-in product through the real `taskd`: its own length gate, its task run to done on
//! real media, its result read back through `GET /results/{product}/{inventory_id}`.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Daemon;
use support::pg::Backend;

#[allow(dead_code)]
#[path = "../../task-media/tests/support/sound.rs"]
mod sound;

const KEY: &str = "products-test-key";

/// 6 s, 25 fps, with a tone: red 0-2 s, blue 2-4 s, a test pattern 4-6 s.
fn three_shots(out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "color=c=red:s=160x90:r=25:d=2"])
        .args(["-f", "lavfi", "-i", "color=c=blue:s=160x90:r=25:d=2"])
        .args(["-f", "lavfi", "-i", "testsrc=s=160x90:r=25:d=2"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=8000:duration=6",
        ])
        .args([
            "-filter_complex",
            "[0][1][2]concat=n=3:v=1:a=0,format=yuv420p[v]",
        ])
        .args([
            "-map",
            "[v]",
            "-map",
            "3:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-c:a", "aac", "-movflags", "+faststart"])
        .arg(out)
        .status()
        .expect("ffmpeg is needed (scripts/install-test-deps.sh installs it)");
    assert!(status.success(), "ffmpeg could not make {}", out.display());
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url).header("X-API-Key", KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits for task `id` to end and returns it.
async fn finished(http: &reqwest::Client, daemon: &Daemon, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = daemon.url(&format!("/task/{id}?wait=5&status=processing"));
        let (_, task) = call(http, reqwest::Method::GET, url, None).await;
        if ["done", "failed", "cancelled"].contains(&task["status"].as_str().unwrap_or("")) {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} did not end: {task}");
    }
}

/// GET `path` on the daemon: the status and the body.
async fn get(http: &reqwest::Client, daemon: &Daemon, path: &str) -> (u16, Value) {
    call(http, reqwest::Method::GET, daemon.url(path), None).await
}

/// Puts catalog item `id` on the file `media/{file}`.
async fn ingest(http: &reqwest::Client, daemon: &Daemon, id: &str, file: &Path) {
    let item = json!({"id": id, "type": "standalone", "title": id,
        "asset_url": format!("file://{}", file.display())});
    let url = daemon.url("/catalog/v1/item");
    let (status, body) = call(http, reqwest::Method::PUT, url, Some(item)).await;
    assert!(status == 201 || status == 200, "{status} {body}");
}

/// Creates a task of `product` version 1.0.0 on `item`; its id.
async fn submit(http: &reqwest::Client, daemon: &Daemon, item: &str, product: &str) -> String {
    let body = json!({"inventory_id": item, "product": product, "version": "1.0.0"});
    let (status, task) = call(http, reqwest::Method::POST, daemon.url("/task"), Some(body)).await;
    assert_eq!(status, 201, "{task}");
    task["task_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenes_and_fingerprint_run_to_done_with_their_own_length_gates_and_results() {
    let config = format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\
         [products.scenes]\nmin_duration_secs = 5\n[products.fingerprint]\n\
         [products.adbreaks]\nmin_duration_secs = 600\n"
    );
    let daemon = Daemon::start(&config);
    let media = daemon.dir.as_ref().unwrap().path().join("media");
    three_shots(&media.join("shots.mp4"));
    support::encode(&media.join("short.mp4"), 3);
    let http = reqwest::Client::new();
    for (id, file) in [("shots", "shots.mp4"), ("short", "short.mp4")] {
        ingest(&http, &daemon, id, &media.join(file)).await;
    }
    let mut ids = Vec::new();
    for (item, product) in [
        ("shots", "scenes"),
        ("shots", "adbreaks"),
        ("short", "scenes"),
    ] {
        ids.push(submit(&http, &daemon, item, product).await);
    }
    let scenes = finished(&http, &daemon, &ids[0]).await;
    assert_eq!(scenes["status"], "done", "{scenes}");
    let adbreaks = finished(&http, &daemon, &ids[1]).await;
    assert_eq!(
        adbreaks["error_code"], "asset_too_short",
        "adbreaks has its own gate: {adbreaks}"
    );
    let short = finished(&http, &daemon, &ids[2]).await;
    assert_eq!(short["error_code"], "asset_too_short", "{short}");

    let (status, result) = get(&http, &daemon, "/results/scenes/shots?version=1.0.0").await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["type"], "scenes");
    let shots: Vec<[f64; 2]> = serde_json::from_value(result["data"]["shots"].clone()).unwrap();
    assert_eq!(shots.len(), 3, "{result}");
    for (shot, (start, end)) in shots.iter().zip([(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]) {
        assert!(
            (shot[0] - start).abs() <= 0.04 && (shot[1] - end).abs() <= 0.04,
            "{shots:?}"
        );
    }
    let (status, _) = get(&http, &daemon, "/results/adbreaks/shots").await;
    assert_eq!(
        status, 404,
        "no adbreaks result for a task that failed its gate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_run_to_done_and_their_stills_are_files_under_the_output() {
    let out = tempfile::tempdir().unwrap();
    let config = format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\
         [products.thumbnails]\noutput = \"file://{}\"\nmax_stills = 5\n",
        out.path().display()
    );
    let daemon = Daemon::start(&config);
    let media = daemon.dir.as_ref().unwrap().path().join("media");
    three_shots(&media.join("shots.mp4"));
    let http = reqwest::Client::new();
    ingest(&http, &daemon, "shots", &media.join("shots.mp4")).await;
    let id = submit(&http, &daemon, "shots", "thumbnails").await;
    let task = finished(&http, &daemon, &id).await;
    assert_eq!(task["status"], "done", "{task}");

    let (status, result) = get(&http, &daemon, "/results/thumbnails/shots?version=1.0.0").await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["type"], "thumbnails");
    let stills = result["data"]["stills"].as_array().unwrap();
    assert_eq!(stills.len(), 3, "one still per shot: {result}");
    for (i, (still, (start, end))) in stills
        .iter()
        .zip([(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)])
        .enumerate()
    {
        let time = still["time_secs"].as_f64().unwrap();
        assert!(time >= start - 0.04 && time < end + 0.04, "{still}");
        let key = format!("acme/shots/thumbnails/1.0.0/{:03}.jpg", i + 1);
        assert_eq!(still["key"], key.as_str());
        let file = out.path().join(&key);
        assert_eq!(still["url"], format!("file://{}", file.display()).as_str());
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
        assert_eq!(
            (still["width"].as_u64(), still["height"].as_u64()),
            (Some(160), Some(90))
        );
    }
    let staging = out.path().join("acme/shots/thumbnails/1.0.0/.staging");
    assert!(!staging.exists(), "nothing staged is left");
}

#[test]
fn thumbnails_without_an_output_refuse_to_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taskd.toml");
    std::fs::write(&config, "[products.thumbnails]\nmax_stills = 5\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_taskd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("products.thumbnails.output") && stderr.contains("required"),
        "{stderr}"
    );
}

/// An episode: its own `lead` seconds of sound, a shared 20 s intro, its own 25 s, and shared
/// 15 s credits; with a test pattern.
fn episode(dir: &Path, name: &str, seed: u32, lead: f64) -> std::path::PathBuf {
    let parts = [(seed, lead), (900, 20.0), (seed + 50, 25.0), (901, 15.0)];
    sound::media(dir, name, &parts, Some("testsrc"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_wait_for_the_fingerprints_they_create_on_sled() {
    markers_create_the_fingerprints_they_need_wait_for_them_and_fingerprints_are_reused(
        Backend::Sled,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_wait_for_the_fingerprints_they_create_on_postgres() {
    markers_create_the_fingerprints_they_need_wait_for_them_and_fingerprints_are_reused(
        Backend::postgres(),
    )
    .await;
}

async fn markers_create_the_fingerprints_they_need_wait_for_them_and_fingerprints_are_reused(
    backend: Backend,
) {
    let config = format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\
         [products.fingerprint]\n[products.markers]\nfingerprint_version = \"1\"\n\
         [runner]\nconcurrency = 1\n"
    );
    let daemon = Daemon::start_on(&config, &backend);
    let media = daemon.dir.as_ref().unwrap().path().join("media");
    let http = reqwest::Client::new();
    let put = |item: Value| {
        let http = http.clone();
        let url = daemon.url("/catalog/v1/item");
        async move {
            let (status, body) = call(&http, reqwest::Method::PUT, url, Some(item)).await;
            assert!(status == 201 || status == 200, "{status} {body}");
        }
    };
    put(json!({"id": "show", "type": "series", "title": "Show", "asset_url": "file:///none"}))
        .await;
    put(
        json!({"id": "s1", "type": "season", "title": "S1", "asset_url": "file:///none",
        "parent_id": "show"}),
    )
    .await;
    for (id, seed, lead) in [("e1", 1, 6.0), ("e2", 2, 13.0)] {
        let file = episode(&media, &format!("{id}.mp4"), seed, lead);
        put(
            json!({"id": id, "type": "episode", "title": id, "parent_id": "s1",
            "asset_url": format!("file://{}", file.display())}),
        )
        .await;
    }
    // One slot: the markers task must give it up while it waits for the fingerprints.
    let markers = submit(&http, &daemon, "e1", "markers").await;
    let done = finished(&http, &daemon, &markers).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["waiting_for"], json!([]));
    let (_, history) = get(&http, &daemon, &format!("/task/{markers}/history")).await;
    let events: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"waiting") && events.contains(&"wait_ended"),
        "{events:?}"
    );
    let (_, result) = get(&http, &daemon, "/results/markers/e1?version=1.0.0").await;
    let data = &result["data"];
    assert_eq!(data["siblings_compared"], json!(["e2"]), "{result}");
    let intro = data["intro"].as_array().expect("an intro");
    assert!((intro[0].as_f64().unwrap() - 6.0).abs() <= 0.5, "{data}");
    assert!((intro[1].as_f64().unwrap() - 26.0).abs() <= 0.5, "{data}");
    let credits = data["credits"].as_array().expect("credits");
    assert!((credits[0].as_f64().unwrap() - 51.0).abs() <= 0.5, "{data}");

    // The fingerprint tasks it made, once each; another version of one reuses its analysis.
    let (_, e2_tasks) = get(&http, &daemon, "/tasks/catalog-item/e2").await;
    let e2_tasks = e2_tasks["tasks"].as_array().unwrap();
    assert_eq!(e2_tasks.len(), 1, "{e2_tasks:?}");
    assert_eq!(e2_tasks[0]["product"], "fingerprint");
    let body = json!({"inventory_id": "e2", "product": "fingerprint", "version": "2"});
    let (status, again) = call(
        &http,
        reqwest::Method::POST,
        daemon.url("/task"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    let again = finished(&http, &daemon, again["task_id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "done", "{again}");
    let id = again["task_id"].as_str().unwrap();
    let (_, history) = get(&http, &daemon, &format!("/task/{id}/history")).await;
    let reused = history["history"].as_array().unwrap().iter().any(|e| {
        e["step"] == "analyze" && e["detail"].as_str().is_some_and(|d| d.contains("reused"))
    });
    assert!(
        reused,
        "the unchanged object's fingerprint is reused: {history}"
    );
    let (_, v1) = get(&http, &daemon, "/results/fingerprint/e2?version=1").await;
    let (_, v2) = get(&http, &daemon, "/results/fingerprint/e2?version=2").await;
    assert_eq!(v1["data"], v2["data"]);
}
