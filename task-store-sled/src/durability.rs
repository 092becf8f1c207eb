//! A test seam that sees what is durable: told each time the store makes something survive a
//! power cut, an observer can keep an image of exactly that (the state after open, each journal
//! segment's creation and each `fdatasync`'s length), and a test can open the image as the
//! disk would be after a power cut at any moment. It is called on the flusher thread before
//! any write it covers is acknowledged, so an acknowledged write is always in the image.

use std::path::Path;
use std::sync::Arc;

/// Told what became durable. Calls come from the store's threads, in order.
pub trait DurabilityObserver: Send + Sync + 'static {
    /// The store at `db_dir` is open and its files are durable; its journal is empty and no
    /// write is in flight, so its files can be copied as they are.
    fn opened(&self, db_dir: &Path);
    /// A journal segment was created durably at `segment`, `len` bytes of zeros.
    fn segment_created(&self, segment: &Path, len: u64);
    /// The first `durable` bytes of `segment` are on disk (an `fdatasync` returned).
    fn journal_synced(&self, segment: &Path, durable: u64);
}

/// An observer handle in [`crate::SledOptions`].
#[derive(Clone)]
pub(crate) struct Observer(pub(crate) Arc<dyn DurabilityObserver>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DurabilityObserver")
    }
}
