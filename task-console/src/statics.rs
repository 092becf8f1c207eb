//! The stylesheet and the script, embedded in the binary, and the console's "not found".

use axum::http::header;
use axum::response::IntoResponse;

use crate::error::ConsoleError;

const CSS: &str = include_str!("../static/console.css");
const JS: &str = include_str!("../static/console.js");

/// `GET /static/console.css`.
pub(crate) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

/// `GET /static/console.js`.
pub(crate) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
}

/// Any other path under the console.
pub(crate) async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("This page".to_owned())
}
