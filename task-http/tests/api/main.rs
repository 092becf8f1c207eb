//! The Task API over real HTTP: a reqwest client against the router served on a free port.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod abuse;
mod auth;
mod batch;
mod catalog;
mod catalog_parents;
mod common;
mod errors;
mod fingerprint;
mod hygiene;
mod live;
mod openapi;
mod queries;
mod readback;
mod results;
mod tasks;
