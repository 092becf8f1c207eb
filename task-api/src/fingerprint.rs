//! The body of `GET /fingerprint/match`: the segments two assets share.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stretch of sound found in both assets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SharedSegmentView {
    /// Where it starts in `inventory_id`, seconds.
    pub start: f64,
    /// Where it ends in `inventory_id`, seconds.
    pub end: f64,
    /// Where it starts in `against`, seconds.
    pub against_start: f64,
    /// Where it ends in `against`, seconds.
    pub against_end: f64,
    /// How alike the two are, from 0 (unrelated sound) to 1 (every bit of the fingerprints
    /// agrees).
    pub confidence: f64,
}

/// The segments of `inventory_id` that also occur in `against`, from their fingerprints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FingerprintMatchView {
    /// The item whose segments are listed.
    pub inventory_id: String,
    /// The item they were looked for in.
    pub against: String,
    /// The fingerprint version of `inventory_id` that was used.
    pub version: String,
    /// The fingerprint version of `against` that was used.
    pub against_version: String,
    /// The shared segments, in `inventory_id`'s order.
    pub segments: Vec<SharedSegmentView>,
}
