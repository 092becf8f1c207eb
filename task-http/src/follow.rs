//! Following one task: the task as it is, then once per change, until it ends. The API's event
//! stream and the web console's both read it.
//!
//! It subscribes to the store's change notifications before reading the task, so no change
//! between the first read and the subscription is missed.

use std::sync::Arc;

use futures::Stream;
use task_core::ids::{TaskId, TenantId};
use task_core::store::{Store, StoreError, TaskChange};
use task_core::task::Task;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

struct Follow {
    store: Arc<dyn Store>,
    tenant: TenantId,
    id: TaskId,
    drain: CancellationToken,
    changes: broadcast::Receiver<TaskChange>,
    /// The task last given out; the first read before the stream starts.
    last: Task,
    first: bool,
    ended: bool,
}

impl Follow {
    /// The task after its next change, or None when the stream is over.
    async fn next(&mut self) -> Option<Task> {
        if self.first {
            self.first = false;
            self.ended = !self.last.status().is_active();
            return Some(self.last.clone());
        }
        if self.ended {
            return None;
        }
        loop {
            let woke = tokio::select! {
                woke = self.changes.recv() => woke,
                () = self.drain.cancelled() => return None,
            };
            match woke {
                Ok(change) if change.task_id != self.id => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
            let task = match self.store.get_task(&self.tenant, self.id).await {
                Ok(Some(task)) => task,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(task = %self.id, error = %e, "task stream stopped");
                    return None;
                }
            };
            if self.last == task {
                continue;
            }
            self.ended = !task.status().is_active();
            self.last = task.clone();
            return Some(task);
        }
    }
}

/// The task `id` of `tenant` now, then after each change, ending after the change that ends
/// the task (or when `drain` is cancelled, or when the store fails). `Ok(None)` when the
/// tenant has no such task.
pub async fn follow_task(
    store: Arc<dyn Store>,
    tenant: TenantId,
    id: TaskId,
    drain: CancellationToken,
) -> Result<Option<impl Stream<Item = Task> + Send + 'static>, StoreError> {
    let changes = store.subscribe();
    let Some(last) = store.get_task(&tenant, id).await? else {
        return Ok(None);
    };
    let follow = Follow {
        store,
        tenant,
        id,
        drain,
        changes,
        last,
        first: true,
        ended: false,
    };
    Ok(Some(futures::stream::unfold(
        follow,
        |mut follow| async move {
            let task = follow.next().await?;
            Some((task, follow))
        },
    )))
}
