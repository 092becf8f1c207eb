//! What a deployment decides: API keys and tenants, enabled products, hooks and limits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use task_core::ids::{ProductName, TenantId, Version};

use crate::error::FieldError;

/// Checks an `asset_url` that a tenant sends at ingest; `Err` holds the reason shown to the
/// client.
pub type AssetUrlValidator = Arc<dyn Fn(&TenantId, &str) -> Result<(), String> + Send + Sync>;

/// The query parameters of a results request, decoded, without `key` and `version`.
pub type QueryParams = BTreeMap<String, String>;

/// Turns a stored result's `data` into what a client sees, using the request's query
/// parameters (for `adbreaks`: the separation and skip filters).
pub trait ResultPresenter: Send + Sync + 'static {
    /// Checks the query parameters before the result is read, so a bad filter is a 422 even
    /// while no result exists. The default accepts everything.
    fn validate(&self, query: &QueryParams) -> Result<(), Vec<FieldError>> {
        let _ = query;
        Ok(())
    }

    /// The presented data, or the query parameters that are invalid (with `loc` `["query", name]`).
    fn present(&self, data: &Value, query: &QueryParams) -> Result<Value, Vec<FieldError>>;
}

impl<F> ResultPresenter for F
where
    F: Fn(&Value, &QueryParams) -> Result<Value, Vec<FieldError>> + Send + Sync + 'static,
{
    fn present(&self, data: &Value, query: &QueryParams) -> Result<Value, Vec<FieldError>> {
        self(data, query)
    }
}

/// One enabled product.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductConfig {
    /// The versions clients may ask for; `None` accepts any well-formed version.
    pub versions: Option<BTreeSet<Version>>,
}

/// An API key and the tenant it belongs to. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The secret.
    pub key: String,
    /// The tenant the key acts for.
    pub tenant: TenantId,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"<redacted>")
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// The configuration of the service.
#[derive(Clone)]
pub struct ServiceConfig {
    /// Accepted API keys; a request without one of them is refused with 401.
    pub api_keys: Vec<ApiKey>,
    /// Products clients may create tasks for and read results of.
    pub products: BTreeMap<ProductName, ProductConfig>,
    /// Checks asset URLs at ingest; `None` accepts any non-empty URL.
    pub asset_url_validator: Option<AssetUrlValidator>,
    /// Presentation of results per product; products without one return the stored data as is.
    pub presenters: HashMap<ProductName, Arc<dyn ResultPresenter>>,
    /// The largest request body accepted, in bytes; larger ones answer 413. Default 1 MiB.
    pub body_limit: usize,
    /// The longest a long-poll (`GET /task/{id}?wait=`) waits; longer waits are capped. Default 60 s.
    pub max_wait: Duration,
    /// The most entries of one `POST /tasks/batch`. Default 5,000.
    pub max_batch: usize,
    /// The prefix the router is mounted under, used in `_links` (e.g. `/api`). Default empty.
    pub base_path: String,
    /// How often an idle event stream sends a keep-alive comment. Default 15 s.
    pub keep_alive: Duration,
    /// How long a client has to send a whole request body once it starts the request
    /// (a stalled body then gets 408). Default 30 s.
    pub body_read_timeout: Duration,
    /// Which webhook receivers `POST /webhooks` accepts. Default: public addresses only.
    pub webhook_policy: task_webhooks::UrlPolicy,
}

impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("api_keys", &self.api_keys)
            .field("products", &self.products)
            .field("asset_url_validator", &self.asset_url_validator.is_some())
            .field("presenters", &self.presenters.keys().collect::<Vec<_>>())
            .field("body_limit", &self.body_limit)
            .field("max_wait", &self.max_wait)
            .field("max_batch", &self.max_batch)
            .field("base_path", &self.base_path)
            .field("webhook_policy", &self.webhook_policy)
            .finish_non_exhaustive()
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            products: BTreeMap::new(),
            asset_url_validator: None,
            presenters: HashMap::new(),
            body_limit: 1024 * 1024,
            max_wait: Duration::from_secs(60),
            max_batch: 5000,
            base_path: String::new(),
            keep_alive: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(30),
            webhook_policy: task_webhooks::UrlPolicy::default(),
        }
    }
}

impl ServiceConfig {
    /// A configuration with no keys and no products (every request is refused until added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `key` for `tenant`.
    pub fn with_api_key(mut self, key: impl Into<String>, tenant: TenantId) -> Self {
        self.api_keys.push(ApiKey {
            key: key.into(),
            tenant,
        });
        self
    }

    /// Enables `product` for any version.
    pub fn with_product(mut self, product: ProductName) -> Self {
        self.products.insert(product, ProductConfig::default());
        self
    }

    /// Enables `product` for the given versions only.
    pub fn with_product_versions(
        mut self,
        product: ProductName,
        versions: impl IntoIterator<Item = Version>,
    ) -> Self {
        let versions = Some(versions.into_iter().collect());
        self.products.insert(product, ProductConfig { versions });
        self
    }

    /// Sets the asset URL check applied at ingest, the same for every tenant.
    pub fn with_asset_url_validator(
        mut self,
        validator: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.asset_url_validator = Some(Arc::new(move |_: &TenantId, url: &str| validator(url)));
        self
    }

    /// Sets the asset URL check applied at ingest, given the tenant that sends the URL (for
    /// per-tenant asset scopes).
    pub fn with_tenant_asset_url_validator(
        mut self,
        validator: impl Fn(&TenantId, &str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.asset_url_validator = Some(Arc::new(validator));
        self
    }

    /// Sets how results of `product` are presented.
    pub fn with_presenter(mut self, product: ProductName, presenter: impl ResultPresenter) -> Self {
        self.presenters.insert(product, Arc::new(presenter));
        self
    }

    /// Sets the body size limit in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets the prefix used in `_links`.
    pub fn with_base_path(mut self, base_path: impl Into<String>) -> Self {
        self.base_path = base_path.into().trim_end_matches('/').to_owned();
        self
    }
}
