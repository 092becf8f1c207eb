//! Webhook subscriptions, their deliveries, and what a receiver gets.

use serde::{Deserialize, Serialize};
use task_core::webhooks::{Delivery, Webhook};
use utoipa::ToSchema;

use crate::views::{TaskView, rfc3339};

/// The body of `POST /webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewWebhookBody {
    /// Where to POST: an http or https URL whose host resolves to public addresses only
    /// (unless the operator allows private ones). Redirects are not followed.
    pub url: String,
    /// The events wanted: `task.done`, `task.failed`, `task.cancelled`, and
    /// `task.status_changed` (every status change, creation included). Default: the three ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

impl NewWebhookBody {
    /// A subscription of `url` to the three ends (done, failed, cancelled).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            events: None,
        }
    }

    /// The same for `events` instead.
    pub fn with_events(mut self, events: &[&str]) -> Self {
        self.events = Some(events.iter().map(|e| (*e).to_owned()).collect());
        self
    }
}

/// A subscription as listed (its secret is shown only once, at creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// Its id.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// The events it gets.
    pub events: Vec<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

impl WebhookView {
    /// The view of `webhook`, without its secret.
    pub fn of(webhook: &Webhook) -> Self {
        Self {
            id: webhook.id.to_string(),
            url: webhook.url.clone(),
            events: webhook
                .events
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            created_at: rfc3339(webhook.created_at),
        }
    }
}

/// The answer to `POST /webhooks`: the subscription and its signing secret, shown only here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhookView {
    /// The subscription.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The HMAC-SHA256 key of the `Webhook-Signature` header. Keep it: it is not shown again.
    pub secret: String,
}

/// `GET /webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// The tenant's subscriptions, oldest first.
    pub webhooks: Vec<WebhookView>,
}

/// One delivery of an event to a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// Its id: the `Webhook-Id` header, the same on every attempt.
    pub id: String,
    /// The task.
    pub task_id: String,
    /// The event.
    pub event: String,
    /// The status the task reached.
    pub status: String,
    /// When it reached it.
    pub occurred_at: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// While pending: when the next attempt is due.
    pub next_attempt_at: Option<String>,
    /// When the last attempt started.
    pub last_attempt_at: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the receiver acknowledged it.
    pub delivered_at: Option<String>,
}

impl DeliveryView {
    /// The view of `delivery`.
    pub fn of(delivery: &Delivery) -> Self {
        Self {
            id: delivery.id.to_string(),
            task_id: delivery.task_id.to_string(),
            event: delivery.event.as_str().to_owned(),
            status: delivery.status.as_str().to_owned(),
            occurred_at: rfc3339(delivery.occurred_at),
            state: delivery.state.as_str().to_owned(),
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at.map(rfc3339),
            last_attempt_at: delivery.last_attempt_at.map(rfc3339),
            last_error: delivery.last_error.clone(),
            delivered_at: delivery.delivered_at.map(rfc3339),
        }
    }
}

/// `GET /webhooks/{id}/deliveries`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    /// This page's deliveries.
    pub deliveries: Vec<DeliveryView>,
    /// The `cursor` of the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The JSON body POSTed to a receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// The delivery's id (also the `Webhook-Id` header): drop repeats of an id you have seen.
    pub delivery_id: String,
    /// The subscription.
    pub webhook_id: String,
    /// The event (also the `Webhook-Event` header).
    pub event: String,
    /// When the task reached the status (RFC 3339).
    pub occurred_at: String,
    /// The task as `GET /task/{id}` returns it when the delivery is sent.
    pub task: TaskView,
}
