//! Stills written so that a task that does not finish leaves none behind.
//!
//! A run writes every still under `{version dir}/.staging/{task_id}/`, then copies them to
//! their final keys in `{version dir}/`, then deletes every object under the version directory
//! that it did not just write there (the stills of an earlier run that are now surplus, its own
//! staging objects, and any staging left by a worker that died). If the run fails, or its
//! future is dropped (cancellation), before that ends, its staging objects and the final keys it
//! had copied so far are deleted: inline on an error, by a spawned cleanup on a drop (tracked by
//! a [`TaskTracker`], so a caller can wait for it).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::task::TaskTracker;

use task_core::error::TaskError;

use crate::asset_url::OutputRoot;

/// The objects one run has written, and the cleanup owed if it does not commit.
pub(super) struct Staging {
    root: OutputRoot,
    /// The version directory: `{prefix}/{tenant}/{inventory_id}/thumbnails/{version}`.
    dir: Path,
    /// `{dir}/.staging/{task_id}`.
    staging: Path,
    /// Staged objects, by final file name, in order.
    staged: Vec<(String, Path)>,
    /// Final keys this run has copied to (or begun to).
    copied: Vec<Path>,
    committed: bool,
    cleanups: TaskTracker,
    /// This run's writes and copies, each a spawned task: a dropped request future does not
    /// stop a write already under way (a local file is written on a blocking thread, an HTTP
    /// request may have reached the server), so the cleanup waits for them before it lists.
    writes: TaskTracker,
}

impl Staging {
    /// A staging area for task `task_id` under the version directory `dir`.
    pub(super) fn new(root: OutputRoot, dir: Path, task_id: &str, cleanups: TaskTracker) -> Self {
        let staging = dir.clone().join(".staging").join(task_id);
        Self {
            root,
            dir,
            staging,
            staged: Vec::new(),
            copied: Vec::new(),
            committed: false,
            cleanups,
            writes: TaskTracker::new(),
        }
    }

    /// Writes `bytes` to the staging area, to become `{dir}/{name}` at the commit.
    pub(super) async fn put(&mut self, name: &str, bytes: Bytes) -> Result<(), TaskError> {
        let key = self.staging.clone().join(name);
        self.staged.push((name.to_owned(), key.clone()));
        let store = self.root.store().clone();
        let target = key.clone();
        let write = self
            .writes
            .spawn(async move { store.put(&target, bytes.into()).await.map(|_| ()) });
        finished(write, &self.root, &key).await
    }

    /// Copies every staged object to its final key and deletes everything else under the
    /// version directory. Returns the final keys, in order.
    pub(super) async fn commit(&mut self) -> Result<Vec<Path>, TaskError> {
        let mut finals = Vec::with_capacity(self.staged.len());
        for (name, staged) in &self.staged {
            let key = self.dir.clone().join(name.as_str());
            self.copied.push(key.clone());
            let store = self.root.store().clone();
            let (from, to) = (staged.clone(), key.clone());
            let copy = self
                .writes
                .spawn(async move { store.copy(&from, &to).await });
            finished(copy, &self.root, &key).await?;
            finals.push(key);
        }
        let keep: HashSet<&Path> = finals.iter().collect();
        let listed: Vec<Path> = self
            .root
            .store()
            .list(Some(&self.dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| output_error(&self.root, &self.dir, e))?;
        let surplus: Vec<Path> = listed.into_iter().filter(|k| !keep.contains(k)).collect();
        delete_all(self.root.store().clone(), surplus)
            .await
            .map_err(|e| output_error(&self.root, &self.dir, e))?;
        self.committed = true;
        Ok(finals)
    }

    /// Deletes what this run wrote (after an error), and waits for it.
    pub(super) async fn discard(mut self) {
        self.committed = true;
        cleanup(
            self.root.store().clone(),
            self.staging.clone(),
            self.copied.clone(),
            self.writes.clone(),
        )
        .await;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let task = cleanup(
            self.root.store().clone(),
            self.staging.clone(),
            std::mem::take(&mut self.copied),
            self.writes.clone(),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                self.cleanups.spawn_on(task, &runtime);
            }
            Err(_) => tracing::warn!(
                staging = %self.staging,
                "no runtime to delete the staged stills of a dropped thumbnails run"
            ),
        }
    }
}

/// Waits for the run's writes in flight, then deletes the staging area and the final keys the
/// run had copied; failures are logged (the next run of the version deletes any staging left
/// under it).
async fn cleanup(
    store: Arc<dyn ObjectStore>,
    staging: Path,
    copied: Vec<Path>,
    writes: TaskTracker,
) {
    writes.close();
    writes.wait().await;
    let listed: Result<Vec<Path>, _> = store
        .list(Some(&staging))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await;
    let mut keys = copied;
    match listed {
        Ok(staged) => keys.extend(staged),
        Err(e) => tracing::warn!(%staging, error = %e, "staged stills could not be listed"),
    }
    if let Err(e) = delete_all(store, keys).await {
        tracing::warn!(%staging, error = %e, "stills of an unfinished run could not be deleted");
    }
}

/// Deletes `keys`; a key already gone is not an error. Every key is tried; the first other
/// error is returned.
async fn delete_all(store: Arc<dyn ObjectStore>, keys: Vec<Path>) -> object_store::Result<()> {
    let mut results = store.delete_stream(futures::stream::iter(keys.into_iter().map(Ok)).boxed());
    let mut outcome = Ok(());
    while let Some(result) = results.next().await {
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) if outcome.is_ok() => outcome = Err(e),
            Err(_) => {}
        }
    }
    outcome
}

/// The outcome of a spawned write or copy of `key`.
async fn finished(
    task: tokio::task::JoinHandle<object_store::Result<()>>,
    root: &OutputRoot,
    key: &Path,
) -> Result<(), TaskError> {
    task.await
        .map_err(|e| TaskError::Internal {
            message: format!("the write of a still stopped: {e}"),
        })?
        .map_err(|e| output_error(root, key, e))
}

/// A failed request to the output store: refused access is permanent (the deployment must fix
/// its permissions), everything else is retryable.
fn output_error(root: &OutputRoot, key: &Path, err: object_store::Error) -> TaskError {
    let url = root.url(key);
    tracing::warn!(%url, error = %err, "output store request failed");
    match err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => TaskError::AnalysisFailed {
            message: format!("the output store refused to write {url}: check its permissions"),
        },
        other => TaskError::StorageUnavailable {
            url,
            message: format!(
                "the output store request failed: {}",
                crate::error::root_cause(&other)
            ),
        },
    }
}
