//! Tightens the generated OpenAPI document to what the server actually enforces, so that a
//! client (or a schema-driven tester) that follows the document is never refused with a 422:
//! enums, id patterns, uuid formats, page bounds, closed task bodies, the error responses of
//! every operation, and no security on the health routes. Rules that depend on the deployment
//! (enabled products, batch size) come from its [`ServiceConfig`].

use serde_json::{Map, Value, json};

use crate::config::ServiceConfig;

/// Characters no id may hold: C0 and C1 controls and the bidirectional controls.
const FORBIDDEN: &str = r"\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";
/// What Rust's `char::is_whitespace` calls whitespace, beyond the controls above.
const SPACES: &str = r" \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// An inventory id: 1-256 characters, no controls, not only whitespace.
fn inventory_id() -> Value {
    let pattern = format!("^[^{FORBIDDEN}]*[^{FORBIDDEN}{SPACES}][^{FORBIDDEN}]*$");
    json!({"type": "string", "minLength": 1, "maxLength": 256, "pattern": pattern})
}

/// An inventory id or null, described.
fn nullable_inventory_id(description: &str) -> Value {
    let mut schema = inventory_id();
    schema["type"] = json!(["string", "null"]);
    schema["description"] = json!(description);
    schema
}

/// An id the API hands out: a version-7 UUID.
fn v7_id(what: &str) -> Value {
    json!({"type": "string", "format": "uuid",
        "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "description": format!("{what}: a version-7 UUID as the API returns it")})
}

fn version() -> Value {
    json!({"type": "string", "pattern": "^[0-9A-Za-z._-]{1,64}$"})
}

fn products(config: &ServiceConfig) -> Value {
    let names: Vec<&str> = config.products.keys().map(|p| p.as_str()).collect();
    json!({"type": "string", "enum": names})
}

fn priority() -> Value {
    json!({"type": ["string", "null"], "enum": ["high", "medium", "low", null]})
}

/// An asset URL. Which ones a deployment accepts (S3 naming rules, `file://` under its media
/// root, per-tenant scopes) is more than a pattern can say exactly, so the document names the
/// rules and a format, `asset-url`, that schema-driven tools can map to a generator.
fn asset_url() -> Value {
    json!({
        "type": "string",
        "format": "asset-url",
        "description": "Where the video is: `s3://bucket/key` (bucket names and keys by the S3 \
            rules; `.`/`..` and empty key segments, `?` and `#` are refused), or `file:///path` \
            under the deployment's media root. A tenant with an asset scope may only name its \
            buckets, prefixes and directory. A refused URL gets a 422 that names the rule.",
    })
}

fn message(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/MessageBody"}}}})
}

fn invalid() -> Value {
    json!({"description": "Invalid input: each entry names the field", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrorBody"}}}})
}

/// Applies the rules to `doc` (the document as generated from the handlers).
pub(crate) fn apply(doc: &mut Value, config: &ServiceConfig) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if let Some(operation) = operation.as_object_mut() {
                    tighten_operation(path, method, operation, config);
                }
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        tighten_bodies(schemas, config);
    }
}

fn tighten_operation(
    path: &str,
    method: &str,
    op: &mut Map<String, Value>,
    config: &ServiceConfig,
) {
    let public = matches!(path, "/healthz" | "/readyz" | "/openapi.json");
    if public {
        op.insert("security".into(), json!([]));
    }
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for param in params {
            let name = param["name"].as_str().unwrap_or_default().to_owned();
            let schema = match name.as_str() {
                "task_id" => Some(v7_id("A task id")),
                "webhook_id" => Some(v7_id("A webhook id")),
                "delivery_id" => Some(v7_id("A delivery id")),
                "cursor" => Some(v7_id("The next_cursor of the previous page")),
                "limit" => Some(json!({"type": "integer", "minimum": 1, "maximum": 500})),
                "state" => Some(json!({"type": "string",
                    "enum": ["pending", "delivered", "failed"]})),
                "type" => Some(json!({"type": "string",
                    "enum": ["standalone", "series", "season", "episode"]})),
                "inventory_id" | "against" | "parent_id" => Some(inventory_id()),
                "product" => Some(products(config)),
                "version" => Some(version()),
                "page_num" => Some(json!({"type": "integer", "minimum": 1, "maximum": 1_000_000})),
                "page_size" => Some(json!({"type": "integer", "minimum": 1, "maximum": 1000})),
                "wait" => Some(json!({"type": "number", "minimum": 0})),
                "status" => Some(json!({"type": "string",
                    "enum": ["pending", "processing", "done", "failed", "cancelled"]})),
                "minimum_separation" | "maximum_separation" | "skip_first" | "skip_last" => {
                    Some(json!({"type": "number", "minimum": 0}))
                }
                _ => None,
            };
            if let Some(schema) = schema {
                param["schema"] = schema;
            }
        }
    }
    let has_body = op.contains_key("requestBody");
    let links = links(
        op.get("operationId")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else { return };
    let mut add = |status: &str, response: Value| {
        responses.entry(status.to_owned()).or_insert(response);
    };
    add(
        "400",
        json!({"description": "The HTTP request itself is malformed (answered by the HTTP layer, without a body)"}),
    );
    add(
        "500",
        message("An internal error; the body gives an id to find it in the service log"),
    );
    if !public {
        add(
            "401",
            message("No API key, an invalid one, or ambiguous credentials"),
        );
        add("422", invalid());
        add(
            "503",
            message("The store cannot serve now; retry after the Retry-After header's seconds"),
        );
    }
    if has_body {
        add(
            "408",
            message("The request body did not arrive within the body read timeout"),
        );
        add("413", message("The body is larger than the limit"));
        add("415", message("The body is not application/json"));
    }
    let _ = method;
    if let Some(links) = links {
        for status in ["200", "201"] {
            if let Some(response) = responses.get_mut(status) {
                response["links"] = links.clone();
            }
        }
    }
}

/// How the answer of one operation leads to others (OpenAPI links): what a client, or a
/// stateful tester, can do next with the ids it got.
fn links(operation_id: &str) -> Option<Value> {
    let item = json!({"type": "$response.body#/type", "inventory_id": "$response.body#/id"});
    let task = json!({"task_id": "$response.body#/task_id"});
    let key = json!({
        "inventory_id": "$response.body#/inventory_id",
        "product": "$response.body#/product",
        "version": "$response.body#/version",
    });
    let to = |operation: &str, parameters: &Value| json!({"operationId": operation, "parameters": parameters});
    Some(match operation_id {
        "put_item" => json!({
            "GetItem": to("get_item", &item),
            "DeleteItem": to("delete_item", &item),
            "ItemTasks": to("item_tasks", &json!({"inventory_id": "$response.body#/id"})),
            "Children": to("list_items", &json!({"parent_id": "$response.body#/id"})),
        }),
        "post_task" | "post_by_key" | "get_task" => json!({
            "GetTask": to("get_task", &task),
            "History": to("get_history", &task),
            "CancelTask": to("delete_task", &task),
            "ByKey": to("get_by_key", &key),
            "Result": to("get_result", &json!({
                "product": "$response.body#/product",
                "inventory_id": "$response.body#/inventory_id",
            })),
        }),
        _ => return None,
    })
}

fn tighten_bodies(schemas: &mut Map<String, Value>, config: &ServiceConfig) {
    if let Some(task) = schemas.get_mut("NewTaskBody") {
        task["properties"]["inventory_id"] = inventory_id();
        task["properties"]["product"] = products(config);
        task["properties"]["version"] = version();
        task["properties"]["priority"] = priority();
        task["additionalProperties"] = json!(false);
    }
    if let Some(body) = schemas.get_mut("PriorityBody") {
        body["properties"]["priority"] = priority();
        body["additionalProperties"] = json!(false);
    }
    if let Some(batch) = schemas.get_mut("BatchBody") {
        // Entries are checked one by one and an invalid entry is refused alone (its result
        // says why), so the body accepts any entry; NewTaskBody says what creates a task.
        batch["properties"]["tasks"] = json!({
            "type": "array",
            "maxItems": config.max_batch,
            "items": {"description": "An entry like the body of `POST /task` (NewTaskBody); \
                one that is not valid gets its own 422 result"},
        });
        batch["additionalProperties"] = json!(false);
    }
    if let Some(webhook) = schemas.get_mut("NewWebhookBody") {
        webhook["properties"]["url"] = json!({
            "type": "string",
            "format": "webhook-url",
            "description": "An http or https URL without credentials whose host resolves to \
                public addresses only (unless the deployment allows private ones: \
                webhooks.allow_private_addresses). A refused URL gets a 422 that names the \
                reason or the address.",
        });
        webhook["properties"]["events"] = json!({
            "type": ["array", "null"],
            "minItems": 1,
            "items": {"type": "string", "enum":
                ["task.done", "task.failed", "task.cancelled", "task.status_changed"]},
        });
        webhook["additionalProperties"] = json!(false);
    }
    if let Some(item) = schemas.get_mut("ItemBody") {
        item["properties"]["id"] = inventory_id();
        item["properties"]["type"] =
            json!({"type": "string", "enum": ["standalone", "series", "season", "episode"]});
        item["properties"]["asset_url"] = asset_url();
        item["properties"]["parent_id"] = nullable_inventory_id(
            "The inventory id of the item it belongs to: an episode's season, a season's series \
             (null or absent: none). It must be a live item of the tenant of that type, and not \
             the item itself; a standalone item and a series take none. One that is not gets a \
             422 naming it.",
        );
        // Other fields are kept as given, up to 32 levels deep; the times are read-only.
        for read_only in ["created_at", "updated_at", "deleted_at", "tenant"] {
            item["properties"][read_only] = json!({"not": {}, "description": "Read-only: refused"});
        }
    }
}
