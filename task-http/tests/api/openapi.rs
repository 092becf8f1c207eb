use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{KEY_A, Server};

/// Checks `value` against `schema` (types, required fields, properties, items, refs,
/// oneOf/anyOf/allOf), collecting what does not match.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "unresolved {reference}");
        return validate(doc, target, value, at, errors);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let fits = options.iter().any(|option| {
                let mut inner = Vec::new();
                validate(doc, option, value, at, &mut inner);
                inner.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: {value} matches none of {key}"));
            }
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for part in all {
            validate(doc, part, value, at, errors);
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "null" => value.is_null(),
            _ => false,
        });
        if !fits {
            errors.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
    }
    if let (Some(object), Some(required)) = (value.as_object(), schema["required"].as_array()) {
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                errors.push(format!("{at}: required field {name} missing"));
            }
        }
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for (name, property) in properties {
            if let Some(field) = object.get(name) {
                validate(doc, property, field, &format!("{at}.{name}"), errors);
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(doc, schema, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The routes of the contract, as the document must list them.
const CONTRACT: [(&str, &str); 18] = [
    ("put", "/catalog/v1/item"),
    ("get", "/catalog/v1/item"),
    ("get", "/catalog/v1/item/{type}/{inventory_id}"),
    ("delete", "/catalog/v1/item/{type}/{inventory_id}"),
    ("post", "/task"),
    ("get", "/task/{task_id}"),
    ("delete", "/task/{task_id}"),
    ("get", "/task/{task_id}/history"),
    ("get", "/task/{task_id}/events"),
    (
        "post",
        "/tasks/catalog-item/{inventory_id}/product/{product}/version/{version}",
    ),
    (
        "get",
        "/tasks/catalog-item/{inventory_id}/product/{product}/version/{version}",
    ),
    (
        "delete",
        "/tasks/catalog-item/{inventory_id}/product/{product}/version/{version}",
    ),
    ("get", "/tasks/catalog-item/{inventory_id}"),
    ("post", "/tasks/batch"),
    ("get", "/results/{product}/{inventory_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn every_documented_route_exists_and_answers_per_its_schema() {
    let s = Server::with_runner().await;
    let (status, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in CONTRACT {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} not documented"
        );
    }
    assert_eq!(doc, s.api.openapi(), "the served document is the built one");

    // Real resources for the path parameters: an item with a done task and its result.
    s.ingest("movie-1", "s3://b/one.mp4").await;
    s.ingest("movie-2", "s3://b/two.mp4").await;
    let task = s.create("movie-1", "adbreaks", "1.0").await;
    let task_id = task["task_id"].as_str().unwrap().to_owned();
    s.wait_for(&task_id, |t| !t.status().is_active()).await;
    let fill = |path: &str| {
        path.replace("{task_id}", &task_id)
            .replace("{type}", "standalone")
            .replace("{inventory_id}", "movie-2")
            .replace("{product}", "adbreaks")
            .replace("{version}", "1.0")
    };
    let result_path = "/results/adbreaks/movie-1?version=1.0".to_owned();
    let bodies = |method: &str, path: &str| -> Option<Value> {
        match (method, path) {
            ("put", "/catalog/v1/item") => Some(
                json!({"id": "movie-3", "type": "episode", "title": "t", "asset_url": "s3://b/k"}),
            ),
            ("post", "/task") => {
                Some(json!({"inventory_id": "movie-2", "product": "adbreaks", "version": "2"}))
            }
            ("post", "/tasks/batch") => Some(
                json!({"tasks": [{"inventory_id": "movie-2", "product": "adbreaks", "version": "3"}, {"inventory_id": "x", "product": "adbreaks", "version": "3"}]}),
            ),
            ("post", _) => Some(json!({"priority": "high"})),
            _ => None,
        }
    };
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = if path.starts_with("/results/") {
                result_path.clone()
            } else {
                fill(path)
            };
            calls.push((method.clone(), path.clone(), concrete));
        }
    }
    // Deletes last, so the other routes find what they address.
    calls.sort_by_key(|(method, _, _)| method == "delete");
    let mut checked = 0;
    let mut failures = Vec::new();
    for (method, template, concrete) in calls {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut request = s
            .http
            .request(m, s.url(&concrete))
            .header("X-API-Key", KEY_A);
        if let Some(body) = bodies(&method, &template) {
            request = request.json(&body);
        }
        let resp = request.send().await.unwrap();
        let status = resp.status();
        let documented = &doc["paths"][&template][&method]["responses"][status.as_str()];
        assert!(
            !documented.is_null(),
            "{method} {concrete} answered {status}, not documented"
        );
        if template.ends_with("/events") {
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            checked += 1;
            continue;
        }
        let body: Value = resp.json().await.unwrap();
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(
            !schema.is_null(),
            "{method} {template} {status}: no JSON schema"
        );
        validate(
            &doc,
            schema,
            &body,
            &format!("{method} {template} {status}"),
            &mut failures,
        );
        checked += 1;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked >= 18, "{checked}");

    // Error bodies validate against their documented schemas too.
    let (status, body) = s.post("/task", json!({"product": 1})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let schema =
        &doc["paths"]["/task"]["post"]["responses"]["422"]["content"]["application/json"]["schema"];
    validate(&doc, schema, &body, "422", &mut failures);
    let (status, body) = s
        .call(Method::GET, &format!("/task/{task_id}"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let schema = &doc["paths"]["/task/{task_id}"]["get"]["responses"]["401"]["content"]["application/json"]
        ["schema"];
    validate(&doc, schema, &body, "401", &mut failures);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The document states what the server enforces: every refusal a route can give is documented,
/// the health routes need no key, ids and enums are constrained, task bodies are closed.
#[tokio::test]
async fn the_document_is_the_servers_contract() {
    let s = Server::start().await;
    let doc = s.api.openapi();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = ["/healthz", "/readyz", "/openapi.json"].contains(&path.as_str());
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["400", "500"];
            if public {
                assert_eq!(op["security"], json!([]), "{method} {path} needs no key");
            } else {
                expected.extend(["401", "422", "503"]);
            }
            if op.get("requestBody").is_some() {
                expected.extend(["408", "413", "415"]);
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} documents {status}"
                );
            }
            for param in op["parameters"].as_array().into_iter().flatten() {
                let schema = &param["schema"];
                match param["name"].as_str().unwrap() {
                    "task_id" => assert_eq!(schema["format"], "uuid"),
                    "type" | "product" | "status" => assert!(schema["enum"].is_array(), "{param}"),
                    "inventory_id" | "version" | "parent_id" => {
                        assert!(schema["pattern"].is_string(), "{param}")
                    }
                    "page_size" => assert_eq!(
                        (&schema["minimum"], &schema["maximum"]),
                        (&json!(1), &json!(1000))
                    ),
                    _ => {}
                }
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NewTaskBody"]["additionalProperties"], json!(false));
    assert_eq!(
        schemas["NewTaskBody"]["properties"]["priority"]["enum"],
        json!(["high", "medium", "low", null])
    );
    assert_eq!(
        schemas["ItemBody"]["properties"]["asset_url"]["format"],
        "asset-url"
    );
    let parent = &schemas["ItemBody"]["properties"]["parent_id"];
    assert_eq!(parent["type"], json!(["string", "null"]));
    assert!(parent["pattern"].is_string());
    let put_item = &doc["paths"]["/catalog/v1/item"]["put"]["responses"];
    assert!(
        put_item["409"].is_object(),
        "a type change that strands children"
    );
    let children = &put_item["201"]["links"]["Children"];
    assert_eq!(children["parameters"]["parent_id"], "$response.body#/id");
    assert_eq!(
        doc["paths"]["/catalog/v1/item"]["get"]["operationId"], children["operationId"],
        "the link names the listing"
    );
}
