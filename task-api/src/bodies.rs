//! The bodies clients send. The server reads them field by field (to name each invalid input in
//! a 422); these types give their shape to the OpenAPI document and to typed clients.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The body of `POST /task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewTaskBody {
    /// The catalog item to analyse; it must have been ingested.
    pub inventory_id: String,
    /// An enabled product.
    pub product: String,
    /// The product version, e.g. `1.0.1`.
    pub version: String,
    /// `high`, `medium` or `low` (default `low`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

impl NewTaskBody {
    /// A task of `product` `version` on item `inventory_id`, at the default (low) priority.
    pub fn new(inventory_id: &str, product: &str, version: &str) -> Self {
        Self {
            inventory_id: inventory_id.to_owned(),
            product: product.to_owned(),
            version: version.to_owned(),
            priority: None,
        }
    }

    /// The same at `priority` (`high`, `medium` or `low`).
    pub fn with_priority(mut self, priority: &str) -> Self {
        self.priority = Some(priority.to_owned());
        self
    }
}

/// The body of `POST /tasks/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchBody {
    /// The tasks to create, each like the body of `POST /task`.
    pub tasks: Vec<NewTaskBody>,
}

/// The body of `PUT /catalog/v1/item`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ItemBody {
    /// The inventory id: 1-256 characters, no control characters.
    pub id: String,
    /// `standalone`, `series`, `season` or `episode`.
    #[serde(rename = "type")]
    pub item_type: String,
    /// Title.
    pub title: String,
    /// Where the video is, in a scheme the deployment allows (e.g. `s3://bucket/key`).
    pub asset_url: String,
    /// Free tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// The inventory id of the item it belongs to: an episode's season, a season's series
    /// (null or absent: none). The parent must be a live item of the tenant of that type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Other fields, stored and returned as given (at most 32 levels deep).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

impl ItemBody {
    /// An item without tags or other fields.
    pub fn new(id: &str, item_type: &str, title: &str, asset_url: &str) -> Self {
        Self {
            id: id.to_owned(),
            item_type: item_type.to_owned(),
            title: title.to_owned(),
            asset_url: asset_url.to_owned(),
            tags: None,
            parent_id: None,
            extra: Map::new(),
        }
    }

    /// The same item under `parent_id` (an episode's season, a season's series).
    pub fn with_parent(mut self, parent_id: &str) -> Self {
        self.parent_id = Some(parent_id.to_owned());
        self
    }
}

/// The body of `POST /tasks/catalog-item/.../version/{version}`; may be empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PriorityBody {
    /// `high`, `medium` or `low` (default `low`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}
