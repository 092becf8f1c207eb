//! The PostgreSQL store passes task-core's conformance suite against a real server, each test
//! in a schema of its own (so they run in parallel), dropped at the end.

mod support;

use task_core::time::ManualClock;

task_core::conformance_suite!(|clock: ManualClock| support::open(clock));
