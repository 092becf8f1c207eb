//! Retention: finished tasks older than a cut-off are deleted with their history (by the
//! foreign key's `ON DELETE CASCADE`), in bounded batches, so that a long-lived store does not
//! keep and list every task it ever ran; so are the webhook deliveries that ended (delivered or
//! failed) before the cut-off, so that the outbox does not grow forever. Pending deliveries,
//! catalog items, results and the cache stay.

use std::time::Duration;

use task_core::store::StoreError;
use task_core::time::Timestamp;
use tokio::sync::watch;
use uuid::Uuid;

use crate::PostgresStore;
use crate::rows::millis;

/// At most this many tasks (or deliveries) are deleted per statement (and transaction).
pub(crate) const PRUNE_BATCH: i64 = 1000;

const PRUNE: &str = "
WITH del AS (
    DELETE FROM tasks WHERE id IN (
        SELECT id FROM tasks
        WHERE finished_at < $1 AND status IN ('done', 'failed', 'cancelled')
        ORDER BY finished_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, tenant, product, status
),
-- The deleted tasks leave the status counts in the same statement (StatsDelta::of_removal).
sc AS (
    INSERT INTO task_count_changes (tenant, product, status, delta)
    SELECT tenant, product, status, -count(*) FROM del GROUP BY tenant, product, status
)
SELECT id FROM del";

// The ended time and the state test are those of the partial index `webhook_deliveries_ended`
// (migrations/0008_delivery_retention.sql), word for word, so that the planner reads the
// oldest ended deliveries from it instead of scanning the table.
const PRUNE_DELIVERIES: &str = "
DELETE FROM webhook_deliveries WHERE (webhook_id, id) IN (
    SELECT webhook_id, id FROM webhook_deliveries
    WHERE COALESCE(delivered_at, last_attempt_at) < $1 AND state <> 'pending'
    ORDER BY COALESCE(delivered_at, last_attempt_at)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id";

impl PostgresStore {
    /// Deletes every task that finished (done, failed or cancelled) before `before`, with its
    /// history, in batches of 1000 (each its own transaction). Catalog items and results stay;
    /// `latest_task` of a key whose tasks were all deleted finds nothing. Returns how many
    /// were deleted. A store opened with a retention
    /// ([`PostgresOptions::with_retention`](crate::PostgresOptions::with_retention)) does this
    /// on its own about once a second.
    #[tracing::instrument(skip(self), fields(schema = %self.shared.ctx.schema))]
    pub async fn prune_finished_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.delete_in_batches(PRUNE, before, "deleting finished tasks", "tasks finished")
            .await
    }

    /// Deletes every webhook delivery that ended before `before`: delivered ones by their
    /// `delivered_at`, failed ones by their `last_attempt_at`, in batches of 1000 (each its own
    /// transaction). Pending deliveries stay, whatever their age: they still go out. A failed
    /// delivery deleted here can no longer be re-sent. Returns how many were deleted. A store
    /// opened with a retention
    /// ([`PostgresOptions::with_retention`](crate::PostgresOptions::with_retention)) does this
    /// on its own about once a second, with the cut-off of its tasks.
    #[tracing::instrument(skip(self), fields(schema = %self.shared.ctx.schema))]
    pub async fn prune_ended_deliveries_before(
        &self,
        before: Timestamp,
    ) -> Result<usize, StoreError> {
        let what = "deleting ended webhook deliveries";
        self.delete_in_batches(PRUNE_DELIVERIES, before, what, "deliveries ended")
            .await
    }

    /// Runs `sql` (a delete of at most `$2` rows older than `$1`, returning their ids), each
    /// time its own transaction, until a batch comes back short; returns the rows deleted.
    async fn delete_in_batches(
        &self,
        sql: &'static str,
        before: Timestamp,
        operation: &'static str,
        rows: &str,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let deleted: Vec<Uuid> = sqlx::query_scalar(sql)
                .bind(millis(before))
                .bind(PRUNE_BATCH)
                .fetch_all(&self.shared.pool)
                .await
                .map_err(|e| {
                    self.shared
                        .ctx
                        .db(operation, format_args!("{rows} before {before}"), e)
                })?;
            total += deleted.len();
            if i64::try_from(deleted.len()).unwrap_or(i64::MAX) < PRUNE_BATCH {
                return Ok(total);
            }
        }
    }
}

/// Prunes tasks, and webhook deliveries, that ended longer than `age` ago about once a second
/// until the store is dropped. Each is tried every time, whether the other failed or not.
pub(crate) fn spawn(store: &PostgresStore, age: Duration, stop: watch::Receiver<()>) {
    crate::background::every_second(store, stop, move |shared| async move {
        let store = PostgresStore { shared };
        let now = store.shared.clock.now();
        let before = Timestamp::from_millis(
            now.as_millis()
                .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        );
        match store.prune_finished_before(before).await {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "retention deleted finished tasks"),
            Err(err) => tracing::warn!(error = %err, "retention failed; retried in a second"),
        }
        match store.prune_ended_deliveries_before(before).await {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "retention deleted ended webhook deliveries"),
            Err(err) => tracing::warn!(error = %err, "retention failed; retried in a second"),
        }
    });
}
