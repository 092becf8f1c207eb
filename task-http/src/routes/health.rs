//! `/healthz` (the process answers) and `/readyz` (the store answers and the service is not
//! draining). Neither needs an API key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::state::ApiState;
use crate::views::HealthView;

/// Liveness: 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = HealthView)))]
pub(crate) async fn healthz() -> Json<HealthView> {
    Json(HealthView {
        status: "ok".to_owned(),
        reason: None,
    })
}

/// Readiness: 200 when the store answers a read and takes writes; 503 while draining, or when
/// the store cannot serve (`reason` says why, e.g. its disk is full: writes answer 503 too
/// until it recovers by itself).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = HealthView), (status = 503, body = HealthView)))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<HealthView>) {
    if state.drain.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthView {
                status: "draining".to_owned(),
                reason: None,
            }),
        );
    }
    let unavailable = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthView {
                status: "unavailable".to_owned(),
                reason: Some(reason),
            }),
        )
    };
    if let Some(outage) = state.store.outage() {
        return unavailable(outage);
    }
    match state.store.next_wakeup().await {
        Ok(_) => (
            StatusCode::OK,
            Json(HealthView {
                status: "ready".to_owned(),
                reason: None,
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            unavailable("the store does not answer reads".to_owned())
        }
    }
}
