//! Prometheus metrics of the hub, served at `GET /metrics` (OpenMetrics
//! text): events applied, apply duration, open sessions, delivered tonnes
//! from every edge, request duration, and `matching_engine_saturation_ratio`
//! — here the share of the open sessions' time spent applying batches (each
//! session is a worker holding a PostgreSQL connection), the signal the
//! Kubernetes HPA in `deploy/` scales hub pods on.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Debug)]
pub struct HubMetrics {
    registry: Registry,
    pub events_applied: Counter,
    pub apply_duration: Histogram,
    pub sessions_open: Gauge,
    pub saturation: Gauge<f64, AtomicU64>,
    pub tons_prevented: Counter<f64, AtomicU64>,
    pub http: Family<HttpLabels, Histogram>,
    pub replication_lag: Histogram,
    /// The HTTP listener's connections.
    pub conn: http_listener::ConnMetrics,
}

impl Default for HubMetrics {
    fn default() -> HubMetrics {
        let mut registry = Registry::default();
        let conn = http_listener::ConnMetrics::default();
        conn.register(&mut registry);
        let events_applied = Counter::default();
        registry.register(
            "hub_events_applied",
            "Edge events applied to PostgreSQL (fenced ones included: they are logged)",
            events_applied.clone(),
        );
        let apply_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "hub_apply_duration_seconds",
            "One batch applied in one PostgreSQL transaction",
            apply_duration.clone(),
        );
        let sessions_open = Gauge::default();
        registry.register(
            "hub_sessions_open",
            "Edges connected now",
            sessions_open.clone(),
        );
        let saturation = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "matching_engine_saturation_ratio",
            "Share of the open sessions' time spent applying batches since the last scrape",
            saturation.clone(),
        );
        let tons_prevented = Counter::<f64, AtomicU64>::default();
        registry.register(
            "food_waste_prevented_tons",
            "Delivered food reported by every edge, in tonnes",
            tons_prevented.clone(),
        );
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by route, method and status",
            http.clone(),
        );
        let replication_lag = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        registry.register(
            "hub_replication_lag_seconds",
            "Per event: from its commit on the edge to the commit of the batch that applied it here",
            replication_lag.clone(),
        );
        HubMetrics {
            replication_lag,
            registry,
            events_applied,
            apply_duration,
            sessions_open,
            saturation,
            tons_prevented,
            http,
            conn,
        }
    }
}

impl HubMetrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
