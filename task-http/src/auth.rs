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

/// The key from the header, else from the `key` query parameter.
fn presented_key(req: &Request) -> Option<String> {
    if let Some(value) = req.headers().get(API_KEY_HEADER) {
        return value.to_str().ok().map(str::to_owned);
    }
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()).ok()?;
    params
        .into_iter()
        .rev()
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value)
}

/// The tenant of `candidate`. Every configured key is compared, in constant time per key, so the
/// time taken does not tell which key (or which prefix) matched.
fn find_tenant<'a>(keys: &'a [ApiKey], candidate: &str) -> Option<&'a ApiKey> {
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
    let Some(candidate) = presented_key(&req) else {
        return ApiError::Unauthorized(
            "Missing API key: send it in the X-API-Key header or the key query parameter",
        )
        .into_response();
    };
    let Some(key) = find_tenant(&keys, &candidate) else {
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
        assert_eq!(
            find_tenant(&keys, "beta-secret").unwrap().tenant.as_str(),
            "b"
        );
        assert!(find_tenant(&keys, "beta-secre").is_none());
        assert!(find_tenant(&keys, "beta-secret2").is_none());
        assert!(find_tenant(&keys, "").is_none());
    }
}
