//! The two threads behind the group commit: the flusher makes groups durable and visible,
//! the checkpointer lets the journal go.
//!
//! The flusher appends the journal frames of every group committed since its last flush with
//! one write and one `fdatasync`, applies the flush's groups to sled (see `overlay` and
//! `deferred`), sends their callers' answers (strict durability), and starts the next flush. No
//! strict caller is answered before its write is both durable and readable (buffered callers
//! are answered at commit, and read their writes from the overlay). Applying is cheap since
//! task records are held in memory until the next checkpoint, so it stays on the flusher: a
//! hand-off to another thread cost more waiting (a wake-up on a busy machine) than the apply.
//!
//! When the flusher closes a journal segment, it hands the checkpointer the held task records
//! and the position they reach. The checkpointer writes them into sled with that position,
//! flushes sled, fsyncs its files and deletes the covered segments, while the flusher goes on
//! flushing: a checkpoint takes tens of milliseconds, which would otherwise stall every writer.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::deferred::Held;
use crate::error::Ctx;
use crate::group_commit::{Committed, Durability, Failure, Shared, complete, reason_of};
use crate::journal::{self, JournalWriter, SEQ_KEY};
use crate::layout::{Tk, Trees};

/// A checkpoint for the checkpointer to take.
struct Checkpoint {
    /// The task records held back from sled when it was asked for, and the journal position
    /// they reach (None if no group was applied since the open).
    held: Option<(Held, u64)>,
    /// Journal segments sled will then hold whole, to delete.
    closed: Vec<PathBuf>,
}

/// Starts the flusher thread (which starts the checkpointer).
pub(crate) fn spawn(
    ctx: Ctx,
    trees: Arc<Trees>,
    journal: JournalWriter,
    db_dir: PathBuf,
    shared: Arc<Shared>,
    durability: Durability,
) -> std::io::Result<JoinHandle<()>> {
    let checkpointer = Checkpointer {
        ctx: ctx.clone(),
        trees: trees.clone(),
        db_dir,
        shared: shared.clone(),
    };
    let (sender, receiver) = mpsc::channel();
    let checkpointer = std::thread::Builder::new()
        .name("sled-checkpointer".into())
        .spawn(move || checkpointer.run(receiver))?;
    let flusher = Flusher {
        ctx,
        journal,
        trees,
        shared,
        durability,
        buffer: Vec::new(),
        applied: None,
        written: 0,
    };
    std::thread::Builder::new()
        .name("sled-flusher".into())
        .spawn(move || flusher.run(sender, checkpointer))
}

/// The flusher thread's state.
struct Flusher {
    ctx: Ctx,
    journal: JournalWriter,
    trees: Arc<Trees>,
    shared: Arc<Shared>,
    durability: Durability,
    /// The frames of one flush, concatenated (kept to reuse its allocation).
    buffer: Vec<u8>,
    /// The last group applied: the position the next checkpoint records.
    applied: Option<u64>,
    /// Acknowledged writes counted when the last flush ended (for writes per fsync).
    written: u64,
}

impl Flusher {
    /// Flushes until shutdown, then waits for the last checkpoint and fails whatever still
    /// waits.
    fn run(mut self, checkpoints: mpsc::Sender<Checkpoint>, checkpointer: JoinHandle<()>) {
        self.flush_until_stopped(&checkpoints);
        drop(checkpoints);
        if checkpointer.join().is_err() {
            tracing::error!("the sled checkpointer thread panicked");
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
                    Arc::new(Failure {
                        message: format!("the flusher of database {} stopped", self.ctx.path),
                        reason: "the store is closing".into(),
                        unacknowledged_from: None,
                    })
                })
                .clone();
            (std::mem::take(&mut state.waiting), failure)
        };
        for (_, answers) in due {
            answers(Some(failure.clone()));
        }
    }

    /// Appends the frames of `groups` to the journal with one write and makes them durable.
    fn write(&mut self, groups: &[Committed]) -> Result<(), Failure> {
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
            .map_err(|err| Failure {
                message: format!(
                    "writing the journal of database {} failed: {err}",
                    self.ctx.path
                ),
                reason: reason_of("writing the journal", err.kind()),
                unacknowledged_from: matches!(self.durability, Durability::Strict)
                    .then_some(first.seq),
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

    /// Flushes until shutdown (then asks for a last checkpoint) or a failure.
    fn flush_until_stopped(&mut self, checkpoints: &mpsc::Sender<Checkpoint>) {
        let shared = self.shared.clone();
        let mut deadline = Instant::now();
        loop {
            let Some((number, last, groups)) = self.next_flush(&mut deadline) else {
                let closed = self.journal.rotate(true);
                self.request_checkpoint(checkpoints, closed);
                return;
            };
            let begun = Instant::now();
            if let Durability::Buffered { interval } = self.durability {
                deadline = begun + interval;
            }
            let result = self.write(&groups);
            let took = begun.elapsed();
            // Writes are counted as they commit: those since the last flush began ride on this one.
            let written = shared.writes.load(Ordering::Relaxed);
            task_core::telemetry::store_fsync(took, written.saturating_sub(self.written));
            self.written = written;
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            shared.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
            shared.flushes.fetch_add(1, Ordering::Relaxed);
            if let Err(failure) = result.and_then(|()| self.apply_all(&groups)) {
                tracing::error!(
                    path = %self.ctx.path,
                    message = %failure.message,
                    "the store refuses writes until it recovers"
                );
                complete(&shared, number, Some(failure));
                return;
            }
            complete(&shared, number, None);
            let closed = self.journal.rotate(last);
            self.request_checkpoint(checkpoints, closed);
            if last {
                return;
            }
        }
    }

    /// Applies durable groups to sled.
    fn apply_all(&mut self, groups: &[Committed]) -> Result<(), Failure> {
        for group in groups {
            self.apply(group)?;
        }
        Ok(())
    }

    /// Applies a durable group's writes to sled key by key, holding its task records and
    /// statistics back until the next checkpoint (see `deferred`), and takes them out of the
    /// overlay.
    fn apply(&mut self, group: &Committed) -> Result<(), Failure> {
        let data = &self.trees.data;
        for (key, value) in &group.writes {
            if key
                .first()
                .is_some_and(|prefix| Tk::of_prefix(*prefix).is_some_and(Tk::held_back))
            {
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
            applied.map_err(|e| Failure {
                reason: reason_of("applying a durable group", sled_kind(&e)),
                message: format!(
                    "applying a durable group to database {} failed: {}",
                    self.ctx.path,
                    self.ctx.backend("applying a group", e)
                ),
                unacknowledged_from: None,
            })?;
        }
        self.applied = Some(group.seq);
        self.trees.lock_overlay().retire(group.seq, &group.writes);
        Ok(())
    }

    /// Asks the checkpointer for a checkpoint covering the `closed` journal segments, if any.
    fn request_checkpoint(&self, checkpoints: &mpsc::Sender<Checkpoint>, closed: Vec<PathBuf>) {
        if closed.is_empty() {
            return;
        }
        let held = self
            .applied
            .map(|seq| (self.trees.deferred.snapshot(), seq));
        // A checkpointer that stopped has recorded its failure: writes are refused already.
        let _ = checkpoints.send(Checkpoint { held, closed });
    }
}

/// The I/O error kind behind a sled error (`Other` when sled failed for another reason).
fn sled_kind(err: &sled::Error) -> std::io::ErrorKind {
    match err {
        sled::Error::Io(io) => io.kind(),
        _ => std::io::ErrorKind::Other,
    }
}

/// The checkpointer thread's state.
struct Checkpointer {
    ctx: Ctx,
    trees: Arc<Trees>,
    db_dir: PathBuf,
    shared: Arc<Shared>,
}

impl Checkpointer {
    /// Takes each checkpoint asked for, in order, until the flusher stops or one fails.
    fn run(self, checkpoints: mpsc::Receiver<Checkpoint>) {
        for checkpoint in checkpoints {
            if let Err(failure) = self.checkpoint(checkpoint) {
                tracing::error!(
                    path = %self.ctx.path,
                    message = %failure.message,
                    "the store refuses writes until it recovers"
                );
                let number = self.shared.lock().started;
                complete(&self.shared, number, Some(failure));
                return;
            }
        }
    }

    /// Writes the held task records and their journal position into sled, flushes it, fsyncs
    /// its files, and deletes the segments it now holds whole.
    fn checkpoint(&self, checkpoint: Checkpoint) -> Result<(), Failure> {
        let failed = |what: &str, kind: std::io::ErrorKind, err: &dyn std::fmt::Display| Failure {
            message: format!(
                "checkpointing database {} failed ({what}): {err}",
                self.ctx.path
            ),
            reason: reason_of("a checkpoint", kind),
            unacknowledged_from: None,
        };
        if let Some((held, seq)) = &checkpoint.held {
            self.trees
                .deferred
                .write_into(&self.trees.data, held, *seq)
                .map_err(|e| failed("writing the held task records", sled_kind(&e), &e))?;
        }
        self.trees
            .db
            .flush()
            .map_err(|e| failed("flushing sled", sled_kind(&e), &e))?;
        journal::sync_sled_files(&self.db_dir)
            .map_err(|e| failed("fsyncing sled's files", e.kind(), &e))?;
        for segment in checkpoint.closed {
            std::fs::remove_file(&segment)
                .map_err(|e| failed(&format!("deleting {}", segment.display()), e.kind(), &e))?;
        }
        if let Some((held, _)) = checkpoint.held {
            self.trees.deferred.forget(held);
        }
        self.shared.checkpoints.send_modify(|done| *done += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::{SledOptions, open};
    use task_core::prelude::{Priority, StoreError, TaskStore};
    use task_core::testing::new_task;

    /// A checkpoint that fails stops the store's writes (nothing may be acknowledged that a
    /// later checkpoint could not cover) until it recovers: they are refused as unavailable.
    #[tokio::test]
    async fn a_failed_checkpoint_stops_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), SledOptions::default()).expect("open");
        store
            .create_task(new_task("before", Priority::Low))
            .await
            .expect("a write before the failure");
        let inner = &store.live().expect("the store is live");
        // A checkpointer whose database directory is gone: fsyncing sled's files fails.
        let checkpointer = Checkpointer {
            ctx: inner.ctx.clone(),
            trees: inner.trees.clone(),
            db_dir: dir.path().join("missing"),
            shared: inner.commit.shared(),
        };
        let (checkpoints, requests) = mpsc::channel();
        checkpoints
            .send(Checkpoint {
                held: Some((inner.trees.deferred.snapshot(), 1)),
                closed: Vec::new(),
            })
            .expect("queued");
        drop(checkpoints);
        checkpointer.run(requests);

        let err = store
            .create_task(new_task("after", Priority::Low))
            .await
            .expect_err("writes are refused");
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Unavailable { .. }) && err.is_retryable(),
            "{text}"
        );
        assert!(text.contains("a checkpoint failed"), "{text}");
        assert!(
            store.outage().is_some(),
            "reported until the store recovers"
        );
    }
}
