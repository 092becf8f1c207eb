//! The layer around every console route: cross-site POSTs are refused, error answers become
//! pages, and every answer gets the security headers.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ConsoleError, ErrorPage};
use crate::pages::layout;
use crate::state::ConsoleState;

const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// Why a state-changing request looks cross-site, if it does: the browser says so
/// (`Sec-Fetch-Site: cross-site`), or its `Origin` is not the host it was sent to.
pub(crate) fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes().eq_ignore_ascii_case(b"cross-site")
    {
        return Some("the request comes from another site");
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, host)| host);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin_host, host) {
        (Some(origin), Some(host)) if origin.eq_ignore_ascii_case(host) => None,
        _ => Some("the request's Origin is not this console's host"),
    }
}

/// The middleware.
pub(crate) async fn guard(State(state): State<ConsoleState>, req: Request, next: Next) -> Response {
    let mut response = if req.method() == Method::POST
        && let Some(reason) = cross_site(req.headers())
    {
        ConsoleError::Forbidden(reason).into_response()
    } else {
        next.run(req).await
    };
    if let Some(ErrorPage(message)) = response.extensions_mut().remove::<ErrorPage>() {
        let status = response.status();
        let page = layout::message_page(&state, status, &message);
        response = (status, page).into_response();
    }
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    axum::http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn only_same_origin_posts_pass() {
        assert!(cross_site(&headers(&[("host", "h:1")])).is_none());
        assert!(cross_site(&headers(&[("host", "h:1"), ("origin", "http://h:1")])).is_none());
        assert!(
            cross_site(&headers(&[
                ("host", "h:1"),
                ("sec-fetch-site", "same-origin")
            ]))
            .is_none()
        );
        assert!(cross_site(&headers(&[("host", "h:1"), ("origin", "http://evil:1")])).is_some());
        assert!(cross_site(&headers(&[("host", "h:1"), ("origin", "null")])).is_some());
        assert!(
            cross_site(&headers(&[
                ("host", "h:1"),
                ("sec-fetch-site", "cross-site")
            ]))
            .is_some()
        );
    }
}
