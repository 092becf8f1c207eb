//! The dispatcher: takes due deliveries from the store's outbox, POSTs them signed, and
//! records each attempt; retries with exponential backoff and jitter until the retry window
//! ends. Bounded in flight overall and per subscription, with a timeout per request, so a
//! slow or dead receiver holds a few slots and never the runner or other subscriptions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use task_api::views::{TaskView, rfc3339};
use task_api::webhooks::WebhookPayload;
use task_core::store::{Store, StoreError};
use task_core::telemetry::{self, DeliveryOutcome};
use task_core::time::Timestamp;
use task_core::webhooks::{AttemptOutcome, Delivery, WebhookId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::WebhookError;
use crate::policy::{UrlPolicy, is_public};
use crate::signature::{EVENT_HEADER, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// How the dispatcher sends.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Deliveries in flight at most, over all subscriptions. Default 32.
    pub max_in_flight: usize,
    /// Deliveries in flight at most per subscription. Default 4.
    pub max_in_flight_per_webhook: usize,
    /// How long a receiver may take to answer. Default 10 s.
    pub request_timeout: Duration,
    /// How long a delivery is retried before it is marked failed. Default 24 h.
    pub retry_for: Duration,
    /// The wait before the first retry; it doubles on each retry. Default 10 s.
    pub first_retry: Duration,
    /// The longest wait between retries. Default 1 h.
    pub max_retry: Duration,
    /// How often the outbox is read when nothing wakes the dispatcher. Default 1 s.
    pub poll_interval: Duration,
    /// Which receivers may be called.
    pub policy: UrlPolicy,
    /// The prefix of the `_links` in the task view (e.g. `https://tasks.example.com`).
    pub links_base: String,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 32,
            max_in_flight_per_webhook: 4,
            request_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(24 * 3600),
            first_retry: Duration::from_secs(10),
            max_retry: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
            policy: UrlPolicy::default(),
            links_base: String::new(),
        }
    }
}

/// Counters of what the dispatcher did since it started.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Deliveries acknowledged.
    pub delivered: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Deliveries given up (marked failed).
    pub failed: AtomicU64,
}

/// Sends the outbox of a store; run one or more per deployment (the store's lease on each
/// attempt keeps two dispatchers from sending the same delivery at once).
pub struct Dispatcher {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    config: DispatcherConfig,
    client: reqwest::Client,
    stats: Arc<DeliveryStats>,
}

/// The least time between two reads of the outbox woken by task changes.
const MIN_TAKE_GAP: Duration = Duration::from_millis(50);

impl Dispatcher {
    /// A dispatcher of `store`'s outbox.
    pub fn new(store: Arc<dyn Store>, config: DispatcherConfig) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .dns_resolver(config.policy.resolver())
            .user_agent(concat!("taskd-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                config,
                client,
                stats: Arc::new(DeliveryStats::default()),
            }),
        })
    }

    /// The dispatcher's counters.
    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.shared.stats.clone()
    }

    /// Sends until `stop` is cancelled. Attempts in flight then are abandoned: their leases
    /// run out and they are sent again, with the same delivery id.
    pub async fn run(self, stop: CancellationToken) {
        let shared = self.shared;
        let config = &shared.config;
        let mut changes = shared.store.subscribe();
        let mut in_flight: JoinSet<WebhookId> = JoinSet::new();
        let mut per_webhook: HashMap<WebhookId, usize> = HashMap::new();
        let lease = config.request_timeout * 2 + Duration::from_secs(10);
        let mut last_take = Instant::now() - MIN_TAKE_GAP;
        let mut last_warning: Option<Instant> = None;
        loop {
            let cap = config.max_in_flight_per_webhook;
            let skip: Vec<WebhookId> = per_webhook
                .iter()
                .filter(|(_, n)| **n >= cap)
                .map(|(id, _)| *id)
                .collect();
            // One take may return a single subscription's deliveries only: never more than
            // the room the busiest subscription not skipped has left.
            let busiest = per_webhook.values().filter(|n| **n < cap).max().copied();
            let limit = config
                .max_in_flight
                .saturating_sub(in_flight.len())
                .min(cap - busiest.unwrap_or(0));
            let mut full = false;
            if limit > 0 {
                last_take = Instant::now();
                match shared.store.take_due_deliveries(limit, lease, &skip).await {
                    Ok(taken) => {
                        full = taken.len() == limit;
                        for delivery in taken {
                            *per_webhook.entry(delivery.webhook_id).or_default() += 1;
                            let shared = shared.clone();
                            in_flight.spawn(async move {
                                let webhook = delivery.webhook_id;
                                shared.deliver(delivery).await;
                                webhook
                            });
                        }
                    }
                    Err(err) => {
                        if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
                            tracing::warn!(error = %err, "cannot read the webhook outbox; will retry");
                            last_warning = Some(Instant::now());
                        }
                    }
                }
            }
            let wait = if full && in_flight.len() < config.max_in_flight {
                Duration::ZERO
            } else {
                config.poll_interval
            };
            tokio::select! {
                () = stop.cancelled() => break,
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(webhook) = joined
                        && let Some(count) = per_webhook.get_mut(&webhook)
                    {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            per_webhook.remove(&webhook);
                        }
                    }
                }
                changed = changes.recv() => {
                    if matches!(changed, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        changes = shared.store.subscribe();
                    }
                    // A burst of changes makes one read of the outbox, not one each.
                    while changes.try_recv().is_ok() {}
                    let since = last_take.elapsed();
                    if since < MIN_TAKE_GAP {
                        tokio::time::sleep(MIN_TAKE_GAP - since).await;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
        in_flight.shutdown().await;
    }
}

/// Unix seconds now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What one attempt came to.
enum Sent {
    Delivered,
    /// Failed; may succeed later.
    Failed(String),
    /// Failed for good (the receiver is refused, or the task is gone).
    Refused(String),
    /// The subscription was deleted: nothing to record.
    Gone,
}

impl Shared {
    async fn deliver(&self, delivery: Delivery) {
        let span = tracing::info_span!(
            "webhook_delivery",
            delivery = %delivery.id,
            webhook = %delivery.webhook_id,
            task = %delivery.task_id,
            attempt = delivery.attempts,
        );
        async {
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = match self.attempt(&delivery).await {
                Ok(Sent::Gone) => return,
                Ok(Sent::Delivered) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("delivered");
                    AttemptOutcome::Delivered
                }
                Ok(Sent::Refused(error)) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "delivery refused; marked failed");
                    AttemptOutcome::GaveUp { error }
                }
                Ok(Sent::Failed(error)) => self.retry_or_give_up(&delivery, error),
                Err(err) => self.retry_or_give_up(&delivery, err.to_string()),
            };
            telemetry::webhook_delivery(match &outcome {
                AttemptOutcome::Delivered => DeliveryOutcome::Delivered,
                AttemptOutcome::Retry { .. } => DeliveryOutcome::Retried,
                AttemptOutcome::GaveUp { .. } => DeliveryOutcome::Failed,
            });
            match self
                .store
                .record_attempt(delivery.webhook_id, delivery.id, delivery.attempts, outcome)
                .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(StoreError::Conflict(reason)) => {
                    tracing::debug!(%reason, "attempt outlived its lease; another attempt owns it");
                }
                Err(err) => tracing::warn!(error = %err, "cannot record a delivery attempt"),
            }
        }
        .instrument(span)
        .await;
    }

    fn retry_or_give_up(&self, delivery: &Delivery, error: String) -> AttemptOutcome {
        let config = &self.config;
        let doubling = 2u32.saturating_pow(delivery.attempts.saturating_sub(1).min(20));
        let ceiling = config
            .first_retry
            .saturating_mul(doubling)
            .min(config.max_retry);
        let wait = ceiling.mul_f64(rand::rng().random_range(0.5..=1.0));
        let now = self.store_now();
        let next_at = now.plus(wait);
        if next_at > delivery.retry_since.plus(config.retry_for) {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "delivery failed; retry window over, marked failed");
            return AttemptOutcome::GaveUp {
                error: format!(
                    "{error} (gave up after {} attempts over {})",
                    delivery.attempts,
                    humantime_secs(config.retry_for)
                ),
            };
        }
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%error, retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry");
        AttemptOutcome::Retry { error, next_at }
    }

    fn store_now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Timestamp::from_millis(millis)
    }

    async fn attempt(&self, delivery: &Delivery) -> Result<Sent, WebhookError> {
        let store = &self.store;
        let Some(webhook) = store
            .get_webhook(&delivery.tenant, delivery.webhook_id)
            .await?
        else {
            return Ok(Sent::Gone);
        };
        let Some(task) = store.get_task(&delivery.tenant, delivery.task_id).await? else {
            return Ok(Sent::Refused(format!(
                "task {} no longer exists (removed by the retention)",
                delivery.task_id
            )));
        };
        let url = match url::Url::parse(&webhook.url) {
            Ok(url) => url,
            Err(e) => return Ok(Sent::Refused(format!("invalid URL: {e}"))),
        };
        // Address literals never reach the resolver that applies the policy.
        if let Some(host) = url.host_str()
            && let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && !self.config.policy.allow_private
            && !is_public(ip)
        {
            return Ok(Sent::Refused(
                WebhookError::ForbiddenAddress {
                    url: webhook.url.clone(),
                    address: ip,
                }
                .to_string(),
            ));
        }
        let payload = WebhookPayload {
            delivery_id: delivery.id.to_string(),
            webhook_id: webhook.id.to_string(),
            event: delivery.event.as_str().to_owned(),
            occurred_at: rfc3339(delivery.occurred_at),
            task: TaskView::of(&task, &self.config.links_base),
        };
        let body = serde_json::to_vec(&payload).map_err(|e| WebhookError::Client(e.to_string()))?;
        let timestamp = unix_now();
        let signature = sign(&webhook.secret, timestamp, &body);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, delivery.id.to_string())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_HEADER, delivery.event.as_str())
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return Ok(self.failure(&err)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Sent::Delivered);
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("none");
            return Ok(Sent::Failed(format!(
                "HTTP {status}: redirects are not followed (Location: {location})"
            )));
        }
        Ok(Sent::Failed(format!("HTTP {status}")))
    }

    fn failure(&self, err: &reqwest::Error) -> Sent {
        let mut source: Option<&dyn std::error::Error> = Some(err);
        while let Some(cause) = source {
            if let Some(refused @ WebhookError::ForbiddenAddress { .. }) =
                cause.downcast_ref::<WebhookError>()
            {
                return Sent::Refused(refused.to_string());
            }
            source = cause.source();
        }
        if err.is_timeout() {
            return Sent::Failed(format!(
                "no answer within {}",
                humantime_secs(self.config.request_timeout)
            ));
        }
        let mut message = err.to_string();
        let mut cause = std::error::Error::source(err);
        while let Some(inner) = cause {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            cause = inner.source();
        }
        Sent::Failed(message)
    }
}

/// `d` as `10s`, `24h`...
fn humantime_secs(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
