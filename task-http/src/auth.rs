//! API keys: found in the `X-API-Key` header or the `key` query parameter, compared in constant
//! time, mapped to a tenant. Keys are never logged: the request span records the path only.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConstantTimeEq};

use crate::config::ApiKey;
use crate::error::ApiError;
use crate::state::Tenant;

/// The header that carries the key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The one key the request presents, in the `X-API-Key` header or the `key` query parameter.
/// Several keys (two headers, a repeated parameter, a header and a parameter that differ) are
/// refused rather than guessed between.
fn presented_key(req: &Request) -> Result<Option<String>, &'static str> {
    let mut headers = req.headers().get_all(API_KEY_HEADER).iter();
    let header = headers.next();
    if headers.next().is_some() {
        return Err("Ambiguous credentials: the X-API-Key header is sent more than once");
    }
    let header = header
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| "Invalid API key: the X-API-Key header is not visible ASCII")
        })
        .transpose()?;
    let params = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|Query(params)| params)
        .unwrap_or_default();
    let mut keys = params.into_iter().filter(|(name, _)| name == "key");
    let query = keys.next().map(|(_, value)| value);
    if keys.next().is_some() {
        return Err("Ambiguous credentials: the key query parameter is given more than once");
    }
    match (header, query) {
        (Some(header), Some(query)) if header != query => {
            Err("Ambiguous credentials: the X-API-Key header and the key query parameter differ")
        }
        (Some(key), _) | (None, Some(key)) => Ok(Some(key)),
        (None, None) => Ok(None),
    }
}

/// The configured key equal to `candidate`, with its tenant. Every configured key is compared,
/// in constant time per key, so the time taken does not tell which key (or which prefix)
/// matched.
pub fn find_key<'a>(keys: &'a [ApiKey], candidate: &str) -> Option<&'a ApiKey> {
    let mut found: Option<&ApiKey> = None;
    for key in keys {
        let equal: Choice = key.key.as_bytes().ct_eq(candidate.as_bytes());
        if bool::from(equal) {
            found = Some(key);
        }
    }
    found
}

/// The auth middleware: 401 without a valid key, else the tenant goes into the request.
pub(crate) async fn authenticate(
    State(keys): State<Arc<Vec<ApiKey>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = match presented_key(&req) {
        Ok(presented) => presented,
        Err(reason) => return ApiError::Unauthorized(reason).into_response(),
    };
    let Some(candidate) = presented else {
        return ApiError::Unauthorized(
            "Missing API key: send it in the X-API-Key header or the key query parameter",
        )
        .into_response();
    };
    let Some(key) = find_key(&keys, &candidate) else {
        return ApiError::Unauthorized("Invalid API key").into_response();
    };
    tracing::Span::current().record("tenant", key.tenant.as_str());
    req.extensions_mut().insert(Tenant(key.tenant.clone()));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use task_core::ids::TenantId;

    #[test]
    fn only_an_exact_key_matches() {
        let keys = vec![
            ApiKey {
                key: "alpha-secret".into(),
                tenant: TenantId::new("a").unwrap(),
            },
            ApiKey {
                key: "beta-secret".into(),
                tenant: TenantId::new("b").unwrap(),
            },
        ];
        assert_eq!(find_key(&keys, "beta-secret").unwrap().tenant.as_str(), "b");
        assert!(find_key(&keys, "beta-secre").is_none());
        assert!(find_key(&keys, "beta-secret2").is_none());
        assert!(find_key(&keys, "").is_none());
    }
}
