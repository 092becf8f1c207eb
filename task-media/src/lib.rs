//! The media steps of the task engine.
#![deny(missing_docs)]
