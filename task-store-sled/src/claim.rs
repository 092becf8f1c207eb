//! Wake-up times, read from the ready-queue and lease indexes (claims and lease expiry are
//! writes: see `ops`).

use task_core::store::StoreError;
use task_core::time::Timestamp;

use crate::Inner;
use crate::keys;
use crate::open::tree;

impl Inner {
    /// The earliest ready time of a pending task or expiry of a lease.
    pub(crate) fn next_wakeup_sync(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut earliest: Option<Timestamp> = None;
        for rank in 0..3u8 {
            if let Some(entry) = self.trees.ready.scan_prefix([rank]).next() {
                let (key, _) = entry.map_err(|e| self.ctx.backend("reading the ready queue", e))?;
                let at = keys::ready_at_of(&key)
                    .ok_or_else(|| self.ctx.corrupt(tree::READY, &key, "malformed ready key"))?;
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        if let Some(entry) = self.trees.leases.iter().next() {
            let (key, _) = entry.map_err(|e| self.ctx.backend("reading leases", e))?;
            let at = keys::lease_expiry_of(&key)
                .ok_or_else(|| self.ctx.corrupt(tree::LEASES, &key, "malformed lease key"))?;
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        Ok(earliest)
    }
}
