//! One tracing span per request, with the method, the path (never the query string, which may
//! hold an API key), the tenant once known, the status and the latency.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The tracing middleware.
pub(crate) async fn trace_request(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        tenant = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    async move {
        let response = next.run(req).await;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if status >= 500 {
            tracing::warn!(status, micros, "request failed");
        } else {
            tracing::debug!(status, micros, "request done");
        }
        response
    }
    .instrument(span)
    .await
}
