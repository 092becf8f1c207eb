//! The `[webhooks]` settings, the static subscriptions of the configuration, and the
//! dispatcher every node runs (the store's lease on each attempt keeps nodes from sending the
//! same delivery at once).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use task_core::ids::TenantId;
use task_core::store::Store;
use task_core::time::{Clock, SystemClock};
use task_core::webhooks::{Webhook, WebhookEvent, WebhookId};
use task_webhooks::{Dispatcher, DispatcherConfig, UrlPolicy};
use tokio_util::sync::CancellationToken;

use crate::error::TaskdError;

/// `[webhooks]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksEntry {
    /// Also call loopback, private and link-local addresses (default false).
    pub allow_private_addresses: Option<bool>,
    /// Whether this node sends deliveries (default true).
    pub dispatch: Option<bool>,
    /// Deliveries in flight at most (default 32).
    pub max_in_flight: Option<usize>,
    /// Deliveries in flight at most per subscription (default 4).
    pub max_in_flight_per_webhook: Option<usize>,
    /// Seconds a receiver may take to answer (default 10).
    pub timeout_secs: Option<f64>,
    /// Hours a delivery is retried before it is marked failed (default 24).
    pub retry_hours: Option<f64>,
    /// Seconds before the first retry; doubled on each retry (default 10).
    pub first_retry_secs: Option<f64>,
    /// The longest wait between retries, in seconds (default 3600).
    pub max_retry_secs: Option<f64>,
    /// The prefix of the `_links` in delivered task views, e.g. `https://tasks.example.com`.
    pub links_base: Option<String>,
    /// Subscriptions that exist as long as the configuration names them.
    #[serde(default, rename = "static")]
    pub subscriptions: Vec<StaticWebhook>,
}

/// A `[[webhooks.static]]` subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticWebhook {
    /// Whose tasks.
    pub tenant: String,
    /// Where to POST.
    pub url: String,
    /// The events (default: task.done, task.failed, task.cancelled).
    pub events: Option<Vec<String>>,
    /// The signing secret (at least 16 characters).
    pub secret: String,
}

fn setting(field: &str, reason: impl ToString) -> TaskdError {
    TaskdError::Setting {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

fn secs(field: &str, value: Option<f64>, default: f64) -> Result<Duration, TaskdError> {
    let value = value.unwrap_or(default);
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            setting(
                field,
                format!("{value} is not a positive number of seconds"),
            )
        })
}

impl WebhooksEntry {
    /// The URL policy.
    pub fn policy(&self) -> UrlPolicy {
        UrlPolicy {
            allow_private: self.allow_private_addresses.unwrap_or(false),
        }
    }

    /// The dispatcher's settings, checked.
    pub fn dispatcher_config(&self) -> Result<DispatcherConfig, TaskdError> {
        let defaults = DispatcherConfig::default();
        let positive = |field: &str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(setting(field, "must be at least 1")),
            other => Ok(other.unwrap_or(default)),
        };
        Ok(DispatcherConfig {
            max_in_flight: positive("webhooks.max_in_flight", self.max_in_flight, 32)?,
            max_in_flight_per_webhook: positive(
                "webhooks.max_in_flight_per_webhook",
                self.max_in_flight_per_webhook,
                4,
            )?,
            request_timeout: secs("webhooks.timeout_secs", self.timeout_secs, 10.0)?,
            retry_for: secs(
                "webhooks.retry_hours",
                self.retry_hours.map(|h| h * 3600.0),
                24.0 * 3600.0,
            )?,
            first_retry: secs("webhooks.first_retry_secs", self.first_retry_secs, 10.0)?,
            max_retry: secs("webhooks.max_retry_secs", self.max_retry_secs, 3600.0)?,
            policy: self.policy(),
            links_base: self.links_base.clone().unwrap_or_default(),
            ..defaults
        })
    }

    /// The static subscriptions, checked (their URLs are resolved against the policy).
    pub async fn static_webhooks(&self) -> Result<Vec<Webhook>, TaskdError> {
        let policy = self.policy();
        let mut webhooks = Vec::new();
        for (i, entry) in self.subscriptions.iter().enumerate() {
            let field = format!("webhooks.static[{i}]");
            let tenant = TenantId::new(entry.tenant.clone())
                .map_err(|e| setting(&format!("{field}.tenant"), e))?;
            policy
                .check(&entry.url)
                .await
                .map_err(|e| setting(&format!("{field}.url"), e))?;
            if entry.secret.chars().count() < 16 {
                return Err(setting(
                    &format!("{field}.secret"),
                    "must be at least 16 characters",
                ));
            }
            let mut events = match &entry.events {
                None => WebhookEvent::ENDS.to_vec(),
                Some(names) => names
                    .iter()
                    .map(|n| WebhookEvent::parse(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| setting(&format!("{field}.events"), e))?,
            };
            events.sort_unstable();
            events.dedup();
            webhooks.push(Webhook {
                id: static_id(&tenant, &entry.url),
                tenant,
                url: entry.url.clone(),
                events,
                secret: entry.secret.clone(),
                created_at: SystemClock.now(),
            });
        }
        Ok(webhooks)
    }
}

/// A static subscription's id: the same for the same tenant and URL on every node and start,
/// shaped as a UUIDv7 (version and variant bits set) so that it parses like the others.
fn static_id(tenant: &TenantId, url: &str) -> WebhookId {
    let digest = Sha256::digest(format!("{tenant}\n{url}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    WebhookId::from_bytes(bytes)
}

/// Puts the static subscriptions, then starts the dispatcher unless this node does not
/// dispatch; cancel the token to stop it.
pub async fn start(
    store: Arc<dyn Store>,
    entry: &WebhooksEntry,
) -> Result<Option<(CancellationToken, tokio::task::JoinHandle<()>)>, TaskdError> {
    for webhook in entry.static_webhooks().await? {
        tracing::info!(tenant = %webhook.tenant, url = %webhook.url, id = %webhook.id, "static webhook");
        store.put_webhook(webhook).await?;
    }
    if !entry.dispatch.unwrap_or(true) {
        return Ok(None);
    }
    let dispatcher =
        Dispatcher::new(store, entry.dispatcher_config()?).map_err(|e| setting("webhooks", e))?;
    let stop = CancellationToken::new();
    let handle = tokio::spawn(dispatcher.run(stop.clone()));
    Ok(Some((stop, handle)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_ids_are_stable_v7_shaped_and_distinct() {
        let acme = TenantId::new("acme").expect("tenant");
        let a = static_id(&acme, "https://hooks.example.com/a");
        assert_eq!(a, static_id(&acme, "https://hooks.example.com/a"));
        assert_ne!(a, static_id(&acme, "https://hooks.example.com/b"));
        assert_eq!(WebhookId::parse(&a.to_string()), Ok(a));
    }

    #[test]
    fn bad_settings_are_named() {
        let entry = WebhooksEntry {
            timeout_secs: Some(-1.0),
            ..WebhooksEntry::default()
        };
        let err = entry.dispatcher_config().expect_err("negative").to_string();
        assert!(err.contains("webhooks.timeout_secs"), "{err}");
    }
}
