//! Webhook subscriptions and their durable outbox of deliveries.
//!
//! A store keeps each tenant's [`Webhook`]s. When a task's status changes, the store writes a
//! [`Delivery`] for every subscription that wants the change ([`deliveries_for`]) in the same
//! atomic write as the transition, so a crash between the transition and the send loses
//! nothing. A dispatcher takes due deliveries with a lease ([`Delivery::take`]), sends them, and
//! records each attempt ([`Delivery::record`]); a lease that runs out (the dispatcher died
//! mid-send) makes the delivery due again, with the same id. The rules are pure functions here,
//! so every store applies the same ones.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{TaskId, TenantId, ValidationError};
use crate::store::{Page, PageRequest, StoreError};
use crate::task::{HistoryEntry, Status};
use crate::time::Timestamp;

macro_rules! v7_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh id; ids made later sort after earlier ones.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Parses the canonical hyphenated form, accepting only UUIDv7.
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                let uuid = uuid::Uuid::parse_str(value)
                    .map_err(|e| ValidationError::new($field, value, e.to_string()))?;
                if uuid.get_version_num() != 7 {
                    return Err(ValidationError::new($field, value, "must be a version-7 UUID"));
                }
                Ok(Self(uuid))
            }

            /// The 16 bytes of the id, which sort in creation order.
            pub fn to_bytes(self) -> [u8; 16] {
                *self.0.as_bytes()
            }

            /// Rebuilds an id from its bytes.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(uuid::Uuid::from_bytes(bytes))
            }

            /// The id as a UUID.
            pub fn as_uuid(self) -> uuid::Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

v7_id!(
    /// A webhook subscription's id (UUIDv7).
    WebhookId,
    "webhook_id"
);
v7_id!(
    /// A delivery's id (UUIDv7): the same on every attempt, so receivers can drop repeats.
    DeliveryId,
    "delivery_id"
);

/// What a subscription wants to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// A task ended done.
    #[serde(rename = "task.done")]
    TaskDone,
    /// A task ended failed.
    #[serde(rename = "task.failed")]
    TaskFailed,
    /// A task ended cancelled.
    #[serde(rename = "task.cancelled")]
    TaskCancelled,
    /// Any status change, creation included (pending, processing, and the ends that the
    /// subscription does not ask for by name).
    #[serde(rename = "task.status_changed")]
    TaskStatusChanged,
}

impl WebhookEvent {
    /// Every event.
    pub const ALL: [WebhookEvent; 4] = [
        WebhookEvent::TaskDone,
        WebhookEvent::TaskFailed,
        WebhookEvent::TaskCancelled,
        WebhookEvent::TaskStatusChanged,
    ];

    /// The events a subscription gets when it names none: the three ends.
    pub const ENDS: [WebhookEvent; 3] = [
        WebhookEvent::TaskDone,
        WebhookEvent::TaskFailed,
        WebhookEvent::TaskCancelled,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::TaskDone => "task.done",
            WebhookEvent::TaskFailed => "task.failed",
            WebhookEvent::TaskCancelled => "task.cancelled",
            WebhookEvent::TaskStatusChanged => "task.status_changed",
        }
    }

    /// The event named `name`.
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| {
                ValidationError::new(
                    "event",
                    name,
                    "must be one of task.done, task.failed, task.cancelled, task.status_changed",
                )
            })
    }

    /// The named event for a task that reached `status`, if it has one.
    fn ending(status: Status) -> Option<Self> {
        match status {
            Status::Done => Some(WebhookEvent::TaskDone),
            Status::Failed => Some(WebhookEvent::TaskFailed),
            Status::Cancelled => Some(WebhookEvent::TaskCancelled),
            Status::Pending | Status::Processing => None,
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant's subscription: where to POST which events, signed with which secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// The owner; only this tenant's tasks are delivered to it.
    pub tenant: TenantId,
    /// The receiver (http or https, checked by whoever accepts it).
    pub url: String,
    /// The events wanted, sorted, without repeats.
    pub events: Vec<WebhookEvent>,
    /// The HMAC key of the signatures.
    pub secret: String,
    /// When it was created.
    pub created_at: Timestamp,
}

impl Webhook {
    /// The event this subscription gets when a task goes from `before` (None: it was just
    /// created) to `after`; None if it wants nothing.
    pub fn event_for(&self, before: Option<Status>, after: Status) -> Option<WebhookEvent> {
        if before == Some(after) {
            return None;
        }
        WebhookEvent::ending(after)
            .filter(|e| self.events.contains(e))
            .or_else(|| {
                self.events
                    .contains(&WebhookEvent::TaskStatusChanged)
                    .then_some(WebhookEvent::TaskStatusChanged)
            })
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet acknowledged by the receiver; due at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt within the retry window failed; it can be re-sent.
    Failed,
}

impl DeliveryState {
    /// The lowercase name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One event for one subscription, kept until delivered or given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id, the same on every attempt.
    pub id: DeliveryId,
    /// The subscription.
    pub webhook_id: WebhookId,
    /// The subscription's (and the task's) tenant.
    pub tenant: TenantId,
    /// The task that changed.
    pub task_id: TaskId,
    /// The event.
    pub event: WebhookEvent,
    /// The status the task reached.
    pub status: Status,
    /// When the task reached it.
    pub occurred_at: Timestamp,
    /// Where the delivery stands.
    pub state: DeliveryState,
    /// Attempts started so far.
    pub attempts: u32,
    /// While pending: when it is due (during an attempt, when that attempt's lease ends).
    pub next_attempt_at: Option<Timestamp>,
    /// When the last attempt started.
    pub last_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the receiver acknowledged it.
    pub delivered_at: Option<Timestamp>,
    /// The start of the retry window: when it occurred, or when it was last re-sent.
    pub retry_since: Timestamp,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; try again at `next_at`.
    Retry {
        /// What went wrong.
        error: String,
        /// When to try again.
        next_at: Timestamp,
    },
    /// It failed and the retry window is over.
    GaveUp {
        /// What went wrong.
        error: String,
    },
}

/// The deliveries that `webhooks` get for one change of task `task_id` of `tenant`, as its
/// history `entry` records it (`from` None: the task was just created).
pub fn deliveries_for<'a>(
    webhooks: impl IntoIterator<Item = &'a Webhook>,
    tenant: &TenantId,
    task_id: TaskId,
    entry: &HistoryEntry,
) -> Vec<Delivery> {
    webhooks
        .into_iter()
        .filter(|w| w.tenant == *tenant)
        .filter_map(|w| {
            let event = w.event_for(entry.from, entry.to)?;
            Some(Delivery {
                id: DeliveryId::generate(),
                webhook_id: w.id,
                tenant: w.tenant.clone(),
                task_id,
                event,
                status: entry.to,
                occurred_at: entry.at,
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: Some(entry.at),
                last_attempt_at: None,
                last_error: None,
                delivered_at: None,
                retry_since: entry.at,
            })
        })
        .collect()
}

impl Delivery {
    /// When it ended: a delivered one when it was acknowledged, a failed one when its last
    /// attempt started; None while pending. A store's retention deletes ended deliveries by
    /// this time.
    pub fn ended_at(&self) -> Option<Timestamp> {
        match self.state {
            DeliveryState::Pending => None,
            DeliveryState::Delivered => self.delivered_at.or(self.last_attempt_at),
            DeliveryState::Failed => self.last_attempt_at.or(Some(self.occurred_at)),
        }
    }

    /// Whether a dispatcher may take it at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.state == DeliveryState::Pending && self.next_attempt_at.is_some_and(|at| at <= now)
    }

    /// Starts an attempt at `now`: counts it, and leases the delivery for `lease` (if the
    /// dispatcher dies, it is due again when the lease ends).
    pub fn take(&mut self, now: Timestamp, lease: Duration) {
        self.attempts = self.attempts.saturating_add(1);
        self.last_attempt_at = Some(now);
        self.next_attempt_at = Some(now.plus(lease));
    }

    /// Records how attempt number `attempt` ended. Refused when that attempt is no longer
    /// the current one (its lease ran out and another attempt started) or the delivery is
    /// no longer pending.
    pub fn record(
        &mut self,
        attempt: u32,
        outcome: AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if self.state != DeliveryState::Pending || self.attempts != attempt {
            return Err(StoreError::Conflict(format!(
                "delivery {}: attempt {attempt} is not the current one (attempts {}, {})",
                self.id,
                self.attempts,
                self.state.as_str()
            )));
        }
        match outcome {
            AttemptOutcome::Delivered => {
                self.state = DeliveryState::Delivered;
                self.delivered_at = Some(now);
                self.next_attempt_at = None;
                self.last_error = None;
            }
            AttemptOutcome::Retry { error, next_at } => {
                self.next_attempt_at = Some(next_at);
                self.last_error = Some(error);
            }
            AttemptOutcome::GaveUp { error } => {
                self.state = DeliveryState::Failed;
                self.next_attempt_at = None;
                self.last_error = Some(error);
            }
        }
        Ok(())
    }

    /// Makes a delivery due again at `now` with a new retry window; refused while it is
    /// still pending.
    pub fn resend(&mut self, now: Timestamp) -> Result<(), StoreError> {
        if self.state == DeliveryState::Pending {
            return Err(StoreError::Conflict(format!(
                "delivery {} is still pending: it will be attempted again by itself",
                self.id
            )));
        }
        self.state = DeliveryState::Pending;
        self.next_attempt_at = Some(now);
        self.retry_since = now;
        self.delivered_at = None;
        Ok(())
    }

    /// Parses a listing cursor (a delivery id).
    pub fn cursor(page: &PageRequest) -> Result<Option<DeliveryId>, StoreError> {
        page.after
            .as_deref()
            .map(DeliveryId::parse)
            .transpose()
            .map_err(|e| StoreError::Invalid {
                field: "cursor",
                reason: e.to_string(),
            })
    }
}

/// A store's subscriptions and outbox. Every task write that changes a status also writes
/// the deliveries of [`deliveries_for`], atomically with the change.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores `webhook`, replacing the one with the same id (static subscriptions from a
    /// configuration are put again at every start).
    async fn put_webhook(&self, webhook: Webhook) -> Result<(), StoreError>;

    /// The tenant's subscription `id`.
    async fn get_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
    ) -> Result<Option<Webhook>, StoreError>;

    /// The tenant's subscriptions, oldest first.
    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError>;

    /// Deletes the tenant's subscription `id` and its deliveries; false if there was none.
    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<bool, StoreError>;

    /// The subscription's deliveries, newest first, optionally only those in `state`.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        state: Option<DeliveryState>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError>;

    /// Takes up to `limit` due deliveries, oldest due first, skipping the subscriptions in
    /// `skip` (those with enough attempts in flight), each with [`Delivery::take`].
    async fn take_due_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[WebhookId],
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records how attempt `attempt` of a delivery ended ([`Delivery::record`]).
    async fn record_attempt(
        &self,
        webhook: WebhookId,
        id: DeliveryId,
        attempt: u32,
        outcome: AttemptOutcome,
    ) -> Result<Delivery, StoreError>;

    /// Makes a delivered or failed delivery of the tenant's due again ([`Delivery::resend`]).
    async fn resend_delivery(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, StoreError>;

    /// When the earliest pending delivery is due (or its attempt's lease ends), and when the
    /// oldest pending one occurred: (next due, oldest undelivered).
    async fn outbox_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError>;
}
