//! The in-memory reference store passes the conformance suite.

use std::sync::Arc;

use task_core::memory::MemoryStore;
use task_core::time::ManualClock;

task_core::conformance_suite!(|clock: ManualClock| (MemoryStore::new(Arc::new(clock)), ()));
