//! The hub's HTTP face: health, readiness (PostgreSQL reachable, and every
//! Citus worker where Citus is) and metrics, open to all; behind a bearer
//! token ([`auth`]) or the dashboard's session cookie ([`session`]): the
//! fleet's JSON ([`fleet`]) and, for admins, minting login codes
//! ([`signin`]); the dashboard page itself ([`dashboard`]).

pub mod auth;
pub mod dashboard;
pub mod fleet;
pub mod session;
pub mod signin;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::db::{self, queries};
use crate::stats::HubStats;

/// How long a request waits for PostgreSQL before it answers `503`: once for
/// its turn on one of the shared connections, once for connecting and
/// querying.
pub const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL connections the HTTP handlers share (`[http]
/// db_connections` of them at most), each serving one request at a time.
/// Opened when a request finds none idle, reused most recent first (a
/// quiet hub holds one), dropped when closed or when a request on it timed
/// out — so readiness follows PostgreSQL going away and coming back.
/// Before it, one connection behind a mutex served every request in turn:
/// a dashboard's slow poll held up every other request and the readiness
/// probe (`pahlawan bench-fleet`, BENCHMARKS.md).
pub struct DbPool {
    database_url: String,
    /// One permit per connection that may be open.
    permits: Semaphore,
    idle: parking_lot::Mutex<Vec<tokio_postgres::Client>>,
}

impl DbPool {
    /// A pool of at most `size` (at least one) connections to
    /// `database_url`, starting with `first` if given.
    pub fn new(
        database_url: impl Into<String>,
        size: usize,
        first: Option<tokio_postgres::Client>,
    ) -> DbPool {
        DbPool {
            database_url: database_url.into(),
            permits: Semaphore::new(size.clamp(1, Semaphore::MAX_PERMITS)),
            idle: parking_lot::Mutex::new(first.into_iter().collect()),
        }
    }

    /// An idle connection that is still open, if any.
    fn take(&self) -> Option<tokio_postgres::Client> {
        let mut idle = self.idle.lock();
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, client: tokio_postgres::Client) {
        if !client.is_closed() {
            self.idle.lock().push(client);
        }
    }
}

pub struct HttpState {
    /// Session slots, for the saturation gauge.
    pub max_sessions: usize,
    /// (when, apply busy ns) at the previous scrape.
    pub last_scrape: parking_lot::Mutex<Option<(std::time::Instant, u64)>>,
    pub db: DbPool,
    pub stats: Arc<HubStats>,
    /// Bearer tokens of the hub's issuer and audience.
    pub verifier: crate::auth::Verifier,
    /// Where "now" comes from (tokens, codes, sessions, "today").
    pub clock: Arc<dyn sync_link::Clock>,
    /// Meals, CO2e and staleness for the fleet API.
    pub dashboard: crate::config::DashboardConfig,
    /// Sign-in attempts per address.
    pub sign_in_limiter: session::SignInLimiter,
}

/// Every error the hub answers: `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable.
    pub code: String,
    pub message: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Pahlawan Pangan hub API",
        description = "The fleet's impact, edges and trouble for dashboards, and sign-in codes. \
            Every route but /healthz, /readyz, /metrics, this document and the dashboard's page and \
            sign-in needs a hub bearer token (RS256, issuer and audience pahlawan-hub) or the \
            dashboard's session cookie (changes with it carry X-CSRF-Token); a viewer may only read."
    ),
    paths(fleet::impact, fleet::daily, fleet::edges, fleet::trouble, fleet::cells, signin::create,
        session::sign_in, session::current, session::sign_out),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

async fn openapi() -> Response {
    Json(<ApiDoc as utoipa::OpenApi>::openapi()).into_response()
}

/// A `Timestamp` as PostgreSQL's `timestamptz`.
pub fn odt(t: sync_protocol::Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.unix_ms()) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A `Timestamp` in RFC 3339 (UTC).
pub fn rfc3339(t: sync_protocol::Timestamp) -> String {
    odt(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// A refusal in the error format, for functions that decide before they
/// answer (a `Response` is too large to return in a `Result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

fn unavailable(message: &str) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        message,
    )
}

/// Runs `f` on one of the shared connections ([`DbPool`]), connecting first
/// when none is idle and open. Both waits — for a connection's turn, and for
/// connecting and querying — are bounded by [`DB_TIMEOUT`]; a connection
/// that did not answer in time is dropped, so the next request connects
/// afresh instead of queueing behind it.
pub async fn with_db<T>(
    state: &HttpState,
    f: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, db::DbError>,
) -> Result<T, Response> {
    let pool = &state.db;
    let busy = || unavailable("PostgreSQL is busy with other requests");
    let _turn = tokio::time::timeout(DB_TIMEOUT, pool.permits.acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    let mut slot = pool.take();
    match tokio::time::timeout(
        DB_TIMEOUT,
        connect_and_run(&mut slot, &pool.database_url, f),
    )
    .await
    {
        Ok(result) => {
            if let Some(c) = slot {
                pool.give_back(c);
            }
            result
        }
        Err(_) => {
            tracing::warn!(timeout = ?DB_TIMEOUT, "PostgreSQL did not answer in time");
            Err(unavailable("PostgreSQL did not answer in time"))
        }
    }
}

/// What every HTTP handler's PostgreSQL session sets first.
pub const HTTP_SESSION_SETTINGS: &str = "SET citus.max_adaptive_executor_pool_size = 1";

async fn connect_and_run<T>(
    slot: &mut Option<tokio_postgres::Client>,
    database_url: &str,
    f: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, db::DbError>,
) -> Result<T, Response> {
    let client = match slot {
        Some(c) if !c.is_closed() => c,
        _ => {
            let fresh = db::connect(database_url).await.map_err(|e| {
                tracing::warn!(error = %e, "PostgreSQL unreachable");
                unavailable("PostgreSQL is unreachable")
            })?;
            // On Citus, a query over every shard runs its tasks over one
            // connection per worker (kept between queries) instead of
            // opening up to 16 more per worker each time: the dashboard's
            // small fan-out queries answered 5.9x (/fleet/edges) to 9x
            // (/fleet/trouble) more per second in BENCHMARKS.md. A
            // placeholder setting, and harmless, on plain PostgreSQL.
            fresh
                .batch_execute(HTTP_SESSION_SETTINGS)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "PostgreSQL refused the session's settings");
                    unavailable("PostgreSQL is unreachable")
                })?;
            slot.insert(fresh)
        }
    };
    f(client).await.map_err(|e| {
        tracing::warn!(error = %e, "query failed");
        unavailable("the query failed")
    })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when PostgreSQL answers — and, on Citus, every worker answers the
/// coordinator.
async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    match with_db(&s, async |c| db::workers_down(c).await).await {
        Ok(down) if down.is_empty() => Json(json!({"status": "ready"})).into_response(),
        Ok(down) => unavailable(&format!("Citus workers do not answer: {}", down.join(", "))),
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

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    let open = HubStats::get(&s.stats.sessions_open);
    let m = &s.stats.metrics;
    m.sessions_open.set(i64::try_from(open).unwrap_or(i64::MAX));
    // Saturation: the share of the open sessions' time spent applying
    // batches since the last scrape (each session is a worker with its own
    // PostgreSQL connection) — it rises with the load, not with the number
    // of edges connected.
    let busy = HubStats::get(&s.stats.apply_busy_ns);
    let now = std::time::Instant::now();
    let ratio = {
        let mut last = s.last_scrape.lock();
        let ratio = match *last {
            Some((then, was)) if open > 0 => {
                let window = now.duration_since(then).as_nanos() as f64 * open as f64;
                if window > 0.0 {
                    (busy.saturating_sub(was) as f64 / window).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        *last = Some((now, busy));
        ratio
    };
    m.saturation.set(ratio);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

async fn track(
    State(s): State<Arc<HttpState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    s.stats
        .metrics
        .http
        .get_or_create(&crate::metrics::HttpLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// The longest request body a protected route reads.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Everything the hub serves over HTTP; `/metrics` on it unless
/// `metrics_apart` (then [`metrics_router`] serves it on its own address).
pub fn router(state: Arc<HttpState>, metrics_apart: bool) -> Router {
    let protected = Router::new()
        .route("/api/v1/edges", get(edges))
        .route("/api/v1/impact", get(impact))
        .route("/api/v1/login-codes", axum::routing::post(signin::create))
        .route("/api/v1/fleet/impact", get(fleet::impact))
        .route("/api/v1/fleet/impact/daily", get(fleet::daily))
        .route("/api/v1/fleet/edges", get(fleet::edges))
        .route("/api/v1/fleet/trouble", get(fleet::trouble))
        .route("/api/v1/fleet/cells", get(fleet::cells))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let session = Router::new()
        .route(
            "/dashboard/session",
            get(session::current)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let open = dashboard::routes(session)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(openapi));
    let open = if metrics_apart {
        open
    } else {
        open.route("/metrics", get(metrics))
    };
    open.merge(protected)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::middleware::from_fn(dashboard::security_headers))
        .with_state(state)
}

/// `/metrics` alone, for `[http] metrics_listen`.
pub fn metrics_router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "only /metrics here") })
        .with_state(state)
}
