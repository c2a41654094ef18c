//! The hub's HTTP face: health, readiness (PostgreSQL reachable), and the
//! dashboards' JSON (edges with their lag, global impact).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Mutex;

use crate::db::{self, queries};
use crate::stats::HubStats;

pub struct HttpState {
    pub database_url: String,
    pub client: Mutex<Option<tokio_postgres::Client>>,
    pub stats: Arc<HubStats>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn with_db<T>(
    state: &HttpState,
    f: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, db::DbError>,
) -> Result<T, Response> {
    let mut guard = state.client.lock().await;
    if guard.as_ref().is_none_or(|c| c.is_closed()) {
        *guard = Some(db::connect(&state.database_url).await.map_err(|e| {
            tracing::warn!(error = %e, "PostgreSQL unreachable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "PostgreSQL is unreachable",
            )
        })?);
    }
    let client = guard.as_ref().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "no connection",
        )
    })?;
    f(client).await.map_err(|e| {
        tracing::warn!(error = %e, "query failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the query failed",
        )
    })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    match with_db(&s, async |c| Ok(c.simple_query("SELECT 1").await?)).await {
        Ok(_) => Json(json!({"status": "ready"})).into_response(),
        Err(resp) => resp,
    }
}

async fn edges(State(s): State<Arc<HttpState>>) -> Response {
    match with_db(&s, async |c| queries::edge_status(c).await).await {
        Ok(items) => Json(json!({"items": items})).into_response(),
        Err(resp) => resp,
    }
}

async fn impact(State(s): State<Arc<HttpState>>) -> Response {
    match with_db(&s, async |c| queries::global_impact(c).await).await {
        Ok(i) => Json(i).into_response(),
        Err(resp) => resp,
    }
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/edges", get(edges))
        .route("/api/v1/impact", get(impact))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(state)
}
