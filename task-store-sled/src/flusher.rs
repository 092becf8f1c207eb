//! The two threads behind the group commit: the flusher makes groups durable, the applier
//! makes durable groups visible.
//!
//! The flusher appends the journal frames of every group committed since its last flush with
//! one write and one `fdatasync`, then hands the flush to the applier and starts the next
//! one. The applier applies the flush's groups to sled (strict durability; see `overlay`),
//! sends their callers' answers, and takes a checkpoint when the flusher closed a journal
//! segment. So the fsync of one flush overlaps with applying the previous one, and no caller
//! is answered before its write is both durable and readable.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::Ctx;
use crate::group_commit::{Committed, Durability, Shared, complete};
use crate::journal::{self, JournalWriter, SEQ_KEY};
use crate::layout::{Tk, Trees};

/// A durable flush on its way to the applier.
struct Durable {
    /// The flush's number.
    number: u64,
    /// Its groups, in sequence order.
    groups: Vec<Committed>,
    /// Journal segments closed by it, to delete after a checkpoint.
    closed: Vec<PathBuf>,
}

/// Starts the flusher thread (which starts the applier).
pub(crate) fn spawn(
    ctx: Ctx,
    trees: Arc<Trees>,
    journal: JournalWriter,
    db_dir: PathBuf,
    shared: Arc<Shared>,
    durability: Durability,
) -> std::io::Result<JoinHandle<()>> {
    let applier = Applier {
        ctx: ctx.clone(),
        trees,
        db_dir,
        shared: shared.clone(),
        durability,
        applied: None,
    };
    let (sender, receiver) = mpsc::channel();
    let applier = std::thread::Builder::new()
        .name("sled-applier".into())
        .spawn(move || applier.run(receiver))?;
    let flusher = Flusher {
        ctx,
        journal,
        shared,
        durability,
        buffer: Vec::new(),
    };
    std::thread::Builder::new()
        .name("sled-flusher".into())
        .spawn(move || flusher.run(sender, applier))
}

/// The flusher thread's state.
struct Flusher {
    ctx: Ctx,
    journal: JournalWriter,
    shared: Arc<Shared>,
    durability: Durability,
    /// The frames of one flush, concatenated (kept to reuse its allocation).
    buffer: Vec<u8>,
}

impl Flusher {
    /// Flushes until shutdown, then waits for the applier and fails whatever still waits.
    fn run(mut self, applier: mpsc::Sender<Durable>, applier_thread: JoinHandle<()>) {
        self.flush_until_stopped(&applier);
        drop(applier);
        if applier_thread.join().is_err() {
            tracing::error!("the sled applier thread panicked");
        }
        let shared = &self.shared;
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
                    format!("the flusher of database {} stopped", self.ctx.path).into()
                })
                .clone();
            (std::mem::take(&mut state.waiting), failure)
        };
        for (_, answers) in due {
            answers(Some(failure.clone()));
        }
    }

    /// Appends the frames of `groups` to the journal with one write and makes them durable.
    fn write(&mut self, groups: &[Committed]) -> Result<(), String> {
        let Some(first) = groups.first() else {
            return Ok(());
        };
        self.buffer.clear();
        for group in groups {
            self.buffer.extend_from_slice(&group.frame);
        }
        self.shared
            .journal_bytes
            .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.journal
            .append(first.seq, &self.buffer)
            .and_then(|()| self.journal.sync())
            .map_err(|err| {
                format!(
                    "writing the journal of database {} failed: {err}",
                    self.ctx.path
                )
            })
    }

    /// Waits for work: a writer waiting (strict), the timer (buffered), or shutdown. Returns
    /// the flush to run (its number, whether it is the last, its groups), or None to stop.
    fn next_flush(&self, deadline: &mut Instant) -> Option<(u64, bool, Vec<Committed>)> {
        let shared = &self.shared;
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
                    if now >= *deadline {
                        if state.dirty {
                            break;
                        }
                        *deadline = now + interval;
                    }
                    let (next, _) = shared
                        .wake
                        .wait_timeout(state, *deadline - now)
                        .unwrap_or_else(|p| p.into_inner());
                    state = next;
                }
            }
        }
        if state.shutdown && !state.dirty && state.requested <= state.started {
            return None;
        }
        state.started += 1;
        state.dirty = false;
        let groups = std::mem::take(&mut state.groups);
        Some((state.started, state.shutdown, groups))
    }

    /// Flushes until shutdown (then hands the applier a last checkpoint) or a failure.
    fn flush_until_stopped(&mut self, applier: &mpsc::Sender<Durable>) {
        let shared = self.shared.clone();
        let mut deadline = Instant::now();
        loop {
            let Some((number, last, groups)) = self.next_flush(&mut deadline) else {
                let closed = self.journal.rotate(true);
                let number = shared.lock().started;
                let _ = applier.send(Durable {
                    number,
                    groups: Vec::new(),
                    closed,
                });
                return;
            };
            let begun = Instant::now();
            if let Durability::Buffered { interval } = self.durability {
                deadline = begun + interval;
            }
            let result = self.write(&groups);
            let nanos = u64::try_from(begun.elapsed().as_nanos()).unwrap_or(u64::MAX);
            shared.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
            shared.flushes.fetch_add(1, Ordering::Relaxed);
            if let Err(message) = result {
                tracing::error!(path = %self.ctx.path, %message, "the store refuses further writes");
                complete(&shared, number, Some(message.into()));
                return;
            }
            let closed = self.journal.rotate(last);
            let sent = applier.send(Durable {
                number,
                groups,
                closed,
            });
            if sent.is_err() || last {
                return;
            }
        }
    }
}

/// The applier thread's state.
struct Applier {
    ctx: Ctx,
    trees: Arc<Trees>,
    db_dir: PathBuf,
    shared: Arc<Shared>,
    durability: Durability,
    /// The last group applied (strict durability): the journal position a checkpoint records.
    applied: Option<u64>,
}

impl Applier {
    /// Applies and answers each durable flush in order, until the flusher stops.
    fn run(mut self, flushes: mpsc::Receiver<Durable>) {
        let mut failed = false;
        for durable in flushes {
            if failed {
                complete(&self.shared, durable.number, None);
                continue;
            }
            let result = self.apply_all(&durable.groups).and_then(|()| {
                // The answers of this flush do not wait for a checkpoint.
                complete(&self.shared, durable.number, None);
                self.checkpoint(durable.closed)
            });
            if let Err(message) = result {
                tracing::error!(path = %self.ctx.path, %message, "the store refuses further writes");
                complete(&self.shared, durable.number, Some(message.into()));
                failed = true;
            }
        }
    }

    /// Applies durable groups to sled (strict mode; buffered groups were applied at commit).
    fn apply_all(&mut self, groups: &[Committed]) -> Result<(), String> {
        if self.durability != Durability::Strict {
            return Ok(());
        }
        for group in groups {
            self.apply(group)?;
        }
        Ok(())
    }

    /// Applies a durable group's writes to sled key by key, holding its task records back
    /// until the next checkpoint (see `deferred`), and takes them out of the overlay.
    fn apply(&mut self, group: &Committed) -> Result<(), String> {
        let data = &self.trees.data;
        for (key, value) in &group.writes {
            if key.first() == Tk::Tasks.prefix().as_ref() {
                self.trees.deferred.hold(key, value.clone());
                continue;
            }
            if key == SEQ_KEY {
                // Recorded by the checkpoint that writes the held records.
                continue;
            }
            let applied = match value {
                Some(value) => data.insert(key.as_slice(), value.clone()).map(drop),
                None => data.remove(key.as_slice()).map(drop),
            };
            applied.map_err(|e| {
                let err = self.ctx.backend("applying a group", e);
                format!(
                    "applying a durable group to database {} failed: {err}",
                    self.ctx.path
                )
            })?;
        }
        self.applied = Some(group.seq);
        self.trees.lock_overlay().retire(group.seq, &group.writes);
        Ok(())
    }

    /// Takes a checkpoint covering the `closed` journal segments, if any: sled already holds
    /// every frame in them, so once it is flushed and its files fsynced they are deleted.
    fn checkpoint(&self, closed: Vec<PathBuf>) -> Result<(), String> {
        if closed.is_empty() {
            return Ok(());
        }
        let failed = |what: &str, err: &dyn std::fmt::Display| {
            format!(
                "checkpointing database {} failed ({what}): {err}",
                self.ctx.path
            )
        };
        if let Some(seq) = self.applied {
            self.trees
                .deferred
                .write_into(&self.trees.data, seq)
                .map_err(|e| failed("writing the held task records", &e))?;
        }
        self.trees
            .db
            .flush()
            .map_err(|e| failed("flushing sled", &e))?;
        journal::sync_sled_files(&self.db_dir).map_err(|e| failed("fsyncing sled's files", &e))?;
        for segment in closed {
            std::fs::remove_file(&segment)
                .map_err(|e| failed(&format!("deleting {}", segment.display()), &e))?;
        }
        self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
