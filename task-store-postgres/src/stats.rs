//! Status counts and per-minute activity (migration 0005): every task write inserts its
//! signed changes into `task_count_changes` and `task_activity_changes` in the statement that
//! writes the tasks (see `write`), a background fold moves them into `task_counts` and
//! `task_activity`, and reads add both.
//!
//! Why changes and a fold, not totals updated by each write: a claim and a completion each
//! move one count of a (tenant, product) down and another up, so with totals every worker's
//! transaction would wait on the same few rows until the one before commits. Inserted changes
//! share no row, and the fold runs once a second, one store at a time.

use serde::Serialize;
use task_core::ids::{ProductName, TenantId};
use task_core::stats::{
    ACTIVITY_KEPT_MS, Activity, ActivityBucket, Durations, StatsDelta, StatusCount, minute_of,
};
use task_core::store::StoreError;
use task_core::task::{Status, Task};
use task_core::time::Timestamp;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::encode_error;
use crate::rows::{millis, timestamp, uuid};
use crate::{PostgresStore, Shared};

/// The columns of an activity row after (minute, tenant, product), in table order.
const ACTIVITY_COLUMNS: &str = "created, done, failed, cancelled, wait_count, wait_total, \
     wait_max, s1_count, s1_total, s1_max, s2_count, s2_total, s2_max, s3_count, s3_total, \
     s3_max, s4_count, s4_total, s4_max";

/// `jsonb_to_recordset` column definitions of [`StatsRows::activity`].
pub(crate) const ACTIVITY_RECORD: &str = "task uuid, minute bigint, tenant text, product text, \
     created bigint, done bigint, failed bigint, cancelled bigint, wait_count bigint, \
     wait_total bigint, wait_max bigint, s1_count bigint, s1_total bigint, s1_max bigint, \
     s2_count bigint, s2_total bigint, s2_max bigint, s3_count bigint, s3_total bigint, \
     s3_max bigint, s4_count bigint, s4_total bigint, s4_max bigint";

/// Each activity column through `max` (the maxima) or `add` (the others), joined by commas.
fn per_column(max: fn(&str) -> String, add: fn(&str) -> String) -> String {
    ACTIVITY_COLUMNS
        .split(", ")
        .map(|column| {
            if column.ends_with("_max") {
                max(column)
            } else {
                add(column)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The aggregate of each activity column: maxima keep the largest, the others add up.
fn activity_aggregates() -> String {
    per_column(
        |c| format!("max({c})::bigint"),
        |c| format!("sum({c})::bigint"),
    )
}

/// The CTEs that insert the changes bound as JSON in parameters `counts` and `activity`,
/// keeping only the tasks `filter` selects (a condition on `x.task`, or "true").
pub(crate) fn insert_changes(counts: usize, activity: usize, filter: &str) -> String {
    format!(
        "sc AS (
    INSERT INTO task_count_changes (tenant, product, status, delta)
    SELECT x.tenant, x.product, x.status, sum(x.delta)::bigint
    FROM jsonb_to_recordset(${counts}::jsonb)
        AS x(task uuid, tenant text, product text, status text, delta bigint)
    WHERE {filter}
    GROUP BY x.tenant, x.product, x.status
),
sa AS (
    INSERT INTO task_activity_changes (minute, tenant, product, {ACTIVITY_COLUMNS})
    SELECT x.minute, x.tenant, x.product, {aggregates}
    FROM jsonb_to_recordset(${activity}::jsonb) AS x({ACTIVITY_RECORD})
    WHERE {filter}
    GROUP BY x.minute, x.tenant, x.product
)",
        aggregates = activity_aggregates()
    )
}

#[derive(Serialize)]
struct CountChange<'a> {
    task: Uuid,
    tenant: &'a str,
    product: &'a str,
    status: &'static str,
    delta: i64,
}

/// One task's activity change, flattened into the columns of `task_activity_changes`.
#[derive(Serialize)]
struct ActivityChange<'a> {
    task: Uuid,
    minute: i64,
    tenant: &'a str,
    product: &'a str,
    #[serde(flatten)]
    columns: serde_json::Map<String, serde_json::Value>,
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The numbers of `activity` by column name.
fn activity_columns(activity: &Activity) -> serde_json::Map<String, serde_json::Value> {
    let mut columns = serde_json::Map::new();
    let mut put = |name: String, n: u64| {
        columns.insert(name, signed(n).into());
    };
    put("created".into(), activity.created);
    put("done".into(), activity.done);
    put("failed".into(), activity.failed);
    put("cancelled".into(), activity.cancelled);
    let named = std::iter::once(("wait".to_string(), &activity.queue_wait)).chain(
        activity
            .steps
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("s{}", i + 1), d)),
    );
    for (name, durations) in named {
        put(format!("{name}_count"), durations.count);
        put(format!("{name}_total"), durations.total_ms);
        put(format!("{name}_max"), durations.max_ms);
    }
    columns
}

/// The statistics changes of a set of task writes, bound as two JSON arrays.
#[derive(Debug, Default)]
pub(crate) struct StatsRows {
    counts: Vec<serde_json::Value>,
    activity: Vec<serde_json::Value>,
}

impl StatsRows {
    /// Adds the changes of writing `after` over `before` (None for a new task).
    pub fn push(&mut self, before: Option<&Task>, after: &Task) -> Result<(), StoreError> {
        self.add(after, StatsDelta::of_write(before, after))
    }

    fn add(&mut self, task: &Task, delta: StatsDelta) -> Result<(), StoreError> {
        let (tenant, product) = (task.key.tenant.as_str(), task.key.product.as_str());
        for (status, delta) in delta.counts {
            let change = CountChange {
                task: uuid(task.id),
                tenant,
                product,
                status: status.as_str(),
                delta,
            };
            self.counts
                .push(serde_json::to_value(change).map_err(|e| encode_error("a count change", e))?);
        }
        if let Some((minute, activity)) = delta.activity {
            let change = ActivityChange {
                task: uuid(task.id),
                minute: millis(minute),
                tenant,
                product,
                columns: activity_columns(&activity),
            };
            self.activity.push(
                serde_json::to_value(change).map_err(|e| encode_error("an activity change", e))?,
            );
        }
        Ok(())
    }

    /// The count changes, as JSON text.
    pub fn counts_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(&self.counts).map_err(|e| encode_error("count changes", e))
    }

    /// The activity changes, as JSON text.
    pub fn activity_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(&self.activity).map_err(|e| encode_error("activity changes", e))
    }
}

/// Folds the changes into the totals and drops the minutes past [`ACTIVITY_KEPT_MS`] before
/// `now`, unless another store of the schema is folding (then it returns false).
const FOLD: &str = "
WITH l AS (SELECT pg_try_advisory_xact_lock(hashtext('task-store-postgres fold ' || $1)) AS got),
mc AS (
    DELETE FROM task_count_changes WHERE (SELECT got FROM l) RETURNING tenant, product, status, delta
),
uc AS (
    INSERT INTO task_counts AS t (tenant, product, status, count)
    SELECT tenant, product, status, sum(delta)::bigint FROM mc GROUP BY tenant, product, status
    ON CONFLICT (tenant, product, status) DO UPDATE SET count = t.count + excluded.count
)
SELECT got FROM l";

/// Folds the activity changes (run after [`FOLD`] took the lock, in its transaction).
fn fold_activity() -> String {
    let updates = per_column(
        |c| format!("{c} = greatest(t.{c}, excluded.{c})"),
        |c| format!("{c} = t.{c} + excluded.{c}"),
    );
    format!(
        "
WITH ma AS (DELETE FROM task_activity_changes RETURNING *)
INSERT INTO task_activity AS t (minute, tenant, product, {ACTIVITY_COLUMNS})
SELECT minute, tenant, product, {aggregates} FROM ma GROUP BY minute, tenant, product
ON CONFLICT (minute, tenant, product) DO UPDATE SET {updates}",
        aggregates = activity_aggregates()
    )
}

/// Folds the changes written so far into the totals (see the module doc); returns whether it
/// ran (false: another store of the schema was folding).
pub(crate) async fn fold(shared: &Shared) -> Result<bool, StoreError> {
    let fail =
        |what: &'static str| move |e| shared.ctx.db("folding status counts and activity", what, e);
    let mut tx = shared.begin("folding status counts and activity").await?;
    let work = async {
        let got: bool = sqlx::query_scalar(FOLD)
            .bind(&*shared.ctx.schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail("the counts"))?;
        if !got {
            return Ok(false);
        }
        sqlx::query(&fold_activity())
            .execute(&mut *tx)
            .await
            .map_err(fail("the activity"))?;
        let oldest = millis(shared.clock.now()).saturating_sub(signed(ACTIVITY_KEPT_MS));
        sqlx::query("DELETE FROM task_counts WHERE count = 0")
            .execute(&mut *tx)
            .await
            .map_err(fail("dropping empty counts"))?;
        sqlx::query("DELETE FROM task_activity WHERE minute < $1")
            .bind(oldest)
            .execute(&mut *tx)
            .await
            .map_err(fail("dropping old minutes"))?;
        Ok(true)
    }
    .await;
    shared
        .finish(
            tx,
            work,
            "folding status counts and activity",
            "every change",
        )
        .await
}

/// Folds about once a second until `stop` fires or the store is dropped.
pub(crate) fn spawn(store: &PostgresStore, stop: watch::Receiver<()>) {
    crate::background::every_second(store, stop, |shared| async move {
        if let Err(err) = fold(&shared).await {
            tracing::warn!(error = %err, "folding status counts failed; retried in a second");
        }
    });
}

const COUNTS: &str = "
SELECT tenant, product, status, sum(n)::bigint FROM (
    SELECT tenant, product, status, count AS n FROM task_counts
    WHERE $1::text IS NULL OR tenant = $1
    UNION ALL
    SELECT tenant, product, status, delta FROM task_count_changes
    WHERE $1::text IS NULL OR tenant = $1
) AS all_counts
GROUP BY tenant, product, status
HAVING sum(n) <> 0
ORDER BY tenant, product, status";

fn activity_query() -> String {
    format!(
        "
SELECT minute, tenant, product, {aggregates} FROM (
    SELECT minute, tenant, product, {ACTIVITY_COLUMNS} FROM task_activity
    WHERE minute >= $2 AND ($1::text IS NULL OR tenant = $1)
    UNION ALL
    SELECT minute, tenant, product, {ACTIVITY_COLUMNS} FROM task_activity_changes
    WHERE minute >= $2 AND ($1::text IS NULL OR tenant = $1)
) AS all_activity
GROUP BY minute, tenant, product
ORDER BY minute, tenant, product",
        aggregates = activity_aggregates()
    )
}

fn names(
    shared: &Shared,
    table: &str,
    tenant: &str,
    product: &str,
) -> Result<(TenantId, ProductName), StoreError> {
    let bad = |e: task_core::ids::ValidationError| {
        shared.ctx.corrupt(table, format!("{tenant}/{product}"), e)
    };
    Ok((
        TenantId::new(tenant).map_err(bad)?,
        ProductName::new(product).map_err(bad)?,
    ))
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresStore {
    /// The status counts of `tenant` (or of every tenant).
    pub(crate) async fn read_counts(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        let shared = &self.shared;
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(COUNTS)
            .bind(tenant.map(TenantId::as_str))
            .fetch_all(&shared.pool)
            .await
            .map_err(|e| {
                shared.ctx.db(
                    "counting tasks by status",
                    format_args!("tenant {tenant:?}"),
                    e,
                )
            })?;
        rows.into_iter()
            .map(|(t, p, status, count)| {
                let (tenant, product) = names(shared, "task_counts", &t, &p)?;
                let status: Status = status.parse().map_err(|_| {
                    shared.ctx.corrupt(
                        "task_counts",
                        format!("{t}/{p}"),
                        format!("status {status}"),
                    )
                })?;
                Ok(StatusCount {
                    tenant,
                    product,
                    status,
                    count: unsigned(count),
                })
            })
            .collect()
    }

    /// The activity of `tenant` (or of every tenant) from the minute holding `since`.
    pub(crate) async fn read_activity(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
    ) -> Result<Vec<ActivityBucket>, StoreError> {
        let shared = &self.shared;
        let rows = sqlx::query(&activity_query())
            .bind(tenant.map(TenantId::as_str))
            .bind(millis(minute_of(since)))
            .fetch_all(&shared.pool)
            .await
            .map_err(|e| {
                shared.ctx.db(
                    "reading activity",
                    format_args!("tenant {tenant:?} since {since}"),
                    e,
                )
            })?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                let get = |i: usize| -> Result<i64, StoreError> {
                    row.try_get::<i64, _>(i)
                        .map_err(|e| shared.ctx.db("reading activity", "a column", e))
                };
                let text = |i: usize| -> Result<String, StoreError> {
                    row.try_get::<String, _>(i)
                        .map_err(|e| shared.ctx.db("reading activity", "a column", e))
                };
                let (tenant, product) = names(shared, "task_activity", &text(1)?, &text(2)?)?;
                let durations = |at: usize| -> Result<Durations, StoreError> {
                    Ok(Durations {
                        count: unsigned(get(at)?),
                        total_ms: unsigned(get(at + 1)?),
                        max_ms: unsigned(get(at + 2)?),
                    })
                };
                Ok(ActivityBucket {
                    tenant,
                    product,
                    minute: timestamp(get(0)?),
                    activity: Activity {
                        created: unsigned(get(3)?),
                        done: unsigned(get(4)?),
                        failed: unsigned(get(5)?),
                        cancelled: unsigned(get(6)?),
                        queue_wait: durations(7)?,
                        steps: [
                            durations(10)?,
                            durations(13)?,
                            durations(16)?,
                            durations(19)?,
                        ],
                    },
                })
            })
            .collect()
    }
}
