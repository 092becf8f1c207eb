use reqwest::StatusCode;
use serde_json::json;

use crate::common::Server;

#[tokio::test]
async fn upsert_get_list_and_soft_delete() {
    let s = Server::start().await;
    let body = json!({"id": "movie-1", "type": "standalone", "title": "One",
        "asset_url": "s3://bucket/one.mp4", "tags": ["drama"], "genre": "noir"});
    let (status, item) = s.put("/catalog/v1/item", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    assert_eq!(item["id"], "movie-1");
    assert_eq!(item["type"], "standalone");
    assert_eq!(item["tags"], json!(["drama"]));
    assert_eq!(
        item["genre"], "noir",
        "unknown catalog fields are kept as given"
    );
    assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(item["deleted_at"].is_null());

    let mut replaced = body.clone();
    replaced["title"] = json!("One, remastered");
    let (status, item) = s.put("/catalog/v1/item", replaced).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item["title"], "One, remastered");

    let (status, got) = s.get("/catalog/v1/item/standalone/movie-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["title"], "One, remastered");
    let (status, _) = s.get("/catalog/v1/item/episode/movie-1").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the type is part of the address"
    );

    for i in 2..=5 {
        s.ingest(&format!("movie-{i}"), "s3://bucket/x.mp4").await;
    }
    let (status, page) = s.get("/catalog/v1/item?page_num=2&page_size=2").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["movie-3", "movie-4"]);
    assert_eq!(page["has_next"], true);
    let (_, last) = s.get("/catalog/v1/item?page_num=3&page_size=2").await;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["has_next"], false);
    let (_, beyond) = s.get("/catalog/v1/item?page_num=9&page_size=2").await;
    assert!(beyond["items"].as_array().unwrap().is_empty());

    let (status, deleted) = s.delete("/catalog/v1/item/standalone/movie-2").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert!(deleted["item"]["deleted_at"].is_string());
    let (status, _) = s.get("/catalog/v1/item/standalone/movie-2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .get("/catalog/v1/item/standalone/movie-2?allow_deleted=true")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, all) = s.get("/catalog/v1/item?page_size=100").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    let (_, with_deleted) = s
        .get("/catalog/v1/item?page_size=100&allow_deleted=true")
        .await;
    assert_eq!(with_deleted["items"].as_array().unwrap().len(), 5);
    let (status, again) = s.delete("/catalog/v1/item/standalone/movie-2").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{again}");
}

#[tokio::test]
async fn deleting_an_item_cancels_its_active_tasks_and_refuses_new_ones() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "adbreaks", "1.0").await;
    let (status, deleted) = s.delete("/catalog/v1/item/standalone/movie-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["cancelled_tasks"], json!([task["task_id"]]));
    let (_, task) = s
        .get(&format!("/task/{}", task["task_id"].as_str().unwrap()))
        .await;
    assert_eq!(task["status"], "cancelled");
    let (status, refused) = s
        .post(
            "/task",
            json!({"inventory_id": "movie-1", "product": "adbreaks", "version": "1.0"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("ingest it first"),
        "{refused}"
    );
}
