//! The OpenAPI document: paths come from the handlers' annotations as they are mounted, so the
//! document lists exactly the routes the router serves.

use axum::Json;
use axum::extract::State;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, LocItem, MessageBody, ValidationErrorBody};
use crate::state::ApiState;

/// The static part of the document: info, tags, security schemes and shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Media Task API",
        description = "Catalog, tasks and results of the media task engine. Authenticate with an \
API key in the `X-API-Key` header or the `key` query parameter; another tenant's resources answer \
404. Errors are JSON: 422 `{\"detail\": [{\"loc\", \"msg\", \"type\"}]}` for invalid input \
(malformed JSON, wrong types, invalid ids, products that are not enabled, unknown fields in task \
bodies); `{\"detail\": \"message\"}` for 401, 404, 409, 413 and 503. Catalog items keep unknown \
fields as given; task creation bodies refuse them. Unknown query parameters are ignored.",
    ),
    modifiers(&Security),
    components(schemas(FieldError, LocItem, MessageBody, ValidationErrorBody)),
    tags(
        (name = "catalog", description = "The tenant's catalog items"),
        (name = "tasks", description = "Tasks by id, batches, history, events and long-poll"),
        (name = "tasks by key", description = "Tasks by (inventory id, product, version)"),
        (name = "results", description = "Analysis results"),
        (name = "webhooks", description = "Subscriptions to task events, their deliveries, re-sending"),
        (name = "health", description = "Liveness, readiness and this document (no key needed)"),
    )
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "api_key_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("key"))),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("api_key_header", Vec::<String>::new()),
            SecurityRequirement::new("api_key_query", Vec::<String>::new()),
        ]);
    }
}

/// This document, as JSON.
#[utoipa::path(get, path = "/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn openapi_json(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(state.openapi.get().cloned().unwrap_or_default())
}
