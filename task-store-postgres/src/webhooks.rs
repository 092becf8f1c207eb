//! [`WebhookStore`] for [`PostgresStore`]: the `webhooks` and `webhook_deliveries` tables.
//! Deliveries are inserted by the statements that write task changes (write.rs); here they
//! are taken (`FOR UPDATE SKIP LOCKED`, so dispatchers of several processes never take the
//! same one), recorded, listed and re-sent. The rules are task-core's pure functions.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use task_core::ids::TenantId;
use task_core::store::{Page, PageRequest, StoreError};
use task_core::task::Status;
use task_core::time::Timestamp;
use task_core::webhooks::{
    AttemptOutcome, Delivery, DeliveryId, DeliveryState, Webhook, WebhookEvent, WebhookId,
    WebhookStore,
};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::Ctx;
use crate::rows::{millis, task_id, timestamp};

const DELIVERY_COLUMNS: &str = "webhook_id, id, tenant, task_id, event, status, occurred_at, \
     state, attempts, next_attempt_at, last_attempt_at, last_error, delivered_at, retry_since";

fn webhook_from(ctx: &Ctx, row: &PgRow) -> Result<Webhook, StoreError> {
    let id: Uuid = row.get("id");
    let bad = |reason: String| ctx.corrupt("webhooks", id, reason);
    let events: Vec<String> = row.get("events");
    Ok(Webhook {
        id: WebhookId::from_bytes(id.into_bytes()),
        tenant: TenantId::new(row.get::<String, _>("tenant")).map_err(|e| bad(e.to_string()))?,
        url: row.get("url"),
        events: events
            .iter()
            .map(|e| WebhookEvent::parse(e))
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
        secret: row.get("secret"),
        created_at: timestamp(row.get("created_at")),
    })
}

fn delivery_from(ctx: &Ctx, row: &PgRow) -> Result<Delivery, StoreError> {
    let id: Uuid = row.get("id");
    let bad = |reason: String| ctx.corrupt("webhook_deliveries", id, reason);
    let status: String = row.get("status");
    let state = match row.get::<String, _>("state").as_str() {
        "pending" => DeliveryState::Pending,
        "delivered" => DeliveryState::Delivered,
        "failed" => DeliveryState::Failed,
        other => return Err(bad(format!("unknown state {other:?}"))),
    };
    let webhook: Uuid = row.get("webhook_id");
    Ok(Delivery {
        id: DeliveryId::from_bytes(id.into_bytes()),
        webhook_id: WebhookId::from_bytes(webhook.into_bytes()),
        tenant: TenantId::new(row.get::<String, _>("tenant")).map_err(|e| bad(e.to_string()))?,
        task_id: task_id(row.get("task_id")),
        event: WebhookEvent::parse(row.get("event")).map_err(|e| bad(e.to_string()))?,
        status: Status::ALL
            .into_iter()
            .find(|s| s.as_str() == status)
            .ok_or_else(|| bad(format!("unknown status {status:?}")))?,
        occurred_at: timestamp(row.get("occurred_at")),
        state,
        attempts: u32::try_from(row.get::<i32, _>("attempts")).unwrap_or(0),
        next_attempt_at: row.get::<Option<i64>, _>("next_attempt_at").map(timestamp),
        last_attempt_at: row.get::<Option<i64>, _>("last_attempt_at").map(timestamp),
        last_error: row.get("last_error"),
        delivered_at: row.get::<Option<i64>, _>("delivered_at").map(timestamp),
        retry_since: timestamp(row.get("retry_since")),
    })
}

/// Writes back what a rule of [`Delivery`] changed.
async fn save(ctx: &Ctx, conn: &mut PgConnection, d: &Delivery) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries
         SET state = $3, attempts = $4, next_attempt_at = $5, last_attempt_at = $6,
             last_error = $7, delivered_at = $8, retry_since = $9
         WHERE webhook_id = $1 AND id = $2",
    )
    .bind(d.webhook_id.as_uuid())
    .bind(d.id.as_uuid())
    .bind(d.state.as_str())
    .bind(i32::try_from(d.attempts).unwrap_or(i32::MAX))
    .bind(d.next_attempt_at.map(millis))
    .bind(d.last_attempt_at.map(millis))
    .bind(d.last_error.as_deref())
    .bind(d.delivered_at.map(millis))
    .bind(millis(d.retry_since))
    .execute(conn)
    .await
    .map_err(|e| ctx.db("writing a delivery", d.id, e))?;
    Ok(())
}

impl PostgresStore {
    /// Locks delivery `id` of `webhook` (of `tenant` if given), applies `change`, writes it.
    async fn change_delivery(
        &self,
        tenant: Option<&TenantId>,
        webhook: WebhookId,
        id: DeliveryId,
        change: impl FnOnce(&mut Delivery) -> Result<(), StoreError> + Send,
    ) -> Result<Delivery, StoreError> {
        let ctx = &self.shared.ctx;
        let mut tx = self
            .shared
            .pool
            .begin()
            .await
            .map_err(|e| ctx.db("changing a delivery", id, e))?;
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE webhook_id = $1 AND id = $2 AND ($3::text IS NULL OR tenant = $3)
             FOR UPDATE"
        ))
        .bind(webhook.as_uuid())
        .bind(id.as_uuid())
        .bind(tenant.map(|t| t.as_str()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| ctx.db("reading a delivery", id, e))?
        .ok_or_else(|| StoreError::NotFound {
            what: "delivery",
            id: id.to_string(),
        })?;
        let mut delivery = delivery_from(ctx, &row)?;
        if let Err(refused) = change(&mut delivery) {
            // At once, not when the pooled connection is next used: until then the row stays
            // locked and dispatchers would skip it.
            tx.rollback()
                .await
                .map_err(|e| ctx.db("changing a delivery", id, e))?;
            return Err(refused);
        }
        save(ctx, &mut tx, &delivery).await?;
        tx.commit()
            .await
            .map_err(|e| ctx.db("changing a delivery", id, e))?;
        Ok(delivery)
    }
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn put_webhook(&self, webhook: Webhook) -> Result<(), StoreError> {
        let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
        sqlx::query(
            "INSERT INTO webhooks (id, tenant, url, events, secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, events = EXCLUDED.events,
                 secret = EXCLUDED.secret
             WHERE webhooks.tenant = EXCLUDED.tenant",
        )
        .bind(webhook.id.as_uuid())
        .bind(webhook.tenant.as_str())
        .bind(&webhook.url)
        .bind(&events)
        .bind(&webhook.secret)
        .bind(millis(webhook.created_at))
        .execute(&self.shared.pool)
        .await
        .map_err(|e| self.shared.ctx.db("storing a webhook", webhook.id, e))?;
        Ok(())
    }

    async fn get_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
    ) -> Result<Option<Webhook>, StoreError> {
        let ctx = &self.shared.ctx;
        sqlx::query("SELECT * FROM webhooks WHERE id = $1 AND tenant = $2")
            .bind(id.as_uuid())
            .bind(tenant.as_str())
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| ctx.db("reading a webhook", id, e))?
            .map(|row| webhook_from(ctx, &row))
            .transpose()
    }

    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError> {
        let ctx = &self.shared.ctx;
        sqlx::query("SELECT * FROM webhooks WHERE tenant = $1 ORDER BY id")
            .bind(tenant.as_str())
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| ctx.db("listing webhooks", tenant, e))?
            .iter()
            .map(|row| webhook_from(ctx, row))
            .collect()
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND tenant = $2")
            .bind(id.as_uuid())
            .bind(tenant.as_str())
            .execute(&self.shared.pool)
            .await
            .map_err(|e| self.shared.ctx.db("deleting a webhook", id, e))?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        state: Option<DeliveryState>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let ctx = &self.shared.ctx;
        let before = Delivery::cursor(page)?;
        let limit = page.limit.max(1);
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE webhook_id = $1 AND tenant = $2 AND ($3::text IS NULL OR state = $3)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        ))
        .bind(webhook.as_uuid())
        .bind(tenant.as_str())
        .bind(state.map(DeliveryState::as_str))
        .bind(before.map(|id| id.as_uuid()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
        .fetch_all(&self.shared.pool)
        .await
        .map_err(|e| ctx.db("listing deliveries", webhook, e))?;
        let mut items = rows
            .iter()
            .map(|row| delivery_from(ctx, row))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|d| d.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn take_due_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        skip: &[WebhookId],
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let ctx = &self.shared.ctx;
        let now = self.shared.clock.now();
        let skip: Vec<Uuid> = skip.iter().map(|id| id.as_uuid()).collect();
        let rows = sqlx::query(&format!(
            "WITH due AS (
                 SELECT webhook_id, id FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= $1
                   AND NOT (webhook_id = ANY ($2))
                 ORDER BY next_attempt_at LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE webhook_deliveries d
             SET attempts = d.attempts + 1, last_attempt_at = $1, next_attempt_at = $4
             FROM due WHERE d.webhook_id = due.webhook_id AND d.id = due.id
             RETURNING {}",
            DELIVERY_COLUMNS
                .split(", ")
                .map(|c| format!("d.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(millis(now))
        .bind(&skip)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(millis(now.plus(lease)))
        .fetch_all(&self.shared.pool)
        .await
        .map_err(|e| ctx.db("taking due deliveries", format_args!("up to {limit}"), e))?;
        let mut taken = rows
            .iter()
            .map(|row| delivery_from(ctx, row))
            .collect::<Result<Vec<_>, _>>()?;
        taken.sort_by_key(|d| (d.occurred_at, d.id));
        Ok(taken)
    }

    async fn record_attempt(
        &self,
        webhook: WebhookId,
        id: DeliveryId,
        attempt: u32,
        outcome: AttemptOutcome,
    ) -> Result<Delivery, StoreError> {
        let now = self.shared.clock.now();
        self.change_delivery(None, webhook, id, move |d| d.record(attempt, outcome, now))
            .await
    }

    async fn resend_delivery(
        &self,
        tenant: &TenantId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, StoreError> {
        let now = self.shared.clock.now();
        self.change_delivery(Some(tenant), webhook, id, move |d| d.resend(now))
            .await
    }

    async fn outbox_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError> {
        let (next, oldest): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT min(next_attempt_at), min(occurred_at) FROM webhook_deliveries
             WHERE state = 'pending'",
        )
        .fetch_one(&self.shared.pool)
        .await
        .map_err(|e| {
            self.shared
                .ctx
                .db("reading the outbox", "pending deliveries", e)
        })?;
        Ok((next.map(timestamp), oldest.map(timestamp)))
    }
}
