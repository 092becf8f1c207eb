use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_core::prelude::*;

use crate::common::{KEY_A, Server, tenant_a};

fn locs(body: &Value) -> Vec<Value> {
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("not a validation body: {body}"))
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string() && e["type"].is_string(), "{e}");
            e["loc"].clone()
        })
        .collect()
}

async fn nothing_written(s: &Server) {
    let tasks = s
        .store
        .list_tasks(
            &tenant_a(),
            &TaskFilter::default(),
            &PageRequest::first(100),
        )
        .await
        .unwrap();
    assert!(tasks.items.is_empty(), "a refused request wrote a task");
}

async fn raw(s: &Server, method: Method, path: &str, body: &'static str) -> (StatusCode, Value) {
    let resp = s
        .http
        .request(method, s.url(path))
        .header("X-API-Key", KEY_A)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn malformed_json_and_wrong_types_name_the_field() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let (status, body) = raw(&s, Method::POST, "/task", "{\"inventory_id\": ").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(locs(&body), [json!(["body"])]);
    let (status, body) = raw(&s, Method::POST, "/task", "[1, 2]").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "model_type");

    let (status, body) = s.post("/task", json!({"inventory_id": 42, "product": "adbreaks", "version": "1", "priority": "urgent"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        locs(&body),
        [json!(["body", "inventory_id"]), json!(["body", "priority"])]
    );
    assert_eq!(body["detail"][0]["type"], "string_type");

    let (status, body) = s.post("/task", json!({"product": "adbreaks"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        locs(&body),
        [json!(["body", "inventory_id"]), json!(["body", "version"])]
    );
    assert!(
        body["detail"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == "missing")
    );
    nothing_written(&s).await;
}

#[tokio::test]
async fn unknown_fields_products_and_versions_are_refused() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let (status, body) = s.post("/task", json!({"inventory_id": "movie-1", "product": "adbreaks", "version": "1", "priorty": "high"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["body", "priorty"])]);
    assert_eq!(body["detail"][0]["type"], "extra_forbidden");

    let (status, body) = s
        .post(
            "/task",
            json!({"inventory_id": "movie-1", "product": "nudity", "version": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["body", "product"])]);
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("not enabled"),
        "{body}"
    );

    let (status, body) = s
        .post(
            "/task",
            json!({"inventory_id": "movie-1", "product": "Bad Name", "version": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["body", "product"])]);

    let (status, body) = s
        .post(
            "/task",
            json!({"inventory_id": "movie-1", "product": "emotions", "version": "1.0"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["body", "version"])]);
    let (status, _) = s
        .post(
            "/task",
            json!({"inventory_id": "movie-1", "product": "emotions", "version": "2.0"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = s
        .post(
            "/tasks/catalog-item/movie-1/product/nudity/version/1",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["path", "product"])]);
    let (status, body) = s
        .post(
            "/tasks/catalog-item/movie-1/product/adbreaks/version/1",
            json!({"priority": "low", "x": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["body", "x"])]);
}

#[tokio::test]
async fn invalid_ids_and_query_parameters_name_the_parameter() {
    let s = Server::start().await;
    for path in [
        "/task/not-a-uuid",
        "/task/67e55044-10b1-426f-9247-bb680e5fe0c8/history",
        "/task/xyz/events",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(locs(&body), [json!(["path", "task_id"])], "{path}");
    }
    let (status, body) = s.get("/catalog/v1/item/movie/x").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["path", "type"])]);
    let (status, body) = s
        .get("/catalog/v1/item?page_size=0&page_num=x&allow_deleted=maybe")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body).len(), 3, "{body}");
    let (status, body) = s
        .get("/task/0190a7e4-2b5c-7cc3-8c5e-1a2b3c4d5e6f?wait=-1&status=sleeping")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        locs(&body),
        [json!(["query", "wait"]), json!(["query", "status"])]
    );
    let (status, body) = s.get("/results/adbreaks/movie-1?version=a%20b").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locs(&body), [json!(["query", "version"])]);
}

#[tokio::test]
async fn catalog_bodies_are_checked_field_by_field() {
    let s = Server::start().await;
    let (status, body) = s.put("/catalog/v1/item", json!({"id": "", "type": "film", "asset_url": "ftp://x", "tags": [1], "created_at": "now"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut got = locs(&body);
    got.sort_by_key(|l| l.to_string());
    let mut want = vec![
        json!(["body", "created_at"]),
        json!(["body", "id"]),
        json!(["body", "type"]),
        json!(["body", "title"]),
        json!(["body", "tags", 0]),
        json!(["body", "asset_url"]),
    ];
    want.sort_by_key(|l| l.to_string());
    assert_eq!(got, want, "{body}");
    let page = s
        .store
        .list_items(&tenant_a(), true, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(page.items.is_empty(), "nothing written");
}

#[tokio::test]
async fn oversized_bodies_are_413_and_write_nothing() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let big = "x".repeat(2 * 1024 * 1024);
    let body =
        json!({"inventory_id": "movie-1", "product": "adbreaks", "version": "1", "pad": big});
    let (status, body) = s.post("/task", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["detail"].as_str().unwrap().contains("1048576"),
        "{body}"
    );
    nothing_written(&s).await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = Server::start().await;
    let (status, body) = s.get("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Not Found"}));
    let (status, body) = s.call(Method::PATCH, "/task", Some(KEY_A), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body, json!({"detail": "Method Not Allowed"}));
}
