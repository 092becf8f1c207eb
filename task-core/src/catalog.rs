//! Catalog items: the assets a tenant registers before asking for analyses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{InventoryId, TaskId, TenantId, ValidationError};
use crate::time::Timestamp;

/// The kind of a catalog item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemType {
    /// A film or one-off video.
    Standalone,
    /// A series.
    Series,
    /// A season of a series.
    Season,
    /// An episode.
    Episode,
}

impl ItemType {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Standalone => "standalone",
            ItemType::Series => "series",
            ItemType::Season => "season",
            ItemType::Episode => "episode",
        }
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ItemType {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standalone" => Ok(ItemType::Standalone),
            "series" => Ok(ItemType::Series),
            "season" => Ok(ItemType::Season),
            "episode" => Ok(ItemType::Episode),
            other => Err(ValidationError::new(
                "type",
                other,
                "must be one of standalone, series, season, episode",
            )),
        }
    }
}

/// What a client sends to create or replace an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemUpsert {
    /// The owner.
    pub tenant: TenantId,
    /// The customer's id.
    pub inventory_id: InventoryId,
    /// The kind of item.
    pub item_type: ItemType,
    /// Human title.
    pub title: String,
    /// Where the video is (`s3://bucket/key`, ...), validated by the deployment before storing.
    pub asset_url: String,
    /// Free tags.
    pub tags: Vec<String>,
    /// Any other fields the client sent, kept as given.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The item it belongs to: an episode's season, a season's series (see
    /// [`crate::hierarchy`] for the rule every store checks). Records written before the field
    /// existed read back None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<InventoryId>,
}

/// How deeply the extra fields of an item may nest (an object or array inside the field is one
/// level). Far below the JSON decoders' own recursion limits, so that whatever a store accepts
/// it can read back, wrapped in its own records.
pub const MAX_EXTRA_DEPTH: usize = 32;

impl ItemUpsert {
    /// Checks what a store cannot hold for good: extra fields nested deeper than
    /// [`MAX_EXTRA_DEPTH`]. The error names the field.
    pub fn check(&self) -> Result<(), crate::store::StoreError> {
        for (name, value) in &self.extra {
            if nesting(value) > MAX_EXTRA_DEPTH {
                return Err(crate::store::StoreError::Invalid {
                    field: "extra",
                    reason: format!(
                        "field {name:?} nests deeper than {MAX_EXTRA_DEPTH} levels of objects and arrays"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The nesting depth of a JSON value (a scalar is 0), without recursion: a value nested
/// thousands deep is measured, not a stack overflow.
pub fn nesting(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// A stored catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// The item as last upserted.
    #[serde(flatten)]
    pub item: ItemUpsert,
    /// First creation time.
    pub created_at: Timestamp,
    /// Last upsert or delete time.
    pub updated_at: Timestamp,
    /// Set when soft-deleted.
    pub deleted_at: Option<Timestamp>,
}

/// The result of a soft delete.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedItem {
    /// The item, now marked deleted.
    pub item: CatalogItem,
    /// Its tasks that were active and got a cancel request.
    pub cancelled_tasks: Vec<TaskId>,
}
