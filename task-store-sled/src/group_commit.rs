//! Group commit: one flusher thread turns many commits into few fsyncs.
//!
//! The committer thread (see `committer`) commits a group of calls as one sled transaction and
//! takes a [`Ticket`]: the number of the first flush that *starts after* that commit. Each
//! caller of the group waits (asynchronously) for its ticket. While one flush runs, the
//! committer keeps committing the next groups, which all share the next flush: CPU work and
//! fsyncs overlap. Flushes are `Db::flush()` calls on a dedicated std thread; no writer calls
//! `flush_async`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use task_core::store::StoreError;
use tokio::sync::watch;

use crate::error::BACKEND;

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
    /// Groups committed (one sled transaction each, carrying one or more writes).
    pub commits: u64,
    /// Flushes (fsyncs) completed.
    pub flushes: u64,
    /// Total time spent inside flushes.
    pub flush_time: Duration,
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

    /// Writes carried by one commit (one sled transaction) on average (0 before the first).
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

#[derive(Debug, Default)]
struct State {
    /// Flushes started so far; the number of the running or last flush.
    started: u64,
    /// The highest flush number a writer waits for.
    requested: u64,
    /// Something was committed since the last flush started (buffered mode).
    dirty: bool,
    shutdown: bool,
}

/// What writers watch: the last completed flush, or the error that poisoned the store.
#[derive(Debug, Clone, Default)]
struct Flushed {
    completed: u64,
    failure: Option<Arc<str>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    flushed: watch::Sender<Flushed>,
    writes: AtomicU64,
    commits: AtomicU64,
    flushes: AtomicU64,
    flush_nanos: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters updated atomically under the lock: always consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The flusher thread and the writers' side of it.
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    durability: Durability,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the flusher thread for `db`.
    pub fn start(db: sled::Db, durability: Durability, path: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            flushed: watch::Sender::new(Flushed::default()),
            writes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_nanos: AtomicU64::new(0),
        });
        let thread_shared = shared.clone();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || flusher(db, thread_shared, durability, path))?;
        Ok(Self {
            shared,
            durability,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Records a committed group carrying `writes` acknowledged calls and returns the ticket
    /// its callers wait for. In strict mode it asks the flusher for a flush that starts after
    /// this commit.
    pub fn committed(&self, writes: u64) -> Ticket {
        self.shared.writes.fetch_add(writes, Ordering::Relaxed);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        let mut state = self.shared.lock();
        state.dirty = true;
        match self.durability {
            Durability::Strict => {
                let target = state.started + 1;
                state.requested = state.requested.max(target);
                self.shared.wake.notify_one();
                Ticket(target)
            }
            Durability::Buffered { .. } => Ticket::NONE,
        }
    }

    /// Counts `writes` more acknowledged calls that wrote nothing themselves (they wait for
    /// an earlier ticket).
    pub fn acknowledged(&self, writes: u64) {
        self.shared.writes.fetch_add(writes, Ordering::Relaxed);
    }

    /// Waits until the flush of `ticket` completed (or the store failed).
    pub async fn wait(&self, ticket: Ticket) -> Result<(), StoreError> {
        let target = ticket.0;
        let mut rx = self.shared.flushed.subscribe();
        let flushed = rx
            .wait_for(|f| f.completed >= target || f.failure.is_some())
            .await
            .map_err(|_| StoreError::Backend {
                backend: BACKEND,
                operation: "waiting for a flush",
                message: "the flusher thread stopped".into(),
                retryable: false,
            })?;
        match &flushed.failure {
            Some(message) => Err(StoreError::Backend {
                backend: BACKEND,
                operation: "flushing to disk",
                message: message.to_string(),
                retryable: false,
            }),
            None => Ok(()),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            writes: self.shared.writes.load(Ordering::Relaxed),
            commits: self.shared.commits.load(Ordering::Relaxed),
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            flush_time: Duration::from_nanos(self.shared.flush_nanos.load(Ordering::Relaxed)),
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

/// The flusher loop: flushes when a writer waits (strict) or on a timer (buffered).
fn flusher(db: sled::Db, shared: Arc<Shared>, durability: Durability, path: String) {
    loop {
        let (number, last) = {
            let mut state = shared.lock();
            loop {
                if state.shutdown {
                    break;
                }
                match durability {
                    Durability::Strict if state.requested > state.started => break,
                    Durability::Strict => {
                        state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    Durability::Buffered { interval } => {
                        let (next, _) = shared
                            .wake
                            .wait_timeout(state, interval)
                            .unwrap_or_else(|p| p.into_inner());
                        state = next;
                        if state.dirty {
                            break;
                        }
                    }
                }
            }
            if state.shutdown && !state.dirty && state.requested <= state.started {
                return;
            }
            state.started += 1;
            state.dirty = false;
            (state.started, state.shutdown)
        };
        let begun = Instant::now();
        let result = db.flush();
        let nanos = u64::try_from(begun.elapsed().as_nanos()).unwrap_or(u64::MAX);
        shared.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(_) => shared.flushed.send_modify(|f| f.completed = number),
            Err(err) => {
                tracing::error!(%path, %err, "flushing the sled database failed; the store refuses further writes");
                let message: Arc<str> = format!("flushing database {path} failed: {err}").into();
                shared.flushed.send_modify(|f| f.failure = Some(message));
                return;
            }
        }
        if last {
            return;
        }
    }
}
