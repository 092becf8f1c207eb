use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::Server;

#[tokio::test]
async fn a_batch_of_1000_tasks_is_created_in_one_call() {
    let s = Server::start().await;
    for item in 0..10 {
        s.ingest(&format!("movie-{item}"), "s3://b/k.mp4").await;
    }
    let tasks: Vec<Value> = (0..1000)
        .map(|i| json!({"inventory_id": format!("movie-{}", i % 10), "product": "adbreaks", "version": format!("1.{}", i / 10)}))
        .collect();
    let (status, body) = s
        .post("/tasks/batch", json!({"tasks": tasks.clone()}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            body["created"].as_u64(),
            body["existing"].as_u64(),
            body["refused"].as_u64()
        ),
        (Some(1000), Some(0), Some(0))
    );
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    let mut ids: Vec<&str> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["index"], i);
            assert_eq!(r["status"], 201);
            assert_eq!(r["task"]["inventory_id"], tasks[i]["inventory_id"]);
            r["task"]["task_id"].as_str().unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    let (_, again) = s.post("/tasks/batch", json!({"tasks": tasks})).await;
    assert_eq!(again["existing"], 1000);
    assert_eq!(
        again["results"][7]["task"]["task_id"],
        body["results"][7]["task"]["task_id"]
    );
}

#[tokio::test]
async fn each_entry_gets_its_own_result() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/k.mp4").await;
    let tasks = json!([
        {"inventory_id": "movie-1", "product": "adbreaks", "version": "1"},
        {"inventory_id": "ghost", "product": "adbreaks", "version": "1"},
        {"inventory_id": "movie-1", "product": "nudity", "version": "1"},
        {"inventory_id": "movie-1", "product": "adbreaks", "version": "1"},
        "not an object",
    ]);
    let (status, body) = s.post("/tasks/batch", json!({"tasks": tasks})).await;
    assert_eq!(status, StatusCode::OK);
    let r = body["results"].as_array().unwrap();
    assert_eq!(
        r.iter()
            .map(|e| e["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [201, 404, 422, 200, 422]
    );
    assert_eq!(r[3]["task"]["task_id"], r[0]["task"]["task_id"]);
    assert!(r[1]["detail"].as_str().unwrap().contains("ingest it first"));
    assert_eq!(
        r[2]["detail"][0]["loc"],
        json!(["body", "tasks", 2, "product"])
    );
    assert_eq!(r[4]["detail"][0]["type"], "model_type");
    assert_eq!(
        (
            body["created"].as_u64(),
            body["existing"].as_u64(),
            body["refused"].as_u64()
        ),
        (Some(1), Some(1), Some(3))
    );

    let (status, body) = s.post("/tasks/batch", json!({"task": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let locs: Vec<&Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["loc"])
        .collect();
    assert_eq!(locs, [&json!(["body", "task"]), &json!(["body", "tasks"])]);
    let too_many: Vec<Value> = (0..5001).map(|_| json!({})).collect();
    let (status, body) = s.post("/tasks/batch", json!({"tasks": too_many})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "too_long");
}
