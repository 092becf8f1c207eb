//! A real full disk (a small tmpfs): writes are refused as `Unavailable` while it is full,
//! reads go on, the store takes writes again by itself once space returns, a close with the
//! disk full returns at once, and nothing acknowledged is ever lost.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN), as the test command runs on CI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use task_core::prelude::*;
use task_core::testing::new_task;
use task_store_sled::{SledOptions, SledStore};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a {size} tmpfs to fill it: it needs root or CAP_SYS_ADMIN ({status})"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system with a ballast file until it is full; returns its path.
fn fill(root: &Path) -> PathBuf {
    let path = root.join("ballast");
    let mut file = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![7u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    // The last bytes, below a chunk.
    while file.write_all(&[7u8; 512]).is_ok() {}
    path
}

async fn create(store: &SledStore, i: usize) -> Result<TaskId, StoreError> {
    Ok(store
        .create_task(new_task(&format!("item-{i}"), Priority::Medium))
        .await?
        .task
        .id)
}

/// Creates tasks until one fails; returns the acknowledged ids and the error.
async fn create_until_refused(
    store: &SledStore,
    next: &mut usize,
    acknowledged: &mut Vec<TaskId>,
) -> StoreError {
    loop {
        match create(store, *next).await {
            Ok(id) => acknowledged.push(id),
            Err(err) => return err,
        }
        *next += 1;
        assert!(*next < 100_000, "the full disk never refused a write");
    }
}

async fn assert_all_present(store: &SledStore, acknowledged: &[TaskId]) {
    let tenant = TenantId::new("t1").expect("valid");
    for id in acknowledged {
        let task = store.get_task(&tenant, *id).await.expect("read");
        assert!(task.is_some(), "acknowledged task {id} is missing");
    }
}

async fn wait_for_recovery(store: &SledStore) -> Duration {
    let began = Instant::now();
    let mut outages = store.outages();
    let recovered = outages.wait_for(Option::is_none);
    match tokio::time::timeout(Duration::from_secs(60), recovered).await {
        Ok(Ok(_)) => began.elapsed(),
        Ok(Err(closed)) => panic!("the store went away: {closed}"),
        Err(_) => panic!("still not recovered after 60 s: {:?}", store.outage()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_until_space_returns_and_loses_nothing() {
    let disk = Tmpfs::mount("48m");
    let db = disk.path().join("db");
    let options = SledOptions::default().with_journal_segment_bytes(256 << 10);
    let store = SledStore::open_with(&db, options.clone()).expect("open");
    let mut acknowledged = Vec::new();
    let mut next = 0;
    for _ in 0..200 {
        acknowledged.push(create(&store, next).await.expect("create"));
        next += 1;
    }

    for round in 0..2 {
        let ballast = fill(disk.path());
        let err = create_until_refused(&store, &mut next, &mut acknowledged).await;
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Unavailable { .. }) && err.is_retryable(),
            "round {round}: {text}"
        );
        assert!(text.contains("the disk is full"), "{text}");
        assert!(!text.contains(&db.display().to_string()), "no path: {text}");
        let reason = store.outage().expect("the outage is reported");
        assert!(reason.contains("the disk is full"), "{reason}");
        // Writes stay refused while the disk is full, with the same clear error; reads work.
        let again = create(&store, 1_000_000 + round)
            .await
            .expect_err("still full");
        assert!(matches!(again, StoreError::Unavailable { .. }), "{again}");
        assert_all_present(&store, &acknowledged).await;

        std::fs::remove_file(&ballast).expect("free the space");
        let took = wait_for_recovery(&store).await;
        eprintln!("round {round}: recovered {took:?} after the space returned");
        acknowledged.push(create(&store, next).await.expect("writes work again"));
        next += 1;
        assert_all_present(&store, &acknowledged).await;
        assert!(store.check_consistency().expect("check").is_empty());
    }

    // A close with the disk full returns at once, and the next open has every write.
    let ballast = fill(disk.path());
    let _ = create_until_refused(&store, &mut next, &mut acknowledged).await;
    let began = Instant::now();
    store.close().expect("a close with a full disk succeeds");
    eprintln!("closed with a full disk in {:?}", began.elapsed());
    std::fs::remove_file(&ballast).expect("free the space");
    let store = SledStore::open_with(&db, options).expect("reopen");
    assert_all_present(&store, &acknowledged).await;
    let tenant = TenantId::new("t1").expect("valid");
    let listed = store
        .list_tasks(
            &tenant,
            &TaskFilter::default(),
            &PageRequest::first(100_000),
        )
        .await
        .expect("list")
        .items;
    assert_eq!(
        listed.len(),
        acknowledged.len(),
        "no refused write was applied"
    );
    assert!(store.check_consistency().expect("check").is_empty());
}
