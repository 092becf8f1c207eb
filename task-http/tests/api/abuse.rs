//! A hostile tenant plays every route with the inputs that broke the service before (deep
//! nesting, huge waits, ambiguous keys, duplicate keys, wrong media types, oversized bodies,
//! huge batches, and tasks whose step panics) while another tenant's tasks keep flowing.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_core::prelude::*;

use crate::common::{KEY_A, KEY_B, Server};

/// Tenant B's create-to-done times, one task after another.
async fn flow(s: &Server, from: usize, count: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    for version in from..from + count {
        let started = Instant::now();
        let body = json!({"inventory_id": "b-movie", "product": "adbreaks", "version": version.to_string()});
        let (status, task) = s.call(Method::POST, "/task", Some(KEY_B), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let id = TaskId::parse(task["task_id"].as_str().unwrap()).unwrap();
        let tenant = TenantId::new("beta").unwrap();
        let done = tokio::time::timeout(
            Duration::from_secs(30),
            task_runner::wait_for(&*s.store, &tenant, id, |t| !t.status().is_active()),
        )
        .await
        .expect("tenant B's task ends while tenant A attacks")
        .unwrap();
        assert_eq!(done.status(), Status::Done, "{done:?}");
        times.push(started.elapsed());
    }
    times
}

async fn hostile(s: &Server, round: usize) {
    let http = &s.http;
    let deep = (0..200).fold(json!(1), |v, _| json!([v]));
    let item = json!({"id": format!("poison-{round}"), "type": "standalone", "title": "x",
        "asset_url": format!("s3://b/panic-{round}.mp4")});
    let (status, _) = s
        .call(Method::PUT, "/catalog/v1/item", Some(KEY_A), Some(item))
        .await;
    assert!(status.is_success());
    let task =
        json!({"inventory_id": format!("poison-{round}"), "product": "adbreaks", "version": "1"});
    let (status, created) = s.call(Method::POST, "/task", Some(KEY_A), Some(task)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let nested = json!({"id": "deep", "type": "standalone", "title": "x", "asset_url": "s3://b/k", "x": deep});
    let (status, _) = s
        .call(Method::PUT, "/catalog/v1/item", Some(KEY_A), Some(nested))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let id = created["task_id"].as_str().unwrap();
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/task/{id}?wait=1e20&status=done"),
            Some(KEY_A),
            None,
        )
        .await;
    assert!(status.is_success());
    let requests = [
        http.get(s.url(&format!("/catalog/v1/item?key={KEY_B}")))
            .header("X-API-Key", KEY_A),
        http.put(s.url("/catalog/v1/item"))
            .header("X-API-Key", KEY_A)
            .body(r#"{"id":"a","id":"b"}"#)
            .header("content-type", "application/json"),
        http.post(s.url("/task"))
            .header("X-API-Key", KEY_A)
            .body("inventory_id=a"),
        http.post(s.url("/tasks/batch"))
            .header("X-API-Key", KEY_A)
            .header("content-type", "application/json")
            // The server answers 413 before reading the rest and drops the connection: not
            // one for the client's pool to reuse.
            .header("connection", "close")
            .body(vec![b' '; 2 << 20]),
    ];
    for request in requests {
        match request.send().await {
            Ok(response) => assert!(response.status().is_client_error(), "{response:?}"),
            // The oversized body: the server may answer 413 and close while the client is
            // still writing, which the client sees as a broken pipe before it reads the answer.
            Err(err) if cut_while_sending(&err) => {}
            Err(err) => panic!("{err:?}"),
        }
    }
    // A batch of poison tasks, and B's task id guessed by A: not found.
    let entries: Vec<Value> = (0..200)
        .map(|v| json!({"inventory_id": format!("poison-{round}"), "product": "adbreaks", "version": format!("b{v}")}))
        .collect();
    let (status, batch) = s
        .call(
            Method::POST,
            "/tasks/batch",
            Some(KEY_A),
            Some(json!({"tasks": entries})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(batch["created"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_does_not_stop_another_tenants_work() {
    let s = Server::with_runner().await;
    let item =
        json!({"id": "b-movie", "type": "standalone", "title": "B", "asset_url": "s3://b/ok.mp4"});
    let (status, _) = s
        .call(Method::PUT, "/catalog/v1/item", Some(KEY_B), Some(item))
        .await;
    assert!(status.is_success());
    let calm = flow(&s, 0, 10).await;
    let attack = async {
        for round in 0..5 {
            hostile(&s, round).await;
        }
    };
    let (under_attack, ()) = tokio::join!(flow(&s, 10, 10), attack);
    // Every poison task fails as internal, naming the panic; none is left running.
    let tenant_a = TenantId::new("alpha").unwrap();
    let page = s
        .store
        .list_tasks(&tenant_a, &TaskFilter::default(), &PageRequest::first(2000))
        .await
        .unwrap();
    let mut poisoned = 0;
    for task in &page.items {
        let ended = tokio::time::timeout(
            Duration::from_secs(60),
            task_runner::wait_until_finished(&*s.store, &tenant_a, task.id),
        )
        .await
        .expect("every poison task ends")
        .unwrap();
        let error = ended.error().expect("a poison task fails");
        assert_eq!(error.code(), "internal");
        assert!(error.to_string().contains("panicked"), "{error}");
        poisoned += 1;
    }
    assert!(poisoned >= 5 * 201, "{poisoned}");
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "tenant B create-to-done: median {:?} calm, {:?} while tenant A sent {poisoned} poison tasks",
        median(calm),
        median(under_attack)
    );
    let _ = KEY_A;
}

/// Whether `err` is the connection closing under a request body still being written.
fn cut_while_sending(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            );
        }
        source = current.source();
    }
    false
}
