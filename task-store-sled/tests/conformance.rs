//! The sled store passes task-core's conformance suite, in strict durability.

use std::sync::Arc;

use task_core::time::ManualClock;
use task_store_sled::{SledOptions, SledStore};

task_core::conformance_suite!(|clock: ManualClock| {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open_with(
        dir.path(),
        SledOptions::default().with_clock(Arc::new(clock)),
    )
    .expect("open");
    (store, dir)
});
