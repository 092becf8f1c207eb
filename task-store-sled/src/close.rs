//! Closing a store so that it opens quickly.
//!
//! sled 0.34 writes its recovery snapshot only while it opens a database: an open replays the
//! log written since the previous open, all of it, then saves a snapshot. So the first open
//! after a long run (a bulk load, or a service that ran for days) pays for everything that run
//! wrote: 3.9 s after a million tasks here, against 0.7 s for the next open.
//! [`SledStore::close`] pays that replay at shutdown instead, the way a database takes a
//! shutdown checkpoint. A crash skips it, so the open after a crash still replays.

use std::sync::Arc;
use std::time::Duration;

use task_core::store::StoreError;

use crate::SledStore;
use crate::open::{SledOptions, open_db};

impl SledStore {
    /// Closes the database, then opens and closes sled once more so that it saves its recovery
    /// snapshot: the next open starts from it instead of replaying this run's log. Returns how
    /// long that took (about what the next open would otherwise have spent). Fails, closing
    /// nothing, if other handles to the store are still alive.
    ///
    /// While the store cannot write (a full disk), the close skips the snapshot: it closes what
    /// is open and returns at once; the next open replays the journal, which holds every
    /// acknowledged write.
    pub fn close(self) -> Result<Duration, StoreError> {
        let ctx = self.shell.ctx.clone();
        let in_use = || StoreError::Invalid {
            field: "store",
            reason: format!(
                "other handles to the store at {} are still open: close the last one",
                ctx.path
            ),
        };
        if Arc::strong_count(&self.shell) > 1 {
            return Err(in_use());
        }
        let Some(inner) = self.shell.take() else {
            tracing::warn!(path = %ctx.path, "closed while recovering from an outage: the next open replays the journal");
            return Ok(Duration::ZERO);
        };
        let inner = match Arc::try_unwrap(inner) {
            Ok(inner) => inner,
            Err(shared) => {
                self.shell.put_back(shared);
                return Err(in_use());
            }
        };
        let path = inner.dir.clone();
        // The committer finishes the queued calls, the flusher the last flush and checkpoint.
        drop(inner);
        if let Some(reason) = self.shell.outage_reason() {
            tracing::warn!(path = %ctx.path, %reason, "closed during an outage, without the snapshot: the next open replays the journal");
            return Ok(Duration::ZERO);
        }
        let begun = std::time::Instant::now();
        let db = open_db(&path, &SledOptions::default(), &ctx)?;
        drop(db);
        Ok(begun.elapsed())
    }
}
