//! Riding out a full or failing disk without a restart.
//!
//! When a journal write, an fsync, an apply or a checkpoint fails, the instance that failed
//! refuses every later write (nothing more may be acknowledged on top of a write whose fate is
//! unknown) and calls answer [`StoreError::Unavailable`], which the API turns into a 503 with
//! `Retry-After`. A recovery thread then waits for the disk to take writes again (a probe file
//! written and fsynced), drops the failed instance, and opens the directory again as a process
//! start would, except that it replays the whole journal (see [`Replay::Everything`]): pages
//! written since the last good checkpoint are rewritten from the journal instead of trusted,
//! since after a failed fsync the page cache may hold pages that never reach the disk. The
//! frames of a flush that failed were never acknowledged and are not replayed. Handles,
//! subscribers and watchers carry over to the new instance.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use task_core::store::{StoreError, TaskChange};
use tokio::sync::{broadcast, watch};

use crate::error::{BACKEND, Ctx};
use crate::group_commit::Failure;
use crate::open::{SledOptions, open_inner};
use crate::{Inner, SledStore};

/// How often recovery looks for space again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// The free space a recovery wants before it reopens (it replays and checkpoints).
const PROBE_BYTES: usize = 4 << 20;
/// How long recovery waits for calls in flight to let go of the failed instance.
const RELEASE_PATIENCE: Duration = Duration::from_secs(5);
/// How often a recovery that keeps failing logs it.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// How much of the journal an open replays.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Replay {
    /// The frames after the position sled holds (a process start).
    AfterSled,
    /// Every frame still in the journal, up to (not including) `before` if set: a reopen after
    /// a failure, which trusts nothing written since the last checkpoint that succeeded.
    Everything {
        /// The first frame of the flush that failed.
        before: Option<u64>,
    },
}

/// What every instance of one store shares, so that callers see one store across reopens.
pub(crate) struct Handles {
    pub changes: broadcast::Sender<TaskChange>,
    pub pruned: Arc<watch::Sender<u64>>,
    pub checkpoints: Arc<watch::Sender<u64>>,
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            changes: broadcast::channel(4096).0,
            pruned: Arc::new(watch::channel(0).0),
            checkpoints: Arc::new(watch::channel(0).0),
        }
    }
}

/// Whether the store takes writes, and why not.
#[derive(Default)]
struct Outage {
    /// The path-free reason callers and `/readyz` get; None while the store is healthy.
    reason: watch::Sender<Option<String>>,
    /// A recovery thread is running.
    recovering: bool,
}

/// The store behind every [`SledStore`] handle: the instance in use, replaced after an outage.
pub(crate) struct Shell {
    /// None while recovery reopens the database.
    current: RwLock<Option<Arc<Inner>>>,
    dir: PathBuf,
    pub ctx: Ctx,
    options: SledOptions,
    pub handles: Handles,
    outage: Arc<Mutex<Outage>>,
    me: Weak<Shell>,
}

impl SledStore {
    /// A store over its first instance.
    pub(crate) fn from_parts(
        dir: &Path,
        options: SledOptions,
        handles: Handles,
        inner: Inner,
    ) -> SledStore {
        let ctx = inner.ctx.clone();
        let shell = Arc::new_cyclic(|me| Shell {
            current: RwLock::new(None),
            dir: dir.to_path_buf(),
            ctx,
            options,
            handles,
            outage: Arc::new(Mutex::new(Outage::default())),
            me: me.clone(),
        });
        shell.install(inner);
        SledStore { shell }
    }

    /// The instance in use, or the outage's error while recovery reopens the database.
    pub(crate) fn live(&self) -> Result<Arc<Inner>, StoreError> {
        self.shell.live()
    }
}

impl Shell {
    pub(crate) fn live(&self) -> Result<Arc<Inner>, StoreError> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.clone().ok_or_else(|| StoreError::Unavailable {
            backend: BACKEND,
            reason: self
                .outage_reason()
                .unwrap_or_else(|| "the store is reopening".into()),
        })
    }

    /// Why writes are refused now, if they are.
    pub(crate) fn outage_reason(&self) -> Option<String> {
        self.lock_outage().reason.borrow().clone()
    }

    /// The outage reason as it changes.
    pub(crate) fn outages(&self) -> watch::Receiver<Option<String>> {
        self.lock_outage().reason.subscribe()
    }

    /// Takes the instance out for a close; None if recovery holds it.
    pub(crate) fn take(&self) -> Option<Arc<Inner>> {
        self.current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Puts back an instance [`Shell::take`] took.
    pub(crate) fn put_back(&self, inner: Arc<Inner>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(inner);
    }

    fn lock_outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        lock(&self.outage)
    }

    /// Makes `inner` the instance in use, watching it for a failure.
    fn install(&self, inner: Inner) {
        let (shell, outage) = (self.me.clone(), self.outage.clone());
        let path = self.ctx.path.clone();
        // No strong handle to the store here: this runs on the flusher's threads, which must
        // never be the ones that drop it (and join themselves).
        inner.commit.on_failure(Box::new(move |failure: &Failure| {
            failed(&outage, &shell, &path, failure);
        }));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(inner));
    }

    /// One recovery attempt: wait for space, drop the failed instance, open a new one.
    fn try_recover(&self, before: Option<u64>) -> Result<(), String> {
        probe_space(&self.dir)?;
        let failed = self.take();
        if let Some(failed) = failed {
            let deadline = Instant::now() + RELEASE_PATIENCE;
            let mut failed = failed;
            loop {
                match Arc::try_unwrap(failed) {
                    // Its threads stop and sled's files close: the directory is free.
                    Ok(inner) => break drop(inner),
                    Err(shared) if Instant::now() < deadline => {
                        failed = shared;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(shared) => {
                        self.put_back(shared);
                        return Err("calls in flight still hold the failed instance".into());
                    }
                }
            }
        }
        let inner = open_inner(
            &self.dir,
            &self.options,
            &self.handles,
            Replay::Everything { before },
        )
        .map_err(|e| e.to_string())?;
        self.install(inner);
        let mut outage = self.lock_outage();
        outage.reason.send_replace(None);
        outage.recovering = false;
        Ok(())
    }
}

fn lock(outage: &Mutex<Outage>) -> std::sync::MutexGuard<'_, Outage> {
    outage.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records the outage and starts the recovery thread (once).
fn failed(outage: &Mutex<Outage>, shell: &Weak<Shell>, path: &str, failure: &Failure) {
    let mut state = lock(outage);
    state.reason.send_replace(Some(failure.reason.clone()));
    if state.recovering {
        return;
    }
    state.recovering = true;
    drop(state);
    let (shell, before) = (shell.clone(), failure.unacknowledged_from);
    let spawned = std::thread::Builder::new()
        .name("sled-recovery".into())
        .spawn(move || recover_until_done(shell, before));
    if let Err(err) = spawned {
        tracing::error!(%path, %err, "cannot start the recovery thread: the store refuses writes until a restart");
    }
}

/// The recovery thread: tries every second until the store is back or dropped.
fn recover_until_done(shell: Weak<Shell>, before: Option<u64>) {
    let began = Instant::now();
    let mut logged: Option<Instant> = None;
    loop {
        std::thread::sleep(RETRY_EVERY);
        let Some(store) = shell.upgrade() else {
            return;
        };
        match store.try_recover(before) {
            Ok(()) => {
                tracing::info!(
                    path = %store.ctx.path,
                    outage_secs = began.elapsed().as_secs_f64(),
                    "the store recovered: it takes writes again"
                );
                return;
            }
            Err(err) => {
                if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    tracing::warn!(path = %store.ctx.path, %err, "the store cannot recover yet; retrying every second");
                    logged = Some(Instant::now());
                }
            }
        }
    }
}

/// Whether the disk under `dir` takes (and syncs) a few megabytes again.
fn probe_space(dir: &Path) -> Result<(), String> {
    let path = dir.join("space-probe.tmp");
    let written = (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_data()
    })();
    let removed = std::fs::remove_file(&path);
    written.map_err(|e| format!("the disk still refuses writes: {e}"))?;
    removed.map_err(|e| format!("removing the space probe failed: {e}"))
}
