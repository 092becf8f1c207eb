//! Wake-up times, published by the committer from the in-memory ready queue and lease index
//! (claims and lease expiry are writes: see `ops`).

use task_core::store::StoreError;
use task_core::time::Timestamp;

use crate::Inner;

impl Inner {
    /// The earliest ready time of a pending task or expiry of a lease.
    pub(crate) fn next_wakeup_sync(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.trees.wakeup())
    }
}
