//! Runner scenarios over the embedded sled store, with durable commits.

mod scenarios;
mod support;

use task_store_sled::SledStore;

crate::runner_scenarios!(|| {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open sled store");
    (store, dir)
});
