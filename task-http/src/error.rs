//! The errors of the API and their JSON shapes.
//!
//! A validation error is 422 with `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`;
//! every other error is `{"detail": "message"}`. The `type` values follow the names clients know
//! from pydantic: `missing`, `json_invalid`, `model_type`, `string_type`, `bool_parsing`,
//! `int_parsing`, `float_parsing`, `list_type`, `enum`, `value_error`, `extra_forbidden`,
//! `too_long`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use task_core::store::StoreError;

pub use task_api::errors::{FieldError, LocItem, MessageBody, ValidationErrorBody};

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Invalid input (422).
    #[error("invalid request: {0:?}")]
    Validation(Vec<FieldError>),
    /// No valid API key (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The resource does not exist for this tenant (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the resource's state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body did not arrive in time (408).
    #[error("Request body not received within {0} s")]
    RequestTimeout(u64),
    /// The body is not JSON by its `Content-Type` (415).
    #[error("Unsupported media type {0:?}: send the body as application/json")]
    UnsupportedMediaType(String),
    /// The body is over the limit (413).
    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The store cannot serve now; trying again may work (503).
    #[error("{0}")]
    Unavailable(String),
    /// A failure inside the service (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A single validation error.
    pub fn field(error: FieldError) -> Self {
        ApiError::Validation(vec![error])
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what, id } => {
                ApiError::NotFound(format!("{what} {id} not found"))
            }
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::Invalid { field, reason } => {
                ApiError::field(FieldError::query(field, reason, "value_error"))
            }
            StoreError::Transition(e) => ApiError::Conflict(e.to_string()),
            e if e.is_retryable() => ApiError::Unavailable(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Validation(detail) => {
                (status, Json(ValidationErrorBody { detail })).into_response()
            }
            ApiError::Internal(message) => {
                // The message may name files, keys or the store's layout: it goes to the log
                // only, and the client gets the id that finds it there.
                let error_id = uuid::Uuid::now_v7();
                tracing::error!(%error_id, %message, "internal error");
                let detail = format!(
                    "Internal error {error_id}: the service log has the details under this id"
                );
                (status, Json(MessageBody { detail })).into_response()
            }
            other => {
                let detail = other.to_string();
                let mut response = (status, Json(MessageBody { detail })).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    response.headers_mut().insert(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from_static("1"),
                    );
                }
                response
            }
        }
    }
}
