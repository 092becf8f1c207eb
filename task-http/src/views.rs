//! The JSON bodies the API returns, defined in `task-api` so that clients read the same types.

pub use task_api::fingerprint::*;
pub use task_api::views::*;
