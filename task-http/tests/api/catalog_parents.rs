//! `parent_id` of catalog items over HTTP: accepted and shown, validated with 422s naming the
//! field, children listed with `?parent_id=`, type changes that strand children refused (409).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{KEY_B, Server};

fn item(id: &str, item_type: &str, parent: Value) -> Value {
    json!({"id": id, "type": item_type, "title": id, "asset_url": "s3://bucket/x.mp4",
        "parent_id": parent})
}

async fn put_ok(s: &Server, id: &str, item_type: &str, parent: Value) -> Value {
    let (status, body) = s.put("/catalog/v1/item", item(id, item_type, parent)).await;
    assert!(status.is_success(), "{id}: {status} {body}");
    body
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

/// The one 422 entry of `body`: its loc, msg and type.
fn only_error(body: &Value) -> (Value, &str, &str) {
    let detail = body["detail"].as_array().unwrap();
    assert_eq!(detail.len(), 1, "{body}");
    let error = &detail[0];
    (
        error["loc"].clone(),
        error["msg"].as_str().unwrap(),
        error["type"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn parents_are_shown_and_children_listed_by_parent() {
    let s = Server::start().await;
    let series = put_ok(&s, "show", "series", Value::Null).await;
    assert!(series["parent_id"].is_null(), "{series}");
    let season = put_ok(&s, "show-s1", "season", json!("show")).await;
    assert_eq!(season["parent_id"], "show");
    for n in [3, 1, 2, 5, 4] {
        put_ok(&s, &format!("show-s1e{n}"), "episode", json!("show-s1")).await;
    }
    put_ok(&s, "movie", "standalone", Value::Null).await;
    // A missing parent_id is the same as null.
    let (status, body) = s
        .put(
            "/catalog/v1/item",
            json!({"id": "loose", "type": "episode", "title": "t", "asset_url": "s3://b/k"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["parent_id"].is_null());

    let (_, got) = s.get("/catalog/v1/item/episode/show-s1e2").await;
    assert_eq!(got["parent_id"], "show-s1");
    let (status, first) = s
        .get("/catalog/v1/item?parent_id=show-s1&page_size=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(ids(&first), ["show-s1e1", "show-s1e2"]);
    assert_eq!(first["has_next"], true);
    let (_, last) = s
        .get("/catalog/v1/item?parent_id=show-s1&page_size=2&page_num=3")
        .await;
    assert_eq!(ids(&last), ["show-s1e5"]);
    assert_eq!(last["has_next"], false);
    let (_, seasons) = s.get("/catalog/v1/item?parent_id=show").await;
    assert_eq!(ids(&seasons), ["show-s1"]);
    let (status, none) = s.get("/catalog/v1/item?parent_id=nowhere").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids(&none).is_empty());

    // Deleted children are left out unless asked for; a deleted parent keeps its children.
    s.delete("/catalog/v1/item/episode/show-s1e3").await;
    let (_, live) = s.get("/catalog/v1/item?parent_id=show-s1").await;
    assert_eq!(
        ids(&live),
        ["show-s1e1", "show-s1e2", "show-s1e4", "show-s1e5"]
    );
    let (_, all) = s
        .get("/catalog/v1/item?parent_id=show-s1&allow_deleted=true")
        .await;
    assert_eq!(ids(&all).len(), 5);
    s.delete("/catalog/v1/item/season/show-s1").await;
    let (_, kept) = s.get("/catalog/v1/item/episode/show-s1e1").await;
    assert_eq!(kept["parent_id"], "show-s1");
    let (_, still) = s.get("/catalog/v1/item?parent_id=show-s1").await;
    assert_eq!(ids(&still).len(), 4);
}

#[tokio::test]
async fn invalid_parents_are_refused_naming_the_field() {
    let s = Server::start().await;
    put_ok(&s, "show", "series", Value::Null).await;
    put_ok(&s, "s1", "season", json!("show")).await;
    let cases = [
        (
            item("e1", "episode", json!("show")),
            "parent_id \"show\" is a series; an episode's parent must be a season",
        ),
        (
            item("e1", "episode", json!("nowhere")),
            "parent_id \"nowhere\" is not in the catalog; ingest the season first",
        ),
        (
            item("e1", "episode", json!("e1")),
            "parent_id \"e1\" is the item itself; an item cannot be its own parent",
        ),
        (
            item("m", "standalone", json!("s1")),
            "parent_id \"s1\" given for a standalone; only an episode (in a season) and a \
             season (in a series) have a parent",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = s.put("/catalog/v1/item", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let (loc, msg, kind) = only_error(&answer);
        assert_eq!(loc, json!(["body", "parent_id"]));
        assert_eq!(msg, expected);
        assert_eq!(kind, "value_error");
    }
    for (bad, kind) in [(json!(7), "string_type"), (json!(""), "value_error")] {
        let (status, answer) = s.put("/catalog/v1/item", item("e1", "episode", bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let (loc, _, got) = only_error(&answer);
        assert_eq!((loc, got), (json!(["body", "parent_id"]), kind));
    }
    let (status, answer) = s.get("/catalog/v1/item?parent_id=").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(only_error(&answer).0, json!(["query", "parent_id"]));
    let (status, _) = s
        .get("/catalog/v1/item/episode/e1?allow_deleted=true")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    // Another tenant's season is answered as a missing one, and its children never show.
    let (status, _) = s
        .call(
            Method::PUT,
            "/catalog/v1/item",
            Some(KEY_B),
            Some(item("b-s1", "season", Value::Null)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = s
        .put("/catalog/v1/item", item("e2", "episode", json!("b-s1")))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        only_error(&answer).1,
        "parent_id \"b-s1\" is not in the catalog; ingest the season first"
    );
}

#[tokio::test]
async fn a_type_change_that_strands_children_is_a_conflict() {
    let s = Server::start().await;
    put_ok(&s, "s1", "season", Value::Null).await;
    put_ok(&s, "e1", "episode", json!("s1")).await;
    let (status, body) = s
        .put("/catalog/v1/item", item("s1", "standalone", Value::Null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["detail"],
        "\"s1\" has children (e.g. an episode \"e1\"), whose parent must be a season; it cannot \
         become a standalone: move or delete its children first"
    );
    // Moving the episode out frees the season.
    put_ok(&s, "e1", "episode", Value::Null).await;
    put_ok(&s, "s1", "standalone", Value::Null).await;
}
