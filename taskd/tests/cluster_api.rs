//! Two API nodes (`taskd serve --no-runner`) on one PostgreSQL schema: racing creates of one key
//! through both make one active task; then, with a `taskd worker` beside them, a worker's
//! transitions reach the other API node's event stream, and the test prints how long that
//! takes (`SSE_SAMPLES` tasks, default 40; not asserted: the figures go to BENCHMARKS.md).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use serde_json::{Value, json};
use support::cluster::{Cluster, Events, at, call, history, ingest, percentile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_through_two_api_nodes_make_one_task_and_events_cross_processes() {
    let cluster = Cluster::new(4, 4, 5);
    let nodes = [cluster.api(), cluster.api()];
    let http = reqwest::Client::new();
    ingest(&http, &nodes[0], &cluster, "race").await;

    for round in 0..5 {
        let version = format!("2.{round}");
        let body = json!({"inventory_id": "race", "product": "adbreaks", "version": version});
        let racers: Vec<_> = (0..32)
            .map(|i| {
                let (http, body) = (http.clone(), body.clone());
                let node = &nodes[i % 2];
                async move { call(&http, node, Method::POST, "/task", Some(body)).await }
            })
            .collect();
        let answers = futures::future::join_all(racers).await;
        let created = answers.iter().filter(|(s, _)| *s == 201).count();
        let existing = answers.iter().filter(|(s, _)| *s == 200).count();
        assert_eq!((created, existing), (1, 31), "round {round}: {answers:?}");
        let ids: BTreeSet<&str> = answers
            .iter()
            .map(|(_, task)| task["task_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: every answer names one task: {ids:?}"
        );
        for node in &nodes {
            let path = format!("/tasks/catalog-item/race/product/adbreaks/version/{version}");
            let (status, task) = call(&http, node, Method::GET, &path, None).await;
            assert_eq!(status, 200, "{task}");
            assert_eq!(task["task_id"].as_str(), ids.first().copied(), "{task}");
        }
    }
    let (_, all) = call(
        &http,
        &nodes[1],
        Method::GET,
        "/tasks/catalog-item/race",
        None,
    )
    .await;
    let all = all
        .as_array()
        .or(all["tasks"].as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        all.len(),
        5,
        "one task per key, seen from either node: {all:?}"
    );

    // A worker runs them; its transitions reach the other API node's event stream.
    let worker = cluster.worker();
    ingest(&http, &nodes[0], &cluster, "clip").await;
    let samples: usize = std::env::var("SSE_SAMPLES")
        .ok()
        .map(|v| v.parse().expect("SSE_SAMPLES is a number"))
        .unwrap_or(40);
    let mut to_running = Vec::new();
    let mut done_seen = Vec::new();
    for i in 0..samples {
        let body =
            json!({"inventory_id": "clip", "product": "adbreaks", "version": format!("3.{i}")});
        let asked = Instant::now();
        let (status, task) = call(&http, &nodes[0], Method::POST, "/task", Some(body)).await;
        assert_eq!(status, 201, "{task}");
        let id = task["task_id"].as_str().unwrap().to_owned();
        let mut events = Events::open(&http, &nodes[1], &id).await;
        let mut running = None;
        let mut last: Option<(Value, Instant)> = None;
        while let Some((task, arrived)) = events.next().await {
            if running.is_none() && task["status"] != "pending" {
                running = Some(arrived);
            }
            last = Some((task, arrived));
        }
        let (task, ended) = last.expect("at least the task as it is");
        assert_eq!(
            task["status"], "done",
            "the stream ends with the worker's done: {task}"
        );
        to_running.push(running.expect("a worker took it") - asked);
        // When the worker wrote done, by its history; when node 1 streamed it, by the clock.
        let entries = history(&http, &nodes[0], &id).await;
        let done = entries.iter().find(|e| e["event"] == "done").unwrap();
        let streamed = SystemTime::now() - ended.elapsed();
        done_seen.push(streamed.duration_since(at(done)).unwrap_or_default());
    }
    to_running.sort_unstable();
    done_seen.sort_unstable();
    println!(
        "SSE across processes, {samples} tasks: create on API node A -> `processing` on node B's stream p50 {:?} p99 {:?}; worker's done committed -> on node B's stream p50 {:?} p99 {:?}",
        percentile(&to_running, 0.5),
        percentile(&to_running, 0.99),
        percentile(&done_seen, 0.5),
        percentile(&done_seen, 0.99),
    );
    assert!(
        percentile(&done_seen, 0.99) < Duration::from_secs(5),
        "a change took longer than the feed's poll fallback allows: {done_seen:?}"
    );
    drop(worker);
}
