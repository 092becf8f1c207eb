use reqwest::StatusCode;
use serde_json::json;

use crate::common::Server;

#[tokio::test]
async fn results_appear_when_the_task_is_done_and_take_the_filters() {
    let s = Server::with_runner().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let (status, body) = s.get("/results/adbreaks/movie-1?version=1.0").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].is_string());
    let task = s.create("movie-1", "adbreaks", "1.0").await;
    let id = task["task_id"].as_str().unwrap();
    s.wait_for(id, |t| !t.status().is_active()).await;
    let (_, task) = s.get(&format!("/task/{id}")).await;
    assert_eq!(task["status"], "done");
    let href = task["_links"]["result"]["href"].as_str().unwrap();
    assert_eq!(href, "/results/adbreaks/movie-1?version=1.0");
    let (status, result) = s
        .get(&format!("{href}&minimum_separation=2&skip_first=1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["status"], "success");
    assert_eq!(result["version_id"], "1.0");
    assert_eq!(result["inventory_id"], "movie-1");
    assert_eq!(result["type"], "adbreaks");
    assert_eq!(result["updated"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        result["data"]["adbreak"],
        json!([{"rank": 1, "candidates": [61.5, 300.0]}])
    );
    assert_eq!(
        result["data"]["filters"],
        json!({"minimum_separation": "2", "skip_first": "1"}),
        "the presenter got the filters, not the key"
    );
    let (status, latest) = s.get("/results/adbreaks/movie-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["version_id"], "1.0");
    let (status, _) = s.get("/results/adbreaks/movie-1?version=2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s
        .get("/results/adbreaks/movie-1?minimum_separation=soon")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["query", "minimum_separation"])
    );
    let (status, body) = s.get("/results/nudity/movie-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["path", "product"]));
}
