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
    })
}

/// Readiness: 200 when the store answers a read, 503 when it does not or while draining.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = HealthView), (status = 503, body = HealthView)))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<HealthView>) {
    if state.drain.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthView {
                status: "draining".to_owned(),
            }),
        );
    }
    match state.store.next_wakeup().await {
        Ok(_) => (
            StatusCode::OK,
            Json(HealthView {
                status: "ready".to_owned(),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthView {
                    status: "unavailable".to_owned(),
                }),
            )
        }
    }
}
