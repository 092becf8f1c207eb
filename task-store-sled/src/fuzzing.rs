//! Entry points for the fuzz targets in `fuzz/` (not part of the store's API): the decoders of
//! bytes the store reads back from disk, which a damaged or crafted file can fill with anything.

use std::path::Path;

use task_core::catalog::CatalogItem;
use task_core::task::HistoryEntry;

use crate::error::Ctx;

fn ctx() -> Ctx {
    Ctx {
        path: "fuzz".into(),
    }
}

/// Decodes one journal frame body: the number of writes, or why it is refused.
pub fn journal_frame_body(body: &[u8]) -> Result<usize, &'static str> {
    crate::journal::decode_body(body).map(|(_, writes)| writes.len())
}

/// Replays `segment` as the only (so the last) segment of a journal in `dir`, from sequence
/// number 0: the frames replayed, or the error (the segment file is left in `dir`).
pub fn replay_segment(dir: &Path, segment: &[u8]) -> Result<usize, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("00000000000000000001.wal"), segment).map_err(|e| e.to_string())?;
    crate::journal::replay(&ctx(), dir, 0, None, |_| Ok(()))
        .map(|replayed| replayed.frames)
        .map_err(|e| e.to_string())
}

/// A journal frame around `body`, with its length and checksum, as the flusher writes it.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 8);
    bytes.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// Decodes a stored task record (with its history), a catalog item and a history value.
pub fn stored_values(bytes: &[u8]) -> [bool; 3] {
    let record = crate::record::decode_record(&ctx(), b"k", bytes).is_ok();
    let item = crate::codec::decode::<CatalogItem>(&ctx(), "items", b"k", bytes).is_ok();
    let mut entries: Vec<HistoryEntry> = Vec::new();
    let history =
        crate::codec::decode_history(&ctx(), "history", b"k", bytes, &mut entries).is_ok();
    [record, item, history]
}
