//! Webhooks for the media task engine: the signature of a delivery, the policy on receiver
//! addresses, and the [`Dispatcher`] that sends a store's outbox.
//!
//! A store writes a delivery in the same atomic write as the status change that causes it
//! (see `task_core::webhooks`), so a crash between the change and the send loses nothing; the
//! dispatcher sends at least once, with the same delivery id on every attempt, and receivers
//! drop the ids they have seen. A receiver checks each request with [`verify`]:
//!
//! ```
//! use task_webhooks::{sign, verify};
//!
//! let body = br#"{"delivery_id":"...","event":"task.done"}"#;
//! let timestamp = 1_764_500_000; // the Webhook-Timestamp header, Unix seconds
//! let signature = sign("whsec_example", timestamp, body); // what taskd sends
//! // On the receiving side, with the receiver's clock: refuse anything older than 5 minutes.
//! assert!(verify("whsec_example", timestamp, &signature, body, timestamp + 10, 300).is_ok());
//! assert!(verify("whsec_example", timestamp, &signature, body, timestamp + 301, 300).is_err());
//! ```
#![deny(missing_docs)]

mod dispatcher;
mod error;
mod policy;
mod signature;

pub use dispatcher::{DeliveryStats, Dispatcher, DispatcherConfig};
pub use error::WebhookError;
pub use policy::{GuardedResolver, UrlPolicy, is_public};
pub use signature::{
    EVENT_HEADER, ID_HEADER, SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER, generate_secret,
    sign, verify,
};
