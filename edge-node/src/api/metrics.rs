//! `GET /metrics` (public, like the probes: no personal data in it) and the
//! middleware that times every request by route template and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::state::AppState;
use crate::metrics::HttpLabels;

pub async fn metrics(State(edge): State<AppState>) -> Response {
    edge.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        edge.metrics.encode(),
    )
        .into_response()
}

/// Marks a response `track` timed under its route.
#[derive(Debug, Clone, Copy)]
struct Timed;

/// The outer layer: times what no route matched (404/405 fallbacks) under
/// the route `unmatched`, so probes of unknown paths show up too.
pub async fn track_unmatched(State(edge): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    if resp.extensions().get::<Timed>().is_none() {
        edge.metrics
            .http
            .get_or_create(&HttpLabels {
                route: "unmatched".into(),
                method,
                status: resp.status().as_u16(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
    resp
}

/// Times a request from arrival to its response head, inside an
/// `http.request` span continuing the caller's `traceparent`.
pub async fn track(State(edge): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let span = tracing::info_span!(
        "http.request",
        http.method = %method,
        http.route = %route,
        http.status = tracing::field::Empty
    );
    if let Some(tc) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(sync_protocol::TraceContext::from_traceparent)
    {
        sync_protocol::trace::otel::set_parent(&span, &tc);
    }
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    resp.extensions_mut().insert(Timed);
    span.record("http.status", resp.status().as_u16());
    edge.metrics
        .http
        .get_or_create(&HttpLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}
