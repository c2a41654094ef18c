//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::auth::Caller;
use super::dto::{HealthJson, SyncJson};
use super::error::{ApiError, AuthErrors, ErrorBody};
use super::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = HealthJson)))]
pub async fn healthz() -> Json<HealthJson> {
    Json(HealthJson { status: "ok" })
}

/// The edge can commit writes.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = HealthJson),
        (status = 503, description = "The store cannot commit", body = ErrorBody)))]
pub async fn readyz(State(edge): State<AppState>) -> Result<Json<HealthJson>, ApiError> {
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

/// The link to the hub: connected?, how far behind? Admins only.
#[utoipa::path(get, path = "/sync", tag = "health", security(("bearer" = [])),
    responses((status = 200, body = SyncJson), AuthErrors))]
pub async fn sync_status(
    State(edge): State<AppState>,
    caller: Caller,
) -> Result<Json<SyncJson>, ApiError> {
    caller.require_admin()?;
    let committed = edge.committed_seq();
    let s = edge.link.borrow().clone();
    let backlog = committed.saturating_sub(s.acked_seq);
    Ok(Json(SyncJson {
        enabled: s.enabled,
        connected: s.connected,
        committed_seq: committed,
        acked_seq: s.acked_seq,
        backlog,
        // Refreshed every second; nothing unacknowledged is no lag at all.
        lag_seconds: if backlog == 0 { 0.0 } else { s.lag_seconds },
        lease_epoch: s.lease_epoch,
        lease_conflicts: s
            .conflicts
            .iter()
            .map(|c| crate::cells::token(*c))
            .collect(),
        neighbours_imported: s.neighbours_imported,
        sessions: s.sessions,
        last_error: s.last_error,
    }))
}
