//! What sled 0.34 itself keeps in memory, without this engine: databases of plain keys built
//! in a scratch directory, then opened in a fresh process that reports how much its resident
//! memory grew. It separates sled's own costs (per key, per value byte, per key ever written)
//! from the engine's.

use std::path::Path;

/// Sixteen-byte keys that grow like UUIDv7 task ids, behind a one-byte prefix.
fn raw_key(i: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = b'T';
    key[1..9].copy_from_slice(&(1_700_000_000_000u64 + i / 10).to_be_bytes());
    key[9..17].copy_from_slice(&i.to_be_bytes());
    key
}

/// How a raw database is filled.
#[derive(Clone, Copy)]
enum Fill {
    /// Every key inserted and kept.
    Keep,
    /// Each key deleted 1,000 inserts after it was written, so at most 1,000 are live.
    Slide,
    /// Every key inserted, then all but the last 1,000 deleted.
    PeakThenDelete,
}

/// A bare sled database with the engine's cache size.
fn open_raw(path: &Path) -> sled::Db {
    sled::Config::new()
        .path(path)
        .cache_capacity(64 << 20)
        .open()
        .expect("open raw sled")
}

fn build(path: &Path, keys: u64, value_bytes: usize, fill: Fill) {
    const WINDOW: u64 = 1_000;
    let db = open_raw(path);
    let tree = db.open_tree("data").expect("tree");
    let value = vec![7u8; value_bytes];
    for i in 0..keys {
        tree.insert(raw_key(i), &value[..]).expect("insert");
        if matches!(fill, Fill::Slide) && i >= WINDOW {
            tree.remove(raw_key(i - WINDOW)).expect("remove");
        }
        if i % 10_000 == 0 {
            db.flush().expect("flush");
        }
    }
    if matches!(fill, Fill::PeakThenDelete) {
        for i in 0..keys.saturating_sub(WINDOW) {
            tree.remove(raw_key(i)).expect("remove");
        }
    }
    db.flush().expect("flush");
    drop(tree);
    drop(db);
    // One open writes sled's recovery snapshot, so the measured open does not replay the log.
    drop(sled::open(path).expect("reopen raw sled"));
}

/// The child: opens the raw database and prints how much its resident memory grew (KiB).
pub fn raw_open_probe(path: &Path) {
    let before = super::sled_open::status_kib("VmRSS:");
    let db = open_raw(path);
    let tree = db.open_tree("data").expect("tree");
    let after = super::sled_open::status_kib("VmRSS:");
    // Counted after the measurement: iterating pages every node into the cache.
    let live = tree.len();
    println!("{} {live}", after.saturating_sub(before));
}

/// Builds each raw database, opens it in a child process, and prints a table row per database.
pub fn raw_measurements(scratch: &Path) {
    println!("| raw sled 0.34 database | live keys | RSS growth on open | per key written |");
    println!("| --- | --- | --- | --- |");
    let mut kept_kib = Vec::new();
    for (keys, value_bytes, fill, label) in [
        (100_000, 64, Fill::Keep, "100,000 keys, 64-byte values"),
        (100_000, 1_024, Fill::Keep, "100,000 keys, 1 KiB values"),
        (1_000_000, 64, Fill::Keep, "1,000,000 keys, 64-byte values"),
        (
            1_000_000,
            538,
            Fill::Slide,
            "1,000,000 keys written, each deleted 1,000 writes later",
        ),
        (
            1_000_000,
            538,
            Fill::PeakThenDelete,
            "1,000,000 keys written, then all but 1,000 deleted",
        ),
    ] {
        let path = scratch.join("raw-sled");
        let _ = std::fs::remove_dir_all(&path);
        build(&path, keys, value_bytes, fill);
        let figures = super::sled_open::child_figures("--raw-open-probe", &path);
        let (grown_kib, live) = (figures[0], figures[1]);
        println!(
            "| {label} | {live} | {:.1} MiB | {:.1} bytes |",
            grown_kib as f64 / 1024.0,
            grown_kib as f64 * 1024.0 / keys as f64
        );
        if matches!(fill, Fill::Keep) && value_bytes == 64 {
            kept_kib.push((keys, grown_kib));
        }
        let _ = std::fs::remove_dir_all(&path);
    }
    if let [(few, few_kib), (many, many_kib)] = kept_kib[..] {
        println!(
            "| each kept key from {few} to {many} | | | {:.1} bytes |",
            (many_kib as f64 - few_kib as f64) * 1024.0 / (many - few) as f64
        );
    }
}
