use reqwest::StatusCode;
use serde_json::json;
use task_core::prelude::*;

use crate::common::Server;

#[tokio::test]
async fn create_returns_201_then_200_with_the_active_task() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let body = json!({"inventory_id": "movie-1", "product": "adbreaks", "version": "1.0.1", "priority": "high"});
    let (status, first) = s.post("/task", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    for field in [
        "task_id",
        "inventory_id",
        "product",
        "version",
        "priority",
        "status",
        "attempt",
        "created_at",
        "updated_at",
        "_links",
    ] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }
    assert_eq!(first["status"], "pending");
    assert_eq!(first["priority"], "high");
    assert_eq!(first["cancel_requested"], false);
    assert!(first["step"].is_null() && first["error"].is_null() && first["error_code"].is_null());
    let id = first["task_id"].as_str().unwrap();
    assert_eq!(
        first["_links"]["self"],
        json!({"href": format!("/task/{id}"), "method": "GET"})
    );
    assert_eq!(
        first["_links"]["cancel"],
        json!({"href": format!("/task/{id}"), "method": "DELETE"})
    );
    assert!(first["_links"].get("result").is_none());
    let (status, second) = s.post("/task", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["task_id"], first["task_id"]);
    let (status, got) = s.get(&format!("/task/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, first);
    // The default priority is low.
    let (_, low) = s
        .post(
            "/task",
            json!({"inventory_id": "movie-1", "product": "adbreaks", "version": "2"}),
        )
        .await;
    assert_eq!(low["priority"], "low");
}

#[tokio::test]
async fn an_item_not_in_the_catalog_is_refused_with_ingest_first() {
    let s = Server::start().await;
    let (status, body) = s
        .post(
            "/task",
            json!({"inventory_id": "ghost", "product": "adbreaks", "version": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"ghost\"") && detail.contains("ingest it first"),
        "{detail}"
    );
    let (status, body) = s
        .post(
            "/tasks/catalog-item/ghost/product/adbreaks/version/1",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].as_str().unwrap().contains("ingest it first"));
    let page = s
        .store
        .list_tasks(
            &crate::common::tenant_a(),
            &TaskFilter::default(),
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert!(page.items.is_empty(), "nothing written");
}

#[tokio::test]
async fn cancel_pending_then_409_on_a_finished_task() {
    let s = Server::start().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "adbreaks", "1").await;
    let path = format!("/task/{}", task["task_id"].as_str().unwrap());
    let (status, cancelled) = s.delete(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["_links"].get("cancel").is_none());
    assert!(cancelled["finished_at"].is_string());
    let (status, again) = s.delete(&path).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        again["detail"]
            .as_str()
            .unwrap()
            .contains("already ended (cancelled)"),
        "{again}"
    );
    let (status, missing) = s.delete("/task/0190a7e4-2b5c-7cc3-8c5e-1a2b3c4d5e6f").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
}

#[tokio::test]
async fn natural_key_routes_address_the_same_tasks() {
    let s = Server::start().await;
    s.ingest("movie 1/ünï", "s3://b/one.mp4").await;
    let key_path = "/tasks/catalog-item/movie%201%2F%C3%BCn%C3%AF/product/adbreaks/version/1.0";
    let (status, created) = s.post(key_path, json!({"priority": "medium"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["inventory_id"], "movie 1/ünï");
    assert_eq!(created["priority"], "medium");
    let (status, existing) = s
        .call(
            reqwest::Method::POST,
            key_path,
            Some(crate::common::KEY_A),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an empty body is allowed: {existing}"
    );
    assert_eq!(existing["task_id"], created["task_id"]);
    let (status, got) = s.get(key_path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["task_id"], created["task_id"]);
    let (_, by_id) = s
        .get(&format!("/task/{}", created["task_id"].as_str().unwrap()))
        .await;
    assert_eq!(by_id, got);

    let (status, item_tasks) = s.get("/tasks/catalog-item/movie%201%2F%C3%BCn%C3%AF").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item_tasks["tasks"].as_array().unwrap().len(), 1);

    let (status, cancelled) = s.delete(key_path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    let (status, _) = s.delete(key_path).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A new task for the key after the first ended.
    let (status, fresh) = s.post(key_path, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(fresh["task_id"], created["task_id"]);
    let (_, item_tasks) = s.get("/tasks/catalog-item/movie%201%2F%C3%BCn%C3%AF").await;
    let statuses: Vec<&str> = item_tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "pending"]);

    let (status, _) = s
        .get("/tasks/catalog-item/movie%201%2F%C3%BCn%C3%AF/product/adbreaks/version/9")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.get("/tasks/catalog-item/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn history_lists_every_transition() {
    let s = Server::with_runner().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "adbreaks", "1").await;
    let id = task["task_id"].as_str().unwrap();
    s.wait_for(id, |t| !t.status().is_active()).await;
    let (status, history) = s.get(&format!("/task/{id}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let entries = history["history"].as_array().unwrap();
    assert_eq!(entries.first().unwrap()["event"], "created");
    assert!(entries.first().unwrap()["from"].is_null());
    assert_eq!(entries.last().unwrap()["to"], "done");
    let steps: Vec<&str> = entries.iter().filter_map(|e| e["step"].as_str()).collect();
    for step in ["s3_check", "probe", "length_gate", "analyze"] {
        assert!(steps.contains(&step), "{step} missing from {history}");
    }
    assert!(
        entries
            .iter()
            .all(|e| e["at"].as_str().unwrap().ends_with('Z') && e["attempt"].is_u64())
    );
}

#[tokio::test]
async fn the_three_contract_failures_carry_their_exact_messages() {
    let s = Server::with_runner().await;
    let cases = [
        (
            "missing",
            "s3://b/missing.mp4",
            "asset_not_found",
            "Asset not found in the provided S3 location.",
        ),
        (
            "corrupt",
            "s3://b/corrupt.mp4",
            "probe_failed",
            "Probe failed with error = Invalid data found when processing input",
        ),
        (
            "short",
            "s3://b/short.mp4",
            "asset_too_short",
            "Asset shorter than the minimum required length.",
        ),
    ];
    for (id, url, code, message) in cases {
        s.ingest(id, url).await;
        let task = s.create(id, "adbreaks", "1").await;
        let task_id = task["task_id"].as_str().unwrap();
        s.wait_for(task_id, |t| !t.status().is_active()).await;
        let (_, body) = s.get(&format!("/task/{task_id}")).await;
        assert_eq!(body["status"], "failed", "{body}");
        assert_eq!(body["error_code"], code);
        assert_eq!(body["error"], message);
        assert_eq!(body["attempt"], 1, "permanent failures are not retried");
        assert_eq!(body["error_detail"]["code"], code, "{body}");
        if code == "asset_too_short" {
            // The contract's message is fixed; the figures are in the detail.
            assert_eq!(body["error_detail"]["duration_secs"], 3.0, "{body}");
            assert_eq!(body["error_detail"]["minimum_secs"], 600.0, "{body}");
            assert_eq!(
                body["probe"],
                json!({"ok": true}),
                "the probe's output is shown"
            );
        }
        if code == "asset_not_found" {
            assert!(body["probe"].is_null(), "no probe ran: {body}");
        }
        let (_, history) = s.get(&format!("/task/{task_id}/history")).await;
        assert_eq!(
            history["history"].as_array().unwrap().last().unwrap()["error_code"],
            code
        );
    }
}

#[tokio::test]
async fn delete_stops_a_running_step() {
    let mut s = Server::with_runner().await;
    s.ingest("movie-1", "s3://b/one.mp4").await;
    let task = s.create("movie-1", "markers", "1").await;
    let id = task["task_id"].as_str().unwrap();
    s.wait_for(id, |t| t.current_step() == Some(Step::Analyze))
        .await;
    assert_eq!(s.probes.stopped(), 0);
    let (status, body) = s.delete(&format!("/task/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    // Either still processing with the cancel recorded, or already cancelled.
    assert!(
        (body["status"] == "processing" && body["cancel_requested"] == true)
            || body["status"] == "cancelled",
        "{body}"
    );
    let done = s.wait_for(id, |t| !t.status().is_active()).await;
    assert_eq!(done.status(), Status::Cancelled);
    assert_eq!(s.probes.stopped(), 1, "the hanging step was stopped");
    let (_, body) = s.get(&format!("/task/{id}")).await;
    assert_eq!(body["status"], "cancelled");
    s.stop_runner().await;
}
