//! `/webhooks`: a tenant's subscriptions, their deliveries, and re-sending a failed one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use task_core::ids::TenantId;
use task_core::store::PageRequest;
use task_core::time::{Clock, SystemClock};
use task_core::webhooks::{DeliveryId, DeliveryState, Webhook, WebhookEvent, WebhookId};
use task_webhooks::{UrlPolicy, WebhookError, generate_secret};

use crate::body::{ApiPath, Fields, JsonBody, RawQuery, check, parse_int, path_param};
use crate::error::{ApiError, FieldError, MessageBody, ValidationErrorBody};
use crate::state::{ApiState, Tenant};
pub use task_api::webhooks::{
    CreatedWebhookView, DeliveryPage, DeliveryView, NewWebhookBody, WebhookList, WebhookView,
};

/// The most subscriptions a tenant may have.
const MAX_WEBHOOKS: usize = 20;
/// The largest page of deliveries.
const MAX_PAGE: u64 = 500;

/// Subscribes `url` to task events. The URL is checked now (http or https; its host must
/// resolve to public addresses unless the operator allows private ones) and again at every
/// connection. The answer holds the signing secret, shown only here.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    request_body = NewWebhookBody,
    responses(
        (status = 201, description = "Created; keep the secret", body = CreatedWebhookView),
        (status = 401, body = MessageBody), (status = 409, body = MessageBody),
        (status = 413, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn post_webhook(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let mut event_errors = Vec::new();
    let mut fields = Fields::of(&body, vec!["body".into()], &mut errors);
    let mut url = None;
    let mut events = WebhookEvent::ENDS.to_vec();
    if let Some(fields) = fields.as_mut() {
        fields.deny_unknown(&["url", "events"]);
        url = fields.string("url", true).map(str::to_owned);
        if let Some(names) = fields.strings("events") {
            events.clear();
            for (i, name) in names.iter().enumerate() {
                match WebhookEvent::parse(name) {
                    Ok(event) => events.push(event),
                    Err(e) => event_errors.push(FieldError::new(
                        vec!["body".into(), "events".into(), i.into()],
                        e.to_string(),
                        "enum",
                    )),
                }
            }
            if names.is_empty() {
                event_errors.push(FieldError::new(
                    vec!["body".into(), "events".into()],
                    "List should have at least 1 item",
                    "too_short",
                ));
            }
        }
    }
    drop(fields);
    errors.extend(event_errors);
    check(errors)?;
    let url = url.ok_or_else(|| ApiError::Internal("webhook url lost".into()))?;
    check_url(&state.config.webhook_policy, &url).await?;
    events.sort_unstable();
    events.dedup();
    if state.store.list_webhooks(&tenant).await?.len() >= MAX_WEBHOOKS {
        return Err(ApiError::Conflict(format!(
            "Tenant {tenant} already has {MAX_WEBHOOKS} webhooks, the most allowed: delete one first"
        )));
    }
    let webhook = Webhook {
        id: WebhookId::generate(),
        tenant,
        url,
        events,
        secret: generate_secret(),
        created_at: SystemClock.now(),
    };
    state.store.put_webhook(webhook.clone()).await?;
    let view = CreatedWebhookView {
        webhook: WebhookView::of(&webhook),
        secret: webhook.secret,
    };
    Ok((StatusCode::CREATED, Json(view)))
}

async fn check_url(policy: &UrlPolicy, url: &str) -> Result<(), ApiError> {
    match policy.check(url).await {
        Ok(_) => Ok(()),
        Err(err @ (WebhookError::InvalidUrl { .. } | WebhookError::ForbiddenAddress { .. })) => {
            Err(ApiError::field(FieldError::new(
                vec!["body".into(), "url".into()],
                err.to_string(),
                "url_refused",
            )))
        }
        Err(other) => Err(ApiError::Internal(other.to_string())),
    }
}

/// The tenant's subscriptions, oldest first (without their secrets).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList), (status = 401, body = MessageBody)))]
pub(crate) async fn list_webhooks(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = state.store.list_webhooks(&tenant).await?;
    Ok(Json(WebhookList {
        webhooks: webhooks.iter().map(WebhookView::of).collect(),
    }))
}

fn webhook_id(raw: &str, errors: &mut Vec<FieldError>) -> Option<WebhookId> {
    path_param::<WebhookId>("webhook_id", raw, errors)
}

async fn load(state: &ApiState, tenant: &TenantId, id: WebhookId) -> Result<Webhook, ApiError> {
    state
        .store
        .get_webhook(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Webhook {id} not found")))
}

/// One subscription.
#[utoipa::path(get, path = "/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The subscription")),
    responses(
        (status = 200, body = WebhookView), (status = 401, body = MessageBody),
        (status = 404, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn get_webhook(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let mut errors = Vec::new();
    let id = webhook_id(&raw, &mut errors);
    check(errors)?;
    let id = id.ok_or_else(|| ApiError::Internal("webhook id lost".into()))?;
    Ok(Json(WebhookView::of(&load(&state, &tenant, id).await?)))
}

/// Deletes a subscription and its deliveries (those pending are not sent).
#[utoipa::path(delete, path = "/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The subscription")),
    responses(
        (status = 204, description = "Deleted"), (status = 401, body = MessageBody),
        (status = 404, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn delete_webhook(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut errors = Vec::new();
    let id = webhook_id(&raw, &mut errors);
    check(errors)?;
    let id = id.ok_or_else(|| ApiError::Internal("webhook id lost".into()))?;
    if state.store.delete_webhook(&tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("Webhook {id} not found")))
    }
}

/// A subscription's deliveries, newest first, with their attempts and last error. Query:
/// `state` (`pending`, `delivered` or `failed`), `limit` (1-500, default 50), `cursor` (the
/// `next_cursor` of the previous page).
#[utoipa::path(get, path = "/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "The subscription"),
        ("state" = Option<String>, Query, description = "Only deliveries in this state: pending, delivered or failed"),
        ("limit" = Option<u64>, Query, description = "Page size, 1-500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = DeliveryPage), (status = 401, body = MessageBody),
        (status = 404, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn list_deliveries(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(raw): ApiPath<String>,
    query: RawQuery,
) -> Result<Json<DeliveryPage>, ApiError> {
    let mut errors = Vec::new();
    let id = webhook_id(&raw, &mut errors);
    let wanted = query.get("state", &mut errors, |raw| {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
        .ok_or_else(|| {
            (
                "Input should be 'pending', 'delivered' or 'failed'".to_owned(),
                "enum",
            )
        })
    });
    let limit = query
        .get("limit", &mut errors, |r| parse_int(r, 1, MAX_PAGE))
        .unwrap_or(50);
    let cursor = query.get("cursor", &mut errors, |raw| {
        DeliveryId::parse(raw)
            .map(|_| raw.to_owned())
            .map_err(|e| (e.to_string(), "value_error"))
    });
    check(errors)?;
    let id = id.ok_or_else(|| ApiError::Internal("webhook id lost".into()))?;
    load(&state, &tenant, id).await?;
    let request = PageRequest {
        after: cursor,
        limit: usize::try_from(limit).unwrap_or(50),
    };
    let page = state
        .store
        .list_deliveries(&tenant, id, wanted, &request)
        .await?;
    Ok(Json(DeliveryPage {
        deliveries: page.items.iter().map(DeliveryView::of).collect(),
        next_cursor: page.next,
    }))
}

/// Sends a delivered or failed delivery again, at once, with a new retry window and the same
/// delivery id. 409 while it is pending (it is retried by itself).
#[utoipa::path(post, path = "/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
    tag = "webhooks",
    params(
        ("webhook_id" = String, Path, description = "The subscription"),
        ("delivery_id" = String, Path, description = "The delivery"),
    ),
    responses(
        (status = 202, description = "Due again", body = DeliveryView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 409, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn resend_delivery(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((raw_webhook, raw_delivery)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    let webhook = webhook_id(&raw_webhook, &mut errors);
    let delivery = path_param::<DeliveryId>("delivery_id", &raw_delivery, &mut errors);
    check(errors)?;
    let (Some(webhook), Some(delivery)) = (webhook, delivery) else {
        return Err(ApiError::Internal("path parameters lost".into()));
    };
    let resent = state
        .store
        .resend_delivery(&tenant, webhook, delivery)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::of(&resent))))
}
