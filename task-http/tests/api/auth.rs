use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use task_core::prelude::*;

use crate::common::{KEY_A, KEY_B, Server, tenant_a};

/// Every authenticated route, addressing tenant A's resources.
fn routes(task_id: &str) -> Vec<(Method, String, Option<Value>)> {
    let new_task = json!({"inventory_id": "movie-1", "product": "adbreaks", "version": "1"});
    let key = "/tasks/catalog-item/movie-1/product/adbreaks/version/1".to_owned();
    vec![
        (
            Method::PUT,
            "/catalog/v1/item".into(),
            Some(
                json!({"id": "movie-9", "type": "standalone", "title": "t", "asset_url": "s3://b/k"}),
            ),
        ),
        (Method::GET, "/catalog/v1/item".into(), None),
        (
            Method::GET,
            "/catalog/v1/item/standalone/movie-1".into(),
            None,
        ),
        (
            Method::DELETE,
            "/catalog/v1/item/standalone/movie-1".into(),
            None,
        ),
        (Method::POST, "/task".into(), Some(new_task.clone())),
        (Method::GET, format!("/task/{task_id}"), None),
        (
            Method::GET,
            format!("/task/{task_id}?wait=5&status=pending"),
            None,
        ),
        (Method::DELETE, format!("/task/{task_id}"), None),
        (Method::GET, format!("/task/{task_id}/history"), None),
        (Method::GET, format!("/task/{task_id}/events"), None),
        (Method::POST, key.clone(), Some(json!({}))),
        (Method::GET, key.clone(), None),
        (Method::DELETE, key, None),
        (Method::GET, "/tasks/catalog-item/movie-1".into(), None),
        (
            Method::POST,
            "/tasks/batch".into(),
            Some(json!({"tasks": [new_task]})),
        ),
        (
            Method::GET,
            "/results/adbreaks/movie-1?version=1".into(),
            None,
        ),
    ]
}

async fn setup() -> (Server, String) {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "adbreaks", "1").await;
    s.store
        .put_result(AnalysisResult {
            tenant: tenant_a(),
            product: ProductName::new("adbreaks").unwrap(),
            inventory_id: InventoryId::new("movie-1").unwrap(),
            version: Version::new("1").unwrap(),
            task_id: TaskId::parse(task["task_id"].as_str().unwrap()).unwrap(),
            updated_at: Timestamp::from_millis(1_700_000_000_000),
            data: json!({"adbreak": []}),
        })
        .await
        .unwrap();
    (s, task["task_id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn every_route_needs_a_valid_key() {
    let (s, task_id) = setup().await;
    for (method, path, body) in routes(&task_id) {
        for key in [
            None,
            Some("wrong-key"),
            Some("alpha-key-012345678"),
            Some(""),
        ] {
            let (status, answer) = s.call(method.clone(), &path, key, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {key:?}: {answer}"
            );
            assert!(answer["detail"].is_string());
        }
    }
    // The key also works as a query parameter, and health routes need none.
    let resp = s
        .http
        .get(s.url(&format!("/task/{task_id}?key={KEY_A}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(
            s.http.get(s.url(path)).send().await.unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn another_tenant_sees_nothing_of_tenant_a() {
    let (s, task_id) = setup().await;
    let before = s
        .store
        .get_task(&tenant_a(), TaskId::parse(&task_id).unwrap())
        .await
        .unwrap();
    for (method, path, body) in routes(&task_id) {
        let (status, answer) = s
            .call(method.clone(), &path, Some(KEY_B), body.clone())
            .await;
        match (method.as_str(), path.as_str()) {
            ("PUT", _) => assert_eq!(status, StatusCode::CREATED, "B's own catalog: {answer}"),
            ("GET", "/catalog/v1/item") => {
                assert_eq!(status, StatusCode::OK);
                assert!(!answer.to_string().contains("movie-1"), "{answer}");
            }
            ("POST", "/tasks/batch") => {
                assert_eq!(status, StatusCode::OK);
                assert_eq!(answer["results"][0]["status"], 404, "{answer}");
            }
            _ => assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}"),
        }
    }
    let after = s
        .store
        .get_task(&tenant_a(), TaskId::parse(&task_id).unwrap())
        .await
        .unwrap();
    assert_eq!(before, after, "tenant B changed nothing of A's");
    let (status, _) = s.get("/catalog/v1/item/standalone/movie-1").await;
    assert_eq!(status, StatusCode::OK);
    let beta = TenantId::new("beta").unwrap();
    let b_tasks = s
        .store
        .list_tasks(&beta, &TaskFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert!(b_tasks.items.is_empty());
}
