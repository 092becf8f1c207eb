//! The sled store passes task-core's conformance suite, in strict durability (writes reach
//! sled through the journal) and in buffered durability (calls return at commit, and the
//! journal is fsynced on a timer).

use std::sync::Arc;
use std::time::Duration;

use task_core::time::ManualClock;
use task_store_sled::{Durability, SledOptions, SledStore};

fn open(clock: ManualClock, durability: Durability) -> (SledStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SledOptions::default()
        .with_clock(Arc::new(clock))
        .with_durability(durability);
    let store = SledStore::open_with(dir.path(), options).expect("open");
    (store, dir)
}

task_core::conformance_suite!(|clock: ManualClock| open(clock, Durability::Strict));

mod buffered {
    use super::*;

    task_core::conformance_suite!(|clock: ManualClock| open(
        clock,
        Durability::Buffered {
            interval: Duration::from_millis(5),
        }
    ));
}
