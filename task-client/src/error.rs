//! What a call can fail with.

use task_api::errors::{FieldError, LocItem};

/// The error of a [`Client`](crate::Client) call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error status: the contract's status and its `detail`.
    #[error("{method} {path}: {status} {detail}")]
    Api {
        /// The HTTP method.
        method: String,
        /// The path called.
        path: String,
        /// The HTTP status (401, 404, 409, 413, 415, 422, 503...).
        status: u16,
        /// The answer's `detail`.
        detail: Detail,
    },
    /// The service could not be reached, or the connection broke (after the retries of an
    /// idempotent call).
    #[error("{method} {url}: {source}")]
    Transport {
        /// The HTTP method.
        method: String,
        /// The URL called.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what the contract says.
    #[error("{method} {url}: unreadable answer: {reason}")]
    Decode {
        /// The HTTP method.
        method: String,
        /// The URL called.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The base URL given to [`Client::new`](crate::Client::new) is not an http(s) URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the service said the thing asked for does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether trying again later may succeed: the service is unavailable (503, e.g. its disk
    /// is full) or could not be reached.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Transport { .. }) || self.status() == Some(503)
    }
}

/// The `detail` of an error answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// A message (every status but 422).
    Message(String),
    /// Every invalid input (422), each naming its field.
    Invalid(Vec<FieldError>),
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detail::Message(message) => f.write_str(message),
            Detail::Invalid(errors) => {
                let parts: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        let loc: Vec<String> = e
                            .loc
                            .iter()
                            .map(|l| match l {
                                LocItem::Name(name) => name.clone(),
                                LocItem::Index(index) => index.to_string(),
                            })
                            .collect();
                        format!("{} at {}: {}", e.kind, loc.join("."), e.msg)
                    })
                    .collect();
                f.write_str(&parts.join("; "))
            }
        }
    }
}
