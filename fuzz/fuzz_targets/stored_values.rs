//! Values the sled store reads back from its trees (task records with their history, catalog
//! items, history entries), as a damaged disk could hold them: decoded or refused, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use task_store_sled::fuzzing;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::stored_values(data);
});
