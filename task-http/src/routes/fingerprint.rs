//! `GET /fingerprint/match`: the segments of one asset that also occur in another, from their
//! stored `fingerprint` results.

use axum::extract::State;
use axum::{Extension, Json};
use task_core::ids::{InventoryId, ProductName, TenantId, Version};
use task_core::results::AnalysisResult;
use task_fingerprint::{FingerprintData, MatchSettings, shared_segments};

use crate::body::{RawQuery, check};
use crate::error::{ApiError, FieldError, MessageBody, ValidationErrorBody};
use crate::state::{ApiState, Tenant};
use crate::views::{FingerprintMatchView, SharedSegmentView};

const PRODUCT: &str = "fingerprint";

/// The segments of `inventory_id` that also occur in `against`, with their place in both and a
/// confidence, found from the two items' `fingerprint` results (of `version`, or the latest of
/// each). Segments shorter than 10 s are not reported; ends are within about half a second.
/// 404 while either item has no fingerprint result, or when the product is not enabled.
#[utoipa::path(get, path = "/fingerprint/match", tag = "results",
    params(
        ("inventory_id" = String, Query, description = "The item whose segments are listed"),
        ("against" = String, Query, description = "The item to look for them in"),
        ("version" = Option<String>, Query, description = "The fingerprint version of both (default: the latest result of each)"),
    ),
    responses(
        (status = 200, body = FingerprintMatchView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 409, body = MessageBody), (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn match_fingerprints(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    query: RawQuery,
) -> Result<Json<FingerprintMatchView>, ApiError> {
    let mut errors = Vec::new();
    let item = |name: &str, errors: &mut Vec<FieldError>| {
        let found = query.get(name, errors, |raw| {
            InventoryId::new(raw).map_err(|e| (e.to_string(), "value_error"))
        });
        if !query.0.contains_key(name) {
            errors.push(FieldError::query(name, "Field required", "missing"));
        }
        found
    };
    let first = item("inventory_id", &mut errors);
    let against = item("against", &mut errors);
    let version = query.get("version", &mut errors, |raw| {
        Version::new(raw).map_err(|e| (e.to_string(), "value_error"))
    });
    check(errors)?;
    let (Some(first), Some(against)) = (first, against) else {
        return Err(ApiError::Internal("query parameters lost".into()));
    };
    let product = ProductName::new(PRODUCT).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !state.config.products.contains_key(&product) {
        return Err(ApiError::NotFound(
            "The fingerprint product is not enabled on this deployment".into(),
        ));
    }
    let a = stored(&state, &tenant, &product, &first, version.as_ref()).await?;
    let b = stored(&state, &tenant, &product, &against, version.as_ref()).await?;
    let (fa, fb) = (decode(&a, &first)?, decode(&b, &against)?);
    // The search reads every alignment of the two: minutes of audio take milliseconds, hours
    // take a good part of a second, so it runs off the runtime's threads.
    let segments =
        tokio::task::spawn_blocking(move || shared_segments(&fa, &fb, &MatchSettings::default()))
            .await
            .map_err(|e| ApiError::Internal(format!("the fingerprint search stopped: {e}")))?
            .map_err(|e| ApiError::Conflict(format!("the fingerprints cannot be compared: {e}")))?;
    Ok(Json(FingerprintMatchView {
        inventory_id: first.to_string(),
        against: against.to_string(),
        version: a.version.to_string(),
        against_version: b.version.to_string(),
        segments: segments
            .into_iter()
            .map(|s| SharedSegmentView {
                start: round_ms(s.start),
                end: round_ms(s.end),
                against_start: round_ms(s.against_start),
                against_end: round_ms(s.against_end),
                confidence: round_ms(s.confidence),
            })
            .collect(),
    }))
}

async fn stored(
    state: &ApiState,
    tenant: &TenantId,
    product: &ProductName,
    id: &InventoryId,
    version: Option<&Version>,
) -> Result<AnalysisResult, ApiError> {
    state
        .store
        .get_result(tenant, product, id, version)
        .await?
        .ok_or_else(|| {
            let which = version.map(|v| format!(" version {v}")).unwrap_or_default();
            ApiError::NotFound(format!(
                "No fingerprint{which} result for item {:?} yet: run a fingerprint task for it first",
                id.as_str()
            ))
        })
}

fn decode(
    result: &AnalysisResult,
    id: &InventoryId,
) -> Result<task_fingerprint::Fingerprint, ApiError> {
    serde_json::from_value::<FingerprintData>(result.data.clone())
        .map_err(|e| e.to_string())
        .and_then(|data| data.decode().map_err(|e| e.to_string()))
        .map_err(|e| {
            ApiError::Internal(format!(
                "the stored fingerprint of item {:?} cannot be read: {e}",
                id.as_str()
            ))
        })
}

fn round_ms(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
