//! Runner scenarios over the in-memory store.

mod scenarios;
mod support;

use task_core::memory::MemoryStore;

crate::runner_scenarios!(|clock| (MemoryStore::new(clock), ()));
