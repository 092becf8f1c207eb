//! `SledOptions::with_log_cleaning` reaches sled: its background thread ("log flusher", which
//! also cleans the log) runs only when asked for. Its own test binary, so that no other test's
//! store runs threads in this process.

use task_store_sled::{SledOptions, SledStore};

/// Threads of this process whose name is sled's background thread's.
fn sled_background_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == "log flusher")
        })
        .count()
}

#[test]
fn sled_cleans_its_log_only_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");

    let store = SledStore::open(dir.path()).expect("open");
    assert_eq!(sled_background_threads(), 0, "log cleaning is off by default");
    store.close().expect("close");

    let options = SledOptions::default().with_log_cleaning(true);
    let store = SledStore::open_with(dir.path(), options).expect("open with log cleaning");
    assert_eq!(sled_background_threads(), 1, "log cleaning asked for");
    store.close().expect("close");
}
