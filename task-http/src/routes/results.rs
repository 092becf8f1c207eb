//! `GET /results/{product}/{inventory_id}`: a stored result, presented per product.

use axum::extract::State;
use axum::{Extension, Json};
use task_core::ids::{InventoryId, ProductName, Version};

use crate::body::{ApiPath, RawQuery, check, path_param};
use crate::error::{ApiError, MessageBody, ValidationErrorBody};
use crate::state::{ApiState, Tenant};
use crate::views::ResultView;

/// The result of an analysis: of `version`, or the most recent one without it. For `adbreaks`
/// the filters (minutes) apply: `minimum_separation` (default 1), `maximum_separation`
/// (default 5), `skip_first` (default 0), `skip_last` (default 0). Other query parameters are
/// ignored. 404 while no result exists. adbreaks groups are ranked by score, not by time: a
/// group's score is the mean score of its candidate points (a point's score is the seconds of
/// black and silence together around it); rank 1 is the highest score, and equal scores go to
/// the group that starts earlier. For `scenes`, `data` holds the shots as `[start, end]` in
/// seconds, covering the asset, and the cuts between them with scdet's score (0-100). For
/// `thumbnails`, `data` holds one still per shot (black shots have none, at most the configured
/// number, from the longest shots), in time order: its time and shot in seconds, the JPEG's key
/// in the output store (`{prefix}/{tenant}/{inventory_id}/thumbnails/{version}/{NNN}.jpg`) and
/// URL (`s3://bucket/key` or `file:///dir/key`), its width and height in pixels, and its mean
/// luma (0-255).
#[utoipa::path(get, path = "/results/{product}/{inventory_id}", tag = "results",
    params(
        ("product" = String, Path, description = "An enabled product"),
        ("inventory_id" = String, Path, description = "The catalog item"),
        ("version" = Option<String>, Query, description = "The product version (default: the latest result)"),
        ("minimum_separation" = Option<f64>, Query, description = "adbreaks: minutes between breaks, at least (default 1)"),
        ("maximum_separation" = Option<f64>, Query, description = "adbreaks: minutes between breaks, at most (default 5)"),
        ("skip_first" = Option<f64>, Query, description = "adbreaks: minutes skipped at the start (default 0)"),
        ("skip_last" = Option<f64>, Query, description = "adbreaks: minutes skipped at the end (default 0)"),
    ),
    responses(
        (status = 200, body = ResultView),
        (status = 401, body = MessageBody), (status = 404, body = MessageBody),
        (status = 422, body = ValidationErrorBody),
    ))]
pub(crate) async fn get_result(
    State(state): State<ApiState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((product, inventory_id)): ApiPath<(String, String)>,
    query: RawQuery,
) -> Result<Json<ResultView>, ApiError> {
    let mut errors = Vec::new();
    let product = path_param::<ProductName>("product", &product, &mut errors);
    let id = path_param::<InventoryId>("inventory_id", &inventory_id, &mut errors);
    let version = query.get("version", &mut errors, |raw| {
        Version::new(raw).map_err(|e| (e.to_string(), "value_error"))
    });
    if let Some(product) = &product {
        let loc = ["path".into(), "product".into()];
        let version_loc = ["query".into(), "version".into()];
        state.check_product(product, version.as_ref(), &loc, &version_loc, &mut errors);
    }
    check(errors)?;
    let (Some(product), Some(id)) = (product, id) else {
        return Err(ApiError::Internal("path parameters lost".into()));
    };
    let mut params = query.0;
    params.remove("key");
    params.remove("version");
    let presenter = state.config.presenters.get(&product).cloned();
    if let Some(presenter) = &presenter {
        presenter.validate(&params).map_err(ApiError::Validation)?;
    }
    let result = state
        .store
        .get_result(&tenant, &product, &id, version.as_ref())
        .await?
        .ok_or_else(|| {
            let which = version
                .as_ref()
                .map(|v| format!(" version {v}"))
                .unwrap_or_default();
            ApiError::NotFound(format!(
                "No {product}{which} result for item {:?} yet",
                id.as_str()
            ))
        })?;
    let data = match presenter {
        Some(presenter) => presenter
            .present(&result.data, &params)
            .map_err(ApiError::Validation)?,
        None => result.data.clone(),
    };
    Ok(Json(ResultView::of(&result, data)))
}
