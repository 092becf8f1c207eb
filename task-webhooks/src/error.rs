//! What can go wrong with a subscription's URL or a delivery.

use std::net::IpAddr;

use task_core::store::StoreError;

/// The crate's error.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not an acceptable receiver.
    #[error("invalid webhook URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (at most 300 characters).
        url: String,
        /// Why.
        reason: String,
    },
    /// The URL's host resolves to an address the deployment refuses.
    #[error(
        "webhook URL {url:?} resolves to {address}, a loopback, private, link-local or reserved \
         address; this deployment only calls public addresses (the operator can allow others \
         with webhooks.allow_private_addresses)"
    )]
    ForbiddenAddress {
        /// The URL as given (at most 300 characters).
        url: String,
        /// The refused address.
        address: IpAddr,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

impl WebhookError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WebhookError::InvalidUrl { .. } | WebhookError::ForbiddenAddress { .. } => false,
            WebhookError::Store(e) => e.is_retryable(),
            WebhookError::Client(_) => false,
        }
    }
}
