//! The one error type of the console, and how it becomes a page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use task_core::store::StoreError;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The page's subject does not exist for this tenant (404).
    #[error("{0} not found")]
    NotFound(String),
    /// The input cannot be used (400), e.g. a malformed filter.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The input's name.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The request was refused (403): a cross-site or forged form.
    #[error("refused: {0}")]
    Forbidden(&'static str),
    /// The request conflicts with the subject's state (409), e.g. cancelling a finished task.
    #[error("{0}")]
    Conflict(String),
    /// The store failed (503 when trying again may help, else 500).
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The session secret cannot be used.
    #[error("the console's session secret cannot be used: {0}")]
    Secret(String),
}

impl ConsoleError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            ConsoleError::Store(StoreError::Invalid { .. }) => StatusCode::BAD_REQUEST,
            ConsoleError::Store(StoreError::Conflict(_) | StoreError::Transition(_)) => {
                StatusCode::CONFLICT
            }
            ConsoleError::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Store(_) | ConsoleError::Secret(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The message of an error answer; the console's layer turns it into a page (it knows the
/// mount path and the session, which an error does not).
#[derive(Debug, Clone)]
pub(crate) struct ErrorPage(pub String);

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "console request failed");
        }
        let mut response = status.into_response();
        response
            .extensions_mut()
            .insert(ErrorPage(self.to_string()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_answer_503_when_retrying_may_help_else_500() {
        let unavailable = StoreError::Unavailable {
            backend: "sled",
            reason: "disk full".into(),
        };
        assert_eq!(
            ConsoleError::from(unavailable).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let broken = StoreError::Backend {
            backend: "sled",
            operation: "counting tasks by status",
            message: "not kept".into(),
            retryable: false,
        };
        assert_eq!(
            ConsoleError::from(broken).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let response = ConsoleError::NotFound("Task x".into()).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let page = response
            .extensions()
            .get::<ErrorPage>()
            .map(|p| p.0.clone());
        assert_eq!(page.as_deref(), Some("Task x not found"));
    }
}
