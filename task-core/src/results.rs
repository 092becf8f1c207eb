//! Analysis results, one per (tenant, product, inventory id, version).

use serde::{Deserialize, Serialize};

use crate::ids::{InventoryId, ProductName, TaskId, TenantId, Version};
use crate::time::Timestamp;

/// The stored output of a product's analysis of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisResult {
    /// The owner.
    pub tenant: TenantId,
    /// The product.
    pub product: ProductName,
    /// The catalog item.
    pub inventory_id: InventoryId,
    /// The product version.
    pub version: Version,
    /// The task that produced it.
    pub task_id: TaskId,
    /// When it was written.
    pub updated_at: Timestamp,
    /// The product's own data.
    pub data: serde_json::Value,
}
