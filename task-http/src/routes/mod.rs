//! The route handlers, one module per resource.

pub(crate) mod batch;
pub(crate) mod catalog;
pub(crate) mod fingerprint;
pub(crate) mod health;
pub(crate) mod natural;
pub(crate) mod results;
pub(crate) mod tasks;
pub(crate) mod webhooks;
