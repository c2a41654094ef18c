//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::dto::HealthJson;
use super::error::{ApiError, ErrorBody};
use crate::service::EdgeHandle;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = HealthJson)))]
pub async fn healthz() -> Json<HealthJson> {
    Json(HealthJson { status: "ok" })
}

/// The edge can commit writes.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = HealthJson), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(edge): State<EdgeHandle>) -> Result<Json<HealthJson>, ApiError> {
    if edge.is_ready() {
        Ok(Json(HealthJson { status: "ready" }))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store cannot commit",
        ))
    }
}
