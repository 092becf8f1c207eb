//! Group commit: one flusher thread turns many commits into few fsyncs.
//!
//! The committer thread (see `committer`) commits a group of calls as one sled batch and
//! takes a [`Ticket`]: the number of the first flush that *starts after* that commit. It
//! hands the group's answers to [`GroupCommit::after_flush`] and goes on: the flusher thread
//! sends them once the flush of that ticket completed, so each caller is woken once, by the
//! thread that made its write durable, and the committer spends no time waking callers. While
//! one flush runs, the committer keeps committing the next groups, which all share the next
//! flush: CPU work and fsyncs overlap. Flushes are `Db::flush()` calls on a dedicated std
//! thread; no writer calls `flush_async`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
pub(crate) type Answers = Box<dyn FnOnce(Option<Arc<str>>) + Send>;

#[derive(Default)]
struct State {
    /// Flushes started so far; the number of the running or last flush.
    started: u64,
    /// The last completed flush.
    completed: u64,
    /// Set when a flush failed or the flusher stopped: every later answer carries it.
    failure: Option<Arc<str>>,
    /// Answers waiting for their flush, in ticket order.
    waiting: VecDeque<(u64, Answers)>,
    /// Answers whose flush is done, for the flusher to send (buffered mode).
    ready: Vec<Answers>,
    /// The highest flush number a writer waits for.
    requested: u64,
    /// Something was committed since the last flush started (buffered mode).
    dirty: bool,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
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
    flush_until_stopped(&db, &shared, durability, &path);
    // Nothing may wait forever: answers still queued (none, unless a flush failed) fail;
    // buffered answers promise no flush and go as they are.
    let ready = std::mem::take(&mut shared.lock().ready);
    for answers in ready {
        answers(None);
    }
    let (due, failure) = {
        let mut state = shared.lock();
        let failure = state
            .failure
            .get_or_insert_with(|| format!("the flusher of database {path} stopped").into())
            .clone();
        (std::mem::take(&mut state.waiting), failure)
    };
    for (_, answers) in due {
        answers(Some(failure.clone()));
    }
}

/// Flushes until shutdown (after a last flush) or until a flush fails.
fn flush_until_stopped(db: &sled::Db, shared: &Shared, durability: Durability, path: &str) {
    let mut deadline = Instant::now();
    loop {
        let (number, last) = {
            let mut state = shared.lock();
            loop {
                if !state.ready.is_empty() {
                    let ready = std::mem::take(&mut state.ready);
                    drop(state);
                    for answers in ready {
                        answers(None);
                    }
                    state = shared.lock();
                    continue;
                }
                if state.shutdown {
                    break;
                }
                match durability {
                    Durability::Strict if state.requested > state.started => break,
                    Durability::Strict => {
                        state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    Durability::Buffered { interval } => {
                        let now = Instant::now();
                        if now >= deadline {
                            if state.dirty {
                                break;
                            }
                            deadline = now + interval;
                        }
                        let (next, _) = shared
                            .wake
                            .wait_timeout(state, deadline - now)
                            .unwrap_or_else(|p| p.into_inner());
                        state = next;
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
        if let Durability::Buffered { interval } = durability {
            deadline = begun + interval;
        }
        let result = db.flush();
        let nanos = u64::try_from(begun.elapsed().as_nanos()).unwrap_or(u64::MAX);
        shared.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        let failed = result.is_err();
        let (due, failure) = {
            let mut state = shared.lock();
            match result {
                Ok(_) => state.completed = number,
                Err(err) => {
                    tracing::error!(%path, %err, "flushing the sled database failed; the store refuses further writes");
                    state.failure = Some(format!("flushing database {path} failed: {err}").into());
                }
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
        if failed {
            return;
        }
        if last {
            return;
        }
    }
}
