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
