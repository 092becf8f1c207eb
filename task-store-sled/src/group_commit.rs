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
use std::time::{Duration, Instant};

use crate::journal::{self, JournalWriter};

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
    /// Journal frames committed since the last flush started, in sequence order.
    frames: Vec<Vec<u8>>,
    /// The sequence number of `frames[0]`.
    first_seq: u64,
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
    checkpoints: AtomicU64,
    journal_bytes: AtomicU64,
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
    /// Starts the flusher thread, which journals into `journal` and checkpoints `db` (whose
    /// files are under `db_dir`).
    pub fn start(
        db: sled::Db,
        journal: JournalWriter,
        db_dir: PathBuf,
        durability: Durability,
        path: &str,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            writes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_nanos: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
        });
        let thread_shared = shared.clone();
        let flusher = Flusher {
            db,
            journal,
            db_dir,
            shared: thread_shared,
            durability,
            path: path.to_owned(),
            buffer: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || flusher.run())?;
        Ok(Self {
            shared,
            durability,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Records a committed group carrying `writes` acknowledged calls, whose journal frame
    /// numbered `seq` is `frame`, and returns the ticket its callers wait for. In strict mode
    /// it asks the flusher for a flush that starts after this commit.
    pub fn committed(&self, writes: u64, seq: u64, frame: Vec<u8>) -> Ticket {
        self.shared.writes.fetch_add(writes, Ordering::Relaxed);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        let mut state = self.shared.lock();
        if state.frames.is_empty() {
            state.first_seq = seq;
        }
        state.frames.push(frame);
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
            checkpoints: self.shared.checkpoints.load(Ordering::Relaxed),
            journal_bytes: self.shared.journal_bytes.load(Ordering::Relaxed),
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

/// The flusher thread's state.
struct Flusher {
    db: sled::Db,
    journal: JournalWriter,
    db_dir: PathBuf,
    shared: Arc<Shared>,
    durability: Durability,
    path: String,
    /// The frames of one flush, concatenated (kept to reuse its allocation).
    buffer: Vec<u8>,
}

impl Flusher {
    /// Flushes when a writer waits (strict) or on a timer (buffered) until shutdown.
    fn run(mut self) {
        let shared = self.shared.clone();
        self.flush_until_stopped();
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
                .get_or_insert_with(|| {
                    format!("the flusher of database {} stopped", self.path).into()
                })
                .clone();
            (std::mem::take(&mut state.waiting), failure)
        };
        for (_, answers) in due {
            answers(Some(failure.clone()));
        }
    }

    /// Appends `frames` (the first numbered `first_seq`) to the journal and makes them durable.
    fn write(&mut self, first_seq: u64, frames: Vec<Vec<u8>>) -> Result<(), String> {
        if frames.is_empty() {
            return Ok(());
        }
        self.buffer.clear();
        for frame in &frames {
            self.buffer.extend_from_slice(frame);
        }
        self.shared
            .journal_bytes
            .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.journal
            .append(first_seq, &self.buffer)
            .and_then(|()| self.journal.sync())
            .map_err(|err| {
                format!(
                    "writing the journal of database {} failed: {err}",
                    self.path
                )
            })
    }

    /// After a flush: takes a checkpoint if the journal segment is full (every segment at
    /// `last`). sled already holds every frame journaled, as the committer applies a batch
    /// before it hands over its frame.
    fn checkpoint(&mut self, last: bool) -> Result<(), String> {
        let covered = self.journal.rotate(last);
        if covered.is_empty() {
            return Ok(());
        }
        let failed = |what: &str, err: &dyn std::fmt::Display| {
            format!(
                "checkpointing database {} failed ({what}): {err}",
                self.path
            )
        };
        self.db.flush().map_err(|e| failed("flushing sled", &e))?;
        journal::sync_sled_files(&self.db_dir).map_err(|e| failed("fsyncing sled's files", &e))?;
        for segment in covered {
            std::fs::remove_file(&segment)
                .map_err(|e| failed(&format!("deleting {}", segment.display()), &e))?;
        }
        self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes until shutdown (after a last flush and checkpoint) or until one fails.
    fn flush_until_stopped(&mut self) {
        let shared = self.shared.clone();
        let mut deadline = Instant::now();
        loop {
            let (number, last, frames, first_seq) = {
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
                    match self.durability {
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
                    drop(state);
                    if let Err(message) = self.checkpoint(true) {
                        tracing::error!(path = %self.path, %message, "the last checkpoint failed; the next open replays the journal");
                    }
                    return;
                }
                state.started += 1;
                state.dirty = false;
                let frames = std::mem::take(&mut state.frames);
                (state.started, state.shutdown, frames, state.first_seq)
            };
            let begun = Instant::now();
            if let Durability::Buffered { interval } = self.durability {
                deadline = begun + interval;
            }
            let result = self.write(first_seq, frames);
            let nanos = u64::try_from(begun.elapsed().as_nanos()).unwrap_or(u64::MAX);
            shared.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
            shared.flushes.fetch_add(1, Ordering::Relaxed);
            let result = result.and_then(|()| {
                // The answers of this flush do not wait for a checkpoint; later ones might.
                self.answer(number, None);
                self.checkpoint(last)
            });
            if let Err(message) = result {
                tracing::error!(path = %self.path, %message, "the store refuses further writes");
                self.answer(number, Some(message.into()));
                return;
            }
            if last {
                return;
            }
        }
    }

    /// Marks flush `number` complete (or the store failed) and sends the answers it covers.
    fn answer(&self, number: u64, failure: Option<Arc<str>>) {
        let (due, failure) =
            {
                let mut state = self.shared.lock();
                match failure {
                    None => state.completed = state.completed.max(number),
                    Some(message) => state.failure = Some(message),
                }
                let mut due = Vec::new();
                while state.waiting.front().is_some_and(|(ticket, _)| {
                    *ticket <= state.completed || state.failure.is_some()
                }) {
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
}
