//! The console's pages, one module each.

pub(crate) mod asset;
pub(crate) mod bulk;
pub(crate) mod layout;
pub(crate) mod overview;
pub(crate) mod results;
pub(crate) mod sign_in;
pub(crate) mod task;
pub(crate) mod tasks;
