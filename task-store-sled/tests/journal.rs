//! The write-ahead journal seen from the store: checkpoints delete what they cover, a clean
//! close leaves nothing to replay, damage is refused with the segment's path, and a journal
//! that cannot be written stops the store with a clear error instead of answering `Ok`.

use std::path::{Path, PathBuf};

use task_core::prelude::*;
use task_core::testing::new_task;
use task_store_sled::{SledOptions, SledStore};

/// Journal segments small enough that a few dozen creates fill several.
const SEGMENT_BYTES: u64 = 4096;

fn small_segments() -> SledOptions {
    SledOptions::default().with_journal_segment_bytes(SEGMENT_BYTES)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .expect("journal directory")
        .map(|e| e.expect("entry").path())
        .collect();
    found.sort();
    found
}

async fn create(store: &SledStore, from: usize, count: usize) -> Result<(), StoreError> {
    for i in from..from + count {
        store
            .create_task(new_task(&format!("item-{i}"), Priority::Medium))
            .await?;
    }
    Ok(())
}

/// How many tasks the store in `dir` lists once reopened.
async fn tasks_after_reopen(dir: &Path) -> usize {
    let store = SledStore::open(dir).expect("reopen");
    let tenant = TenantId::new("t1").expect("valid");
    store
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(1000))
        .await
        .expect("list")
        .items
        .len()
}

#[tokio::test]
async fn checkpoints_delete_covered_segments_and_a_clean_close_leaves_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open_with(dir.path(), small_segments()).expect("open");
    let mut checkpoints = store.checkpoints();
    create(&store, 0, 60).await.expect("create");
    let stats = store.commit_stats();
    assert!(
        stats.journal_bytes > 4 * SEGMENT_BYTES,
        "several segments' worth written: {stats:?}"
    );
    // Checkpoints run beside the writes. Each one asked for deletes the segments it covers,
    // so once they are all done only the live segment is left. (The timeout guards against a
    // hang; it measures nothing.)
    let all_done = checkpoints.wait_for(|_| segments(dir.path()).len() <= 1);
    tokio::time::timeout(std::time::Duration::from_secs(60), all_done)
        .await
        .expect("the covered segments are deleted")
        .expect("the store is open");
    assert!(*checkpoints.borrow() >= 3, "{:?}", store.commit_stats());
    drop(store);
    assert!(segments(dir.path()).is_empty(), "a clean close checkpoints");
    assert_eq!(tasks_after_reopen(dir.path()).await, 60);
}

#[tokio::test]
async fn a_damaged_journal_segment_refuses_the_open_and_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let saved = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open_with(dir.path(), small_segments()).expect("open");
    create(&store, 0, 3).await.expect("create");
    // What a crash would leave: the live segment, as written.
    let live = segments(dir.path());
    assert_eq!(live.len(), 1, "{live:?}");
    let name = live[0].file_name().expect("name").to_owned();
    std::fs::copy(&live[0], saved.path().join(&name)).expect("save");
    create(&store, 3, 60).await.expect("create");
    drop(store);

    // A closed segment followed by another, with one flipped byte in its first frame.
    let mut bytes = std::fs::read(saved.path().join(&name)).expect("read");
    bytes[20] ^= 0xff;
    std::fs::write(dir.path().join("journal").join(&name), bytes).expect("restore");
    std::fs::write(
        dir.path().join("journal").join("09999999999999999999.wal"),
        b"",
    )
    .expect("a later segment");
    let err = SledStore::open(dir.path()).expect_err("damaged journal");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(text.contains(&name.to_string_lossy().to_string()), "{text}");
    assert!(text.contains("byte 0"), "{text}");
}

#[tokio::test]
async fn a_journal_that_cannot_be_written_refuses_writes_then_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open_with(dir.path(), small_segments()).expect("open");
    create(&store, 0, 2).await.expect("create");
    // The next segment cannot be created once its directory is gone.
    std::fs::remove_dir_all(dir.path().join("journal")).expect("remove the journal");
    let mut acknowledged = 2;
    let err = loop {
        match create(&store, acknowledged, 1).await {
            Ok(()) => acknowledged += 1,
            Err(err) => break err,
        }
        assert!(
            acknowledged < 400,
            "writes must fail once a segment is full"
        );
    };
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Unavailable { .. }) && err.is_retryable(),
        "{text}"
    );
    // Whichever touches the missing directory first: the next segment's creation, or the
    // checkpoint that removes the segments it made redundant.
    assert!(
        text.contains("writing the journal") || text.contains("a checkpoint failed"),
        "{text}"
    );
    assert!(
        !text.contains(&dir.path().display().to_string()),
        "no path in the error (the log has it): {text}"
    );
    assert!(store.outage().is_some(), "the outage is reported");
    // The failed write's frames are never replayed, and nothing acknowledged is lost: the
    // store reopens itself (the journal directory is recreated) and takes writes again.
    let mut outages = store.outages();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        outages.wait_for(Option::is_none),
    )
    .await
    .expect("recovered within 30 s")
    .expect("the store is still open");
    create(&store, 1000, 1).await.expect("writes work again");
    let tenant = TenantId::new("t1").expect("valid");
    let listed = store
        .list_tasks(&tenant, &TaskFilter::default(), &PageRequest::first(1000))
        .await
        .expect("list")
        .items;
    assert_eq!(
        listed.len(),
        acknowledged + 1,
        "every acknowledged create, and only those"
    );
    assert!(store.check_consistency().expect("check").is_empty());
}

/// sled's recovery snapshots in `dir` (`snap.<lsn>` files).
fn snapshots(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("database directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snap."))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn close_saves_a_snapshot_for_the_next_open_and_waits_for_the_last_handle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open_with(dir.path(), small_segments()).expect("open");
    create(&store, 0, 40).await.expect("create");
    let other = store.clone();
    let err = store.close().expect_err("another handle is alive");
    assert!(
        matches!(&err, StoreError::Invalid { reason, .. } if reason.contains("other handles")),
        "{err}"
    );
    let before = snapshots(dir.path());
    other.close().expect("the last handle closes");
    let after = snapshots(dir.path());
    assert!(
        !after.is_empty() && after != before,
        "a new snapshot: {before:?} -> {after:?}"
    );
    assert_eq!(tasks_after_reopen(dir.path()).await, 40);
}

/// The committed seeds of the fuzz targets `journal` and `stored_values` (fuzz/corpus/), run
/// on stable by `cargo test`: each decodes or is refused, never a panic.
#[test]
fn fuzz_seeds_decode_or_are_refused() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("journal")).expect("journal seeds") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        let _ = task_store_sled::fuzzing::journal_frame_body(&bytes);
        let _ = task_store_sled::fuzzing::replay_segment(scratch.path(), &bytes);
        seen += 1;
    }
    for entry in std::fs::read_dir(root.join("stored_values")).expect("value seeds") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        let _ = task_store_sled::fuzzing::stored_values(&bytes);
        seen += 1;
    }
    assert!(seen >= 8, "{seen} seeds");
    let huge = std::fs::read(root.join("journal/huge_count")).expect("seed");
    let refused = task_store_sled::fuzzing::replay_segment(scratch.path(), &huge).unwrap_err();
    assert!(refused.contains("journal frame at byte 0"), "{refused}");
}
