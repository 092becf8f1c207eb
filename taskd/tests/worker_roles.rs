//! The node roles: a worker or an API-only node on sled is refused with a message that says
//! why; a worker SIGTERMed while it runs tasks gives their leases back at once (`lease_released`,
//! not a lease expiry), and the next worker finishes them, each step once.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::cluster::{Cluster, call, history, ingest};

const BIN: &str = env!("CARGO_BIN_EXE_taskd");

#[test]
fn nodes_that_need_a_shared_store_refuse_sled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [&["worker"][..], &["serve", "--no-runner"][..]] {
        let output = Command::new(BIN)
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&args.join(" ")) && stderr.contains("single-process"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(&data.display().to_string()), "{stderr}");
        assert!(!data.exists(), "{args:?} opened nothing");
    }
    let output = Command::new(BIN)
        .args(["worker", "--store", "mysql://db/tasks"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--store") && stderr.contains("mysql://"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_worker_releases_its_leases_and_the_next_one_finishes() {
    let cluster = Cluster::new(4, 4, 30);
    // No grace: running steps stop at the signal, so the worker must give leases back.
    let config = cluster.dir.path().join("taskd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("shutdown_grace_secs = 2", "shutdown_grace_secs = 0"),
    )
    .unwrap();
    let api = cluster.api();
    let http = reqwest::Client::new();
    ingest(&http, &api, &cluster, "clip").await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let body =
            json!({"inventory_id": "clip", "product": "adbreaks", "version": format!("4.{i}")});
        let (status, task) = call(&http, &api, Method::POST, "/task", Some(body)).await;
        assert_eq!(status, 201, "{task}");
        ids.push(task["task_id"].as_str().unwrap().to_owned());
    }
    let first = cluster.worker();
    let mut conn = cluster.schema().connect().await;
    let started = Instant::now();
    loop {
        let counts = cluster.schema().status_counts(&mut conn).await;
        if counts.iter().any(|(s, n)| s == "processing" && *n > 0)
            && counts.iter().any(|(s, _)| s == "done")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.sigterm();
    let output = first.into_output();
    assert!(output.contains("taskd stopped cleanly"), "{output}");
    let counts = cluster.schema().status_counts(&mut conn).await;
    assert!(
        !counts.iter().any(|(s, _)| s == "processing"),
        "a stopped worker holds nothing: {counts:?}"
    );

    let second = cluster.worker();
    let mut released = 0;
    for id in &ids {
        let finished = Instant::now();
        let entries = loop {
            let entries = history(&http, &api, id).await;
            if entries.last().unwrap()["to"] == "done" {
                break entries;
            }
            assert!(finished.elapsed() < Duration::from_secs(60), "{entries:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let count = |event: &str| entries.iter().filter(|e| e["event"] == event).count();
        assert_eq!(count("lease_expired"), 0, "{id}: {entries:?}");
        assert_eq!(
            (count("done"), count("step_succeeded")),
            (1, 4),
            "{id}: {entries:?}"
        );
        released += count("lease_released");
    }
    assert!(
        released > 0,
        "the worker was stopped while it held tasks, and gave them back"
    );
    drop(second);
}
