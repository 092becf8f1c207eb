//! The runner: turns stored tasks into finished ones.
#![deny(missing_docs)]

pub mod step;
