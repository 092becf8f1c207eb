//! Task creation with dedup of the active natural key: `INSERT ... ON CONFLICT DO NOTHING`
//! against the partial unique index over active tasks, then a read of the active task of
//! each key that conflicted. Never check-then-insert: two stores creating the same key at
//! once make one task.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use task_core::ids::TaskId;
use task_core::machine::created;
use task_core::store::{CreateOutcome, NewTask, StoreError};
use task_core::task::{Task, TaskKey};
use task_core::time::Timestamp;

use crate::rows::{HistoryRows, TaskRows, decode_task, uuid};
use crate::write::insert_tasks;
use crate::{PostgresStore, Shared};

/// How often a create retries a key whose active task ended between the conflict and the
/// read of that task.
const CREATE_ROUNDS: usize = 5;

/// Reads the active tasks of `keys`.
async fn active_tasks(
    shared: &Shared,
    conn: &mut PgConnection,
    keys: &[&TaskKey],
) -> Result<HashMap<TaskKey, Task>, StoreError> {
    let column = |f: fn(&TaskKey) -> String| keys.iter().map(|k| f(k)).collect::<Vec<_>>();
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, doc::text FROM tasks
         WHERE status IN ('pending', 'processing')
           AND (tenant, inventory_id, product, version) IN (
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]))",
    )
    .bind(column(|k| k.tenant.to_string()))
    .bind(column(|k| k.inventory_id.to_string()))
    .bind(column(|k| k.product.to_string()))
    .bind(column(|k| k.version.to_string()))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| {
        shared.ctx.db(
            "reading active tasks",
            format_args!("{} keys", keys.len()),
            e,
        )
    })?;
    rows.into_iter()
        .map(|(id, doc)| {
            let task = decode_task(&shared.ctx, id, &doc)?;
            Ok((task.key.clone(), task))
        })
        .collect()
}

/// Creates a task for each of `firsts` (distinct keys) unless its key has an active task;
/// one `(task, created)` per entry.
async fn create_in(
    shared: &Shared,
    conn: &mut PgConnection,
    firsts: &[&NewTask],
    now: Timestamp,
) -> Result<Vec<(Task, bool)>, StoreError> {
    let mut outcomes: Vec<Option<(Task, bool)>> = vec![None; firsts.len()];
    let mut todo: Vec<usize> = (0..firsts.len()).collect();
    for _ in 0..CREATE_ROUNDS {
        let mut rows = TaskRows::default();
        let mut history = HistoryRows::default();
        let mut made = HashMap::new();
        for &slot in &todo {
            let new = firsts[slot];
            let fresh = created(TaskId::generate(), new.key.clone(), new.priority, now);
            rows.push(None, &fresh.task, 0)?;
            history.push(&fresh.task, [&fresh.entry])?;
            made.insert(uuid(fresh.task.id), (slot, fresh.task));
        }
        for id in insert_tasks(shared, conn, rows, history).await? {
            if let Some((slot, task)) = made.remove(&id) {
                outcomes[slot] = Some((task, true));
            }
        }
        let conflicted: Vec<usize> = made.into_values().map(|(slot, _)| slot).collect();
        if conflicted.is_empty() {
            break;
        }
        let keys: Vec<&TaskKey> = conflicted.iter().map(|&s| &firsts[s].key).collect();
        let mut active = active_tasks(shared, conn, &keys).await?;
        todo = conflicted
            .into_iter()
            .filter(|&slot| match active.remove(&firsts[slot].key) {
                Some(task) => {
                    outcomes[slot] = Some((task, false));
                    false
                }
                // Its active task ended in between: create again.
                None => true,
            })
            .collect();
        if todo.is_empty() {
            break;
        }
    }
    outcomes
        .into_iter()
        .zip(firsts)
        .map(|(outcome, new)| {
            outcome.ok_or_else(|| {
                StoreError::Conflict(format!(
                    "the active task of {} kept changing during {CREATE_ROUNDS} create attempts",
                    new.key
                ))
            })
        })
        .collect()
}

impl PostgresStore {
    /// Creates the tasks of `batch`, each key once (later entries of a key share the outcome
    /// of its first, as not created), in one transaction.
    #[tracing::instrument(skip_all, fields(schema = %self.shared.ctx.schema, count = batch.len()))]
    pub(crate) async fn create(
        &self,
        batch: Vec<NewTask>,
    ) -> Result<Vec<CreateOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let shared = &self.shared;
        let now = shared.clock.now();
        let mut slot_of: HashMap<&TaskKey, usize> = HashMap::new();
        let mut firsts: Vec<&NewTask> = Vec::new();
        for new in &batch {
            slot_of.entry(&new.key).or_insert_with(|| {
                firsts.push(new);
                firsts.len() - 1
            });
        }
        let mut tx = shared.begin("creating tasks").await?;
        let result = create_in(shared, &mut tx, &firsts, now).await;
        let input = format!("{} tasks from key {}", batch.len(), batch[0].key);
        let outcomes = shared.finish(tx, result, "creating tasks", input).await?;
        shared.notify(outcomes.iter().filter(|o| o.1).map(|o| &o.0));
        let mut seen = vec![false; outcomes.len()];
        Ok(batch
            .iter()
            .map(|new| {
                let slot = slot_of[&new.key];
                let (task, created) = &outcomes[slot];
                let first = !std::mem::replace(&mut seen[slot], true);
                CreateOutcome {
                    task: task.clone(),
                    created: *created && first,
                }
            })
            .collect())
    }
}
