//! The state every handler shares, and the checks several routes need.

use std::sync::Arc;

use task_core::ids::{InventoryId, ProductName, TenantId, Version};
use task_core::store::Store;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::error::{ApiError, FieldError, LocItem};

/// The store, the configuration and the drain signal.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServiceConfig>,
    /// Tripped by [`crate::TaskApi::drain`]: streams and long-polls end so shutdown completes.
    pub drain: CancellationToken,
    /// The OpenAPI document, set when the router is built.
    pub openapi: Arc<std::sync::OnceLock<serde_json::Value>>,
}

/// The tenant the request's API key belongs to, set by the auth layer.
#[derive(Debug, Clone)]
pub(crate) struct Tenant(pub TenantId);

impl ApiState {
    /// Checks that `product` is enabled and that `version` is one of its versions.
    pub fn check_product(
        &self,
        product: &ProductName,
        version: Option<&Version>,
        loc: &[LocItem],
        version_loc: &[LocItem],
        errors: &mut Vec<FieldError>,
    ) {
        let Some(config) = self.config.products.get(product) else {
            let enabled: Vec<&str> = self.config.products.keys().map(|p| p.as_str()).collect();
            errors.push(FieldError::new(
                loc.to_vec(),
                format!(
                    "Product {:?} is not enabled on this deployment (enabled: {})",
                    product.as_str(),
                    if enabled.is_empty() {
                        "none".to_owned()
                    } else {
                        enabled.join(", ")
                    }
                ),
                "enum",
            ));
            return;
        };
        if let (Some(versions), Some(version)) = (&config.versions, version)
            && !versions.contains(version)
        {
            let known: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
            errors.push(FieldError::new(
                version_loc.to_vec(),
                format!(
                    "Version {:?} of {product} is not supported (supported: {})",
                    version.as_str(),
                    known.join(", ")
                ),
                "enum",
            ));
        }
    }

    /// Fails with 404 unless the tenant's catalog holds `inventory_id` (not deleted).
    pub async fn require_item(
        &self,
        tenant: &TenantId,
        inventory_id: &InventoryId,
    ) -> Result<(), ApiError> {
        match self.store.get_item(tenant, inventory_id, false).await? {
            Some(_) => Ok(()),
            None => Err(not_in_catalog(inventory_id)),
        }
    }
}

/// The refusal of a task for an item that is not in the catalog.
pub(crate) fn not_in_catalog(inventory_id: &InventoryId) -> ApiError {
    ApiError::NotFound(format!(
        "Catalog item {:?} not found: ingest it first with PUT /catalog/v1/item",
        inventory_id.as_str()
    ))
}
