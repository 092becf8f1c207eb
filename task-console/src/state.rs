//! What every handler shares, and the extractors of a signed-in request.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use task_core::store::Store;
use task_http::ServiceConfig;
use tokio_util::sync::CancellationToken;

use crate::error::ConsoleError;
use crate::session::{COOKIE, Session, Sessions};

/// The store, the API's configuration, the sessions and the mount path.
#[derive(Clone)]
pub(crate) struct ConsoleState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServiceConfig>,
    pub sessions: Arc<Sessions>,
    /// Where the console is mounted, e.g. `/ui` (no trailing slash).
    pub base: Arc<str>,
    /// Ends the live streams at shutdown.
    pub drain: CancellationToken,
}

impl ConsoleState {
    /// A path under the console's mount point.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The value of the session cookie among the request's cookies.
fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// A request without a valid session is sent to the sign-in page.
impl FromRequestParts<ConsoleState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        session_cookie(parts)
            .and_then(|value| state.sessions.verify(value, now_ms()))
            .ok_or_else(|| Redirect::to(&state.at("/sign-in")).into_response())
    }
}

/// A form that carries the anti-forgery token.
pub(crate) trait WithToken {
    /// The token the form carried.
    fn token(&self) -> &str;
}

/// A signed-in POST whose form carries the session's token; anything else is refused with 403.
pub(crate) struct Posted<T> {
    /// The session.
    pub session: Session,
    /// The form.
    pub form: T,
}

impl<T> FromRequest<ConsoleState> for Posted<T>
where
    T: DeserializeOwned + WithToken + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let axum::Form(form) = axum::Form::<T>::from_request(req, state)
            .await
            .map_err(|_| ConsoleError::Forbidden("the form is malformed").into_response())?;
        if !state.sessions.csrf_matches(&session, form.token()) {
            return Err(
                ConsoleError::Forbidden("the form's token does not match the session")
                    .into_response(),
            );
        }
        Ok(Self { session, form })
    }
}
