//! Runner scenarios over the embedded sled store, with durable commits.

mod scenarios;
mod support;

use task_store_sled::{SledOptions, SledStore};

crate::runner_scenarios!(|clock| {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = SledOptions::default().with_clock(clock);
    let store = SledStore::open_with(dir.path(), options).expect("open sled store");
    (store, dir)
});
