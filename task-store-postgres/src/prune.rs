//! Retention: finished tasks older than a cut-off are deleted with their history (by the
//! foreign key's `ON DELETE CASCADE`), in bounded batches, so that a long-lived store does not
//! keep and list every task it ever ran. Catalog items, results and the cache stay.

use std::time::Duration;

use task_core::store::StoreError;
use task_core::time::Timestamp;
use tokio::sync::watch;
use uuid::Uuid;

use crate::PostgresStore;
use crate::rows::millis;

/// At most this many tasks are deleted per statement (and transaction).
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

impl PostgresStore {
    /// Deletes every task that finished (done, failed or cancelled) before `before`, with its
    /// history, in batches of 1000 (each its own transaction). Catalog items and results stay;
    /// `latest_task` of a key whose tasks were all deleted finds nothing. Returns how many
    /// were deleted. A store opened with a retention
    /// ([`PostgresOptions::with_retention`](crate::PostgresOptions::with_retention)) does this
    /// on its own about once a second.
    #[tracing::instrument(skip(self), fields(schema = %self.shared.ctx.schema))]
    pub async fn prune_finished_before(&self, before: Timestamp) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let deleted: Vec<Uuid> = sqlx::query_scalar(PRUNE)
                .bind(millis(before))
                .bind(PRUNE_BATCH)
                .fetch_all(&self.shared.pool)
                .await
                .map_err(|e| {
                    self.shared.ctx.db(
                        "deleting finished tasks",
                        format_args!("tasks finished before {before}"),
                        e,
                    )
                })?;
            total += deleted.len();
            if i64::try_from(deleted.len()).unwrap_or(i64::MAX) < PRUNE_BATCH {
                return Ok(total);
            }
        }
    }
}

/// Prunes tasks older than `age` about once a second until the store is dropped.
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
    });
}
