//! Group commit: one flusher thread turns many commits into few fsyncs.
//!
//! The committer thread (see `committer`) commits a group of calls as one sled batch, hands
//! its journal frame to [`GroupCommit::committed`] and takes a [`Ticket`]: the number of the
//! first flush that *starts after* that commit. It hands the group's answers to
//! [`GroupCommit::after_flush`] and goes on: the flusher thread appends every frame queued
//! since its last flush to the journal with one write, `fdatasync`s it, and then sends the
//! answers of that flush, so each caller is woken once, by the thread that made its write
//! durable, and the committer spends no time waking callers. While one flush runs, the
//! committer keeps committing the next groups, which all share the next flush: CPU work and
//! fsyncs overlap. When a journal segment is full the flusher takes a checkpoint (see
//! `journal`); no writer calls sled's `flush_async`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use task_core::store::StoreError;

use crate::error::Ctx;
use crate::flusher;
use crate::journal::JournalWriter;
use crate::layout::Trees;
use crate::overlay::GroupWrites;

/// How writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every acknowledged write is on disk (fsynced) before the call returns. The default.
    #[default]
    Strict,
    /// Calls return once committed in memory; a flush runs every `interval`. A crash loses at
    /// most the writes of the last interval, never part of one.
    Buffered {
        /// Time between flushes.
        interval: Duration,
    },
}

/// Counters of the group commit, for benchmarks and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Durable writes acknowledged (one per committing store call, one per written entry of an
    /// `apply_many`).
    pub writes: u64,
    /// Groups committed (one sled batch each, carrying one or more writes).
    pub commits: u64,
    /// Flushes (fsyncs) completed.
    pub flushes: u64,
    /// Total time spent inside flushes.
    pub flush_time: Duration,
    /// Checkpoints taken (sled flushed and fsynced, full journal segments deleted).
    pub checkpoints: u64,
    /// Bytes appended to the journal.
    pub journal_bytes: u64,
}

impl CommitStats {
    /// Writes carried by one flush on average (0 before the first flush).
    pub fn writes_per_flush(&self) -> f64 {
        if self.flushes == 0 {
            0.0
        } else {
            self.writes as f64 / self.flushes as f64
        }
    }

    /// Writes carried by one commit (one sled batch) on average (0 before the first).
    pub fn writes_per_commit(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.writes as f64 / self.commits as f64
        }
    }

    /// The counters accumulated since `earlier`.
    pub fn since(&self, earlier: &CommitStats) -> CommitStats {
        CommitStats {
            writes: self.writes - earlier.writes,
            commits: self.commits - earlier.commits,
            flushes: self.flushes - earlier.flushes,
            flush_time: self.flush_time.saturating_sub(earlier.flush_time),
            checkpoints: self.checkpoints - earlier.checkpoints,
            journal_bytes: self.journal_bytes - earlier.journal_bytes,
        }
    }
}

/// What a caller waits for: the number of a flush (0: nothing to wait for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Ticket(u64);

impl Ticket {
    /// No flush to wait for (buffered mode, or nothing was written).
    pub const NONE: Ticket = Ticket(0);
}

/// Answers to send once a flush completed, given the failure that stopped the store if any.
pub(crate) type Answers = Box<dyn FnOnce(Option<Arc<Failure>>) + Send>;

/// Why the store stopped taking writes: a journal write, fsync, apply or checkpoint failed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// For the log: names the database and the file.
    pub message: String,
    /// For callers: what failed, without paths (see [`reason_of`]).
    pub reason: String,
    /// The first journal frame of a flush that failed (strict durability): none of its callers
    /// was acknowledged, so recovery does not replay it even if it reached the disk.
    pub unacknowledged_from: Option<u64>,
}

impl Failure {
    /// The error callers get while the store recovers.
    pub fn error(&self) -> StoreError {
        StoreError::Unavailable {
            backend: crate::error::BACKEND,
            reason: self.reason.clone(),
        }
    }
}

/// A path-free reason for an I/O failure while `doing` something.
pub(crate) fn reason_of(doing: &str, kind: std::io::ErrorKind) -> String {
    match kind {
        std::io::ErrorKind::StorageFull => format!("the disk is full ({doing} failed)"),
        std::io::ErrorKind::QuotaExceeded => format!("the disk quota is exceeded ({doing} failed)"),
        other => format!("the disk refused a write ({doing} failed: {other})"),
    }
}

/// Called once when the store fails (the owner starts its recovery).
pub(crate) type FailureHook = Box<dyn Fn(&Failure) + Send + Sync>;

/// What the committer, the flusher and the checkpointer share.
#[derive(Default)]
pub(crate) struct State {
    /// Flushes started so far; the number of the running or last flush.
    pub started: u64,
    /// The last completed flush (durable, and applied to sled).
    pub completed: u64,
    /// Set when a flush failed or the flusher stopped: every later answer carries it.
    pub failure: Option<Arc<Failure>>,
    /// Answers waiting for their flush, in ticket order.
    pub waiting: VecDeque<(u64, Answers)>,
    /// Answers whose flush is done, for the flusher to send (buffered mode).
    pub ready: Vec<Answers>,
    /// Groups committed since the last flush started, in sequence order.
    pub groups: Vec<Committed>,
    /// The highest flush number a writer waits for.
    pub requested: u64,
    /// Something was committed since the last flush started (buffered mode).
    pub dirty: bool,
    pub shutdown: bool,
}

/// The state under its lock, its condition variable and the counters.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher.
    pub wake: Condvar,
    /// Acknowledged writes so far (the flusher reads how many each flush carried).
    pub writes: AtomicU64,
    commits: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_nanos: AtomicU64,
    /// Checkpoints completed since open.
    pub checkpoints: Arc<tokio::sync::watch::Sender<u64>>,
    pub journal_bytes: AtomicU64,
    /// Told of the first failure.
    pub on_failure: Mutex<Option<FailureHook>>,
}

impl Shared {
    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters updated atomically under the lock: always consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The flusher thread and the writers' side of it.
pub(crate) struct GroupCommit {
    trees: Arc<Trees>,
    shared: Arc<Shared>,
    durability: Durability,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the flusher thread, which journals into `journal` and applies and checkpoints
    /// `trees` (whose files are under `db_dir`).
    pub fn start(
        ctx: Ctx,
        trees: Arc<Trees>,
        journal: JournalWriter,
        db_dir: PathBuf,
        durability: Durability,
        checkpoints: Arc<tokio::sync::watch::Sender<u64>>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            writes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_nanos: AtomicU64::new(0),
            checkpoints,
            journal_bytes: AtomicU64::new(0),
            on_failure: Mutex::new(None),
        });
        let thread = flusher::spawn(
            ctx,
            trees.clone(),
            journal,
            db_dir,
            shared.clone(),
            durability,
        )?;
        Ok(Self {
            trees,
            shared,
            durability,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Takes a committed group carrying `writes` acknowledged calls and returns the ticket its
    /// callers wait for. Its writes wait in the overlay for the flusher, which applies them to
    /// sled once their frame is durable, so sled never holds a write the journal lacks. In
    /// buffered mode readers already see them in the overlay: they are acknowledged.
    pub fn committed(&self, writes: u64, group: Committed) -> Result<Ticket, StoreError> {
        if let Some(failure) = &self.shared.lock().failure {
            return Err(failure.error());
        }
        self.trees.lock_overlay().publish(group.seq, &group.writes);
        self.shared.writes.fetch_add(writes, Ordering::Relaxed);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        let mut state = self.shared.lock();
        state.groups.push(group);
        state.dirty = true;
        match self.durability {
            Durability::Strict => {
                let target = state.started + 1;
                state.requested = state.requested.max(target);
                self.shared.wake.notify_one();
                Ok(Ticket(target))
            }
            Durability::Buffered { .. } => Ok(Ticket::NONE),
        }
    }

    /// Counts `writes` more acknowledged calls that wrote nothing themselves (they wait for
    /// an earlier ticket).
    pub fn acknowledged(&self, writes: u64) {
        self.shared.writes.fetch_add(writes, Ordering::Relaxed);
    }

    /// Runs `answers` once the flush of `ticket` completed (at once if it has, or if the
    /// ticket is [`Ticket::NONE`]); with the failure message if the store failed first.
    ///
    /// In buffered mode the flusher thread sends them: waking the callers costs the committer,
    /// the store's bottleneck, more than building their answers did.
    pub fn after_flush(&self, ticket: Ticket, answers: Answers) {
        let mut state = self.shared.lock();
        if state.failure.is_some() {
            let failure = state.failure.clone();
            drop(state);
            answers(failure);
        } else if ticket.0 > state.completed {
            state.waiting.push_back((ticket.0, answers));
        } else if matches!(self.durability, Durability::Buffered { .. }) && !state.shutdown {
            state.ready.push(answers);
            self.shared.wake.notify_one();
        } else {
            drop(state);
            answers(None);
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            writes: self.shared.writes.load(Ordering::Relaxed),
            commits: self.shared.commits.load(Ordering::Relaxed),
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            flush_time: Duration::from_nanos(self.shared.flush_nanos.load(Ordering::Relaxed)),
            checkpoints: *self.shared.checkpoints.borrow(),
            journal_bytes: self.shared.journal_bytes.load(Ordering::Relaxed),
        }
    }

    /// The state the flusher threads share (for tests that drive them directly).
    #[cfg(test)]
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Has `hook` called once, at the first failure (at once if the store failed already).
    pub fn on_failure(&self, hook: FailureHook) {
        let state = self.shared.lock();
        match state.failure.clone() {
            Some(failure) => {
                drop(state);
                hook(&failure);
            }
            // Installed under the state lock: a failure recorded meanwhile finds the hook.
            None => {
                *self
                    .shared
                    .on_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(hook)
            }
        }
    }

    /// Stops the flusher after a last flush and waits for it.
    pub fn shutdown(&self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the sled flusher thread panicked");
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Marks flush `number` complete (or the store failed with `failure`) and sends the answers
/// it covers.
pub(crate) fn complete(shared: &Shared, number: u64, failure: Option<Failure>) {
    let (due, failure) = {
        let mut state = shared.lock();
        match failure {
            None => state.completed = state.completed.max(number),
            Some(failure) if state.failure.is_none() => {
                // Told under the state lock (the hook's only lock comes after it in every
                // path): no caller can see the failure before the outage is recorded.
                let hook = shared.on_failure.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(hook) = hook.as_ref() {
                    hook(&failure);
                }
                state.failure = Some(Arc::new(failure));
            }
            // The first failure is the one to report; later ones follow from it.
            Some(_) => {}
        }
        let mut due = Vec::new();
        while state
            .waiting
            .front()
            .is_some_and(|(ticket, _)| *ticket <= state.completed || state.failure.is_some())
        {
            if let Some((_, answers)) = state.waiting.pop_front() {
                due.push(answers);
            }
        }
        (due, state.failure.clone())
    };
    for answers in due {
        answers(failure.clone());
    }
}

/// A committed group on its way to sled.
pub(crate) struct Committed {
    /// Its journal sequence number.
    pub seq: u64,
    /// Its journal frame.
    pub frame: Vec<u8>,
    /// Its writes, in the order they are applied.
    pub writes: GroupWrites,
}

impl Committed {
    /// Applies the writes to sled as one batch: atomic on disk and for readers.
    pub fn apply_atomically(&self, ctx: &Ctx, trees: &Trees) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in &self.writes {
            match value {
                Some(value) => batch.insert(key.as_slice(), value.clone()),
                None => batch.remove(key.as_slice()),
            }
        }
        trees
            .data
            .apply_batch(batch)
            .map_err(|e| ctx.backend("committing a group", e))
    }
}
