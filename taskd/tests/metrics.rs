//! `/metrics` of a real `taskd` after a known run: N tasks created (one request answered with
//! an existing task, not counted), M of them on an asset shorter than the product's minimum
//! (`asset_too_short`), the rest done. The scrape is parsed and every figure checked exactly.
//! Also: who may read it (the scrape key, never a tenant's key), its own keyless address, and
//! no `/metrics` at all without a `[metrics]` section.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use support::pg::Backend;
use support::{Daemon, encode};

const KEY: &str = "metrics-tenant-key";
const SCRAPE_KEY: &str = "scrape-key-0123456789abcdef";

/// A port nothing listens on now (the daemon binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn put_item(http: &reqwest::Client, daemon: &Daemon, id: &str, url: &str) {
    let item = json!({"id": id, "type": "standalone", "title": id, "asset_url": url});
    let response = http
        .put(daemon.url("/catalog/v1/item"))
        .header("X-API-Key", KEY)
        .json(&item)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{id}: {}",
        response.status()
    );
}

fn task_body(id: &str, priority: &str) -> serde_json::Value {
    json!({"inventory_id": id, "product": "adbreaks", "version": "1.0", "priority": priority})
}

/// Polls each task until it has ended (a deadline keeps a hung run from hanging the test).
async fn wait_for_end(http: &reqwest::Client, daemon: &Daemon, ids: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut statuses = Vec::new();
    for id in ids {
        loop {
            let task: serde_json::Value = http
                .get(daemon.url(&format!("/task/{id}")))
                .header("X-API-Key", KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let status = task["status"].as_str().unwrap().to_owned();
            if ["done", "failed", "cancelled"].contains(&status.as_str()) {
                statuses.push(format!(
                    "{status}:{}",
                    task["error_code"].as_str().unwrap_or("")
                ));
                break;
            }
            assert!(Instant::now() < deadline, "task {id} still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    statuses
}

async fn scrape(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = http.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn matching<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    scrape.samples.iter().filter(move |s| {
        s.metric == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(k).unwrap_or("") == *v)
    })
}

/// The sum of the counter or gauge samples of `name` with `labels` (other labels summed over).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels)
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) => *v,
            other => panic!("{name} is {other:?}"),
        })
        .sum()
}

/// The observation count of the histogram `name` with `labels` (its +Inf bucket), summed.
fn observations(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels)
        .map(|s| match &s.value {
            Value::Histogram(buckets) => {
                let last = buckets.last().unwrap();
                assert!(last.less_than.is_infinite(), "{name}: {buckets:?}");
                last.count
            }
            other => panic!("{name} is {other:?}"),
        })
        .sum()
}

/// The `_sum` of the histogram `name`.
fn histogram_sum(scrape: &Scrape, name: &str) -> f64 {
    let sum = format!("{name}_sum");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == sum)
        .map(|s| match s.value {
            Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v) => v,
            _ => panic!("{sum} is {:?}", s.value),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_counts_exactly_what_happened_on_sled() {
    the_scrape_counts_exactly_what_happened(Backend::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_counts_exactly_what_happened_on_postgres() {
    the_scrape_counts_exactly_what_happened(Backend::postgres()).await;
}

async fn the_scrape_counts_exactly_what_happened(backend: Backend) {
    let port = free_port();
    let config = format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\n[products.adbreaks]\nmin_duration_secs = 20\n\n\
         [metrics]\nlisten = \"127.0.0.1:{port}\"\nscrape_key = \"{SCRAPE_KEY}\"\n"
    );
    let daemon = Daemon::start_on(&config, &backend);
    let media = daemon.root().join("media").canonicalize().unwrap();
    encode(&media.join("good.mp4"), 30);
    encode(&media.join("short.mp4"), 6);
    let http = reqwest::Client::new();
    let (good, short) = (["g1", "g2"], ["s1", "s2", "s3"]);
    for (ids, file) in [(&good[..], "good.mp4"), (&short[..], "short.mp4")] {
        for id in ids {
            let url = format!("file://{}", media.join(file).display());
            put_item(&http, &daemon, id, &url).await;
        }
    }

    // Two tasks one by one (one of high priority), three in a batch that also names one of
    // them twice: the duplicate is answered with the existing task and not counted.
    let mut ids = Vec::new();
    for (id, priority) in [("g1", "high"), ("s1", "low")] {
        let response = http
            .post(daemon.url("/task"))
            .header("X-API-Key", KEY)
            .json(&task_body(id, priority))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let task: serde_json::Value = response.json().await.unwrap();
        ids.push(task["task_id"].as_str().unwrap().to_owned());
    }
    let batch = json!({"tasks": [
        task_body("g2", "low"), task_body("s2", "low"),
        task_body("s3", "low"), task_body("s3", "low"),
    ]});
    let response = http
        .post(daemon.url("/tasks/batch"))
        .header("X-API-Key", KEY)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (answer["created"].as_u64(), answer["existing"].as_u64()),
        (Some(3), Some(1)),
        "{answer}"
    );
    for result in answer["results"].as_array().unwrap().iter().take(3) {
        ids.push(result["task"]["task_id"].as_str().unwrap().to_owned());
    }
    let mut statuses = wait_for_end(&http, &daemon, &ids).await;
    statuses.sort();
    let too_short = "failed:asset_too_short".to_owned();
    assert_eq!(
        statuses,
        [
            "done:".to_owned(),
            "done:".to_owned(),
            too_short.clone(),
            too_short.clone(),
            too_short
        ],
    );
    let (n, m) = (5.0, 3.0);

    // Who may read it: the scrape key on the API address, anyone on the metrics address.
    let on_api = daemon.url("/metrics");
    for (bearer, expected) in [
        (None, 401),
        (Some(KEY), 401),
        (Some("wrong-key-0123456789"), 401),
    ] {
        let (status, body) = scrape(&http, &on_api, bearer).await;
        assert_eq!(status, expected, "{bearer:?}: {body}");
        assert!(!body.contains("taskd_"), "{bearer:?}: {body}");
    }
    let response = http
        .get(&on_api)
        .header("X-API-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        401,
        "a tenant's X-API-Key reads nothing"
    );
    let (status, keyed) = scrape(&http, &on_api, Some(SCRAPE_KEY)).await;
    assert_eq!(status, 200, "{keyed}");
    let (status, open) = scrape(&http, &format!("http://127.0.0.1:{port}/metrics"), None).await;
    assert_eq!(status, 200, "{open}");

    for text in [keyed, open] {
        let scrape = parse(&text);
        assert!(
            scrape.docs.contains_key("taskd_tasks_finished_total"),
            "{text}"
        );
        let adbreaks = [("product", "adbreaks")];
        assert_eq!(
            value(&scrape, "taskd_tasks_created_total", &adbreaks),
            n,
            "{text}"
        );
        let failed = [
            ("product", "adbreaks"),
            ("status", "failed"),
            ("error_code", "asset_too_short"),
        ];
        assert_eq!(
            value(&scrape, "taskd_tasks_finished_total", &failed),
            m,
            "{text}"
        );
        let done = [
            ("product", "adbreaks"),
            ("status", "done"),
            ("error_code", ""),
        ];
        assert_eq!(
            value(&scrape, "taskd_tasks_finished_total", &done),
            n - m,
            "{text}"
        );
        assert_eq!(
            value(&scrape, "taskd_tasks_finished_total", &adbreaks),
            n,
            "{text}"
        );
        assert_eq!(
            value(&scrape, "taskd_leases_lost_total", &[]),
            0.0,
            "{text}"
        );

        // Every task ran s3_check, probe and length_gate; only the long ones reached analyze.
        let step = "taskd_step_duration_seconds";
        for (name, runs) in [
            ("s3_check", n),
            ("probe", n),
            ("length_gate", n),
            ("analyze", n - m),
        ] {
            let labels = [("product", "adbreaks"), ("step", name)];
            assert_eq!(observations(&scrape, step, &labels), runs, "{name}: {text}");
        }
        assert_eq!(observations(&scrape, step, &[]), 4.0 * (n - m) + 3.0 * m);

        let wait = "taskd_queue_wait_seconds";
        assert_eq!(observations(&scrape, wait, &adbreaks), n, "{text}");
        assert_eq!(
            observations(&scrape, wait, &[("priority", "high")]),
            1.0,
            "{text}"
        );
        assert!(histogram_sum(&scrape, wait) >= 0.0);

        // Claims took every task once: the batch sizes add up to N.
        assert!(
            observations(&scrape, "taskd_claim_batch_size", &[]) >= 1.0,
            "{text}"
        );
        assert_eq!(
            histogram_sum(&scrape, "taskd_claim_batch_size"),
            n,
            "{text}"
        );

        // The store committed the writes of all this (and sled fsynced its journal for them;
        // PostgreSQL's fsyncs are inside its COMMIT).
        let commit = "taskd_store_commit_seconds";
        assert!(observations(&scrape, commit, &[]) >= n, "{text}");
        assert!(histogram_sum(&scrape, commit) > 0.0, "{text}");
        let (fsyncs, per_fsync) = (
            observations(&scrape, "taskd_store_fsync_seconds", &[]),
            histogram_sum(&scrape, "taskd_store_writes_per_fsync"),
        );
        match backend {
            Backend::Sled => {
                assert!(fsyncs > 0.0, "{text}");
                assert!(per_fsync >= n, "{text}");
            }
            Backend::Postgres(_) => assert_eq!((fsyncs, per_fsync), (0.0, 0.0), "{text}"),
        }

        // The status gauge, from the store's kept counts.
        for (status, count) in [
            ("done", n - m),
            ("failed", m),
            ("pending", 0.0),
            ("processing", 0.0),
        ] {
            let labels = [("product", "adbreaks"), ("status", status)];
            assert_eq!(
                matching(&scrape, "taskd_tasks", &labels).count(),
                1,
                "{status}: {text}"
            );
            assert_eq!(
                value(&scrape, "taskd_tasks", &labels),
                count,
                "{status}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn the_scrape_key_alone_serves_on_the_api_address_and_nothing_else_listens() {
    let config = format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n\n[metrics]\nscrape_key = \"{SCRAPE_KEY}\"\n"
    );
    let daemon = Daemon::start(&config);
    let http = reqwest::Client::new();
    let (status, text) = scrape(&http, &daemon.url("/metrics"), Some(SCRAPE_KEY)).await;
    assert_eq!(status, 200, "{text}");
    let parsed = parse(&text);
    // Nothing ran yet: every status gauge of the configured product is there and reads 0.
    for status in ["pending", "processing", "done", "failed", "cancelled"] {
        let labels = [("product", "adbreaks"), ("status", status)];
        assert_eq!(
            matching(&parsed, "taskd_tasks", &labels).count(),
            1,
            "{text}"
        );
        assert_eq!(value(&parsed, "taskd_tasks", &labels), 0.0, "{text}");
    }
    let (status, _) = scrape(&http, &daemon.url("/metrics"), Some(KEY)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn without_a_metrics_section_there_is_no_metrics_route() {
    let daemon = Daemon::start(&format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n"
    ));
    let http = reqwest::Client::new();
    let (status, body) = scrape(&http, &daemon.url("/metrics"), Some(KEY)).await;
    assert_eq!(status, 404, "{body}");
}
