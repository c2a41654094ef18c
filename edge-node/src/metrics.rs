//! Prometheus metrics of one edge, served at `GET /metrics` (OpenMetrics
//! text). The seed's three — `surplus_claim_latency_seconds`,
//! `food_waste_prevented_tons_total`, `matching_engine_saturation_ratio` —
//! plus request duration by route and status, the outbox backlog, sync lag,
//! the dead-letter queue, offers by outcome and the routing breaker's state.
//!
//! Counters that follow committed state (tons, offers) are fed by the writer
//! after its commit, so a rolled-back group never counts. Gauges that mirror
//! state (backlog, lag, DLQ, breaker) are read at scrape time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every metric family an edge exports (the deploy examples are tested
/// against the scrape itself, not this list).
pub const FAMILIES: [&str; 9] = [
    "surplus_claim_latency_seconds",
    "food_waste_prevented_tons_total",
    "matching_engine_saturation_ratio",
    "http_request_duration_seconds",
    "outbox_backlog_events",
    "sync_lag_seconds",
    "dlq_size",
    "offers_total",
    "routing_breaker_state",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/api/v1/surplus/{id}`), never the raw path.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// made | accepted | declined | timed_out
    pub outcome: &'static str,
}

/// Request and claim latencies, 1 ms to 30 s, with the 1 s SLA bound as an
/// edge (the dashboard's "% under 1 s" reads `le="1"`).
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub claim_latency: Histogram,
    pub tons_prevented: Counter<f64, AtomicU64>,
    pub saturation: Gauge<f64, AtomicU64>,
    pub http: Family<HttpLabels, Histogram>,
    pub outbox_backlog: Gauge,
    pub sync_lag: Gauge<f64, AtomicU64>,
    pub dlq_size: Gauge,
    pub offers: Family<OutcomeLabels, Counter>,
    pub breaker_state: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let claim_latency = Histogram::new(latency_buckets());
        registry.register(
            "surplus_claim_latency_seconds",
            "Time to answer a claim (direct claim or accepted offer), request to durable reply",
            claim_latency.clone(),
        );
        let tons_prevented = Counter::<f64, AtomicU64>::default();
        registry.register(
            "food_waste_prevented_tons",
            "Delivered food, in tonnes (from delivered kg)",
            tons_prevented.clone(),
        );
        let saturation = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "matching_engine_saturation_ratio",
            "Busy matching workers / matching pool size",
            saturation.clone(),
        );
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by route template, method and status",
            http.clone(),
        );
        let outbox_backlog = Gauge::default();
        registry.register(
            "outbox_backlog_events",
            "Committed events the hub has not acknowledged (0 without a hub)",
            outbox_backlog.clone(),
        );
        let sync_lag = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sync_lag_seconds",
            "Age of the oldest event the hub has not acknowledged",
            sync_lag.clone(),
        );
        let dlq_size = Gauge::default();
        registry.register(
            "dlq_size",
            "Surplus in the dead-letter queue now",
            dlq_size.clone(),
        );
        let offers = Family::<OutcomeLabels, Counter>::default();
        registry.register("offers", "Offers by outcome", offers.clone());
        for outcome in ["made", "accepted", "declined", "timed_out"] {
            let _ = offers.get_or_create(&OutcomeLabels { outcome });
        }
        let breaker_state = Gauge::default();
        registry.register(
            "routing_breaker_state",
            "Travel-time service circuit breaker: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        Metrics {
            registry,
            claim_latency,
            tons_prevented,
            saturation,
            http,
            outbox_backlog,
            sync_lag,
            dlq_size,
            offers,
            breaker_state,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Committed effects of one writer group.
    pub fn committed(&self, group: &GroupCounts) {
        if group.delivered_g > 0 {
            self.tons_prevented
                .inc_by(group.delivered_g as f64 / 1_000_000.0);
        }
        for (outcome, n) in [
            ("made", group.offers_made),
            ("accepted", group.offers_accepted),
            ("declined", group.offers_declined),
            ("timed_out", group.offers_timed_out),
        ] {
            if n > 0 {
                self.offers
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc_by(n);
            }
        }
    }
}

/// What one writer group changed that counters follow; applied after its
/// commit, dropped on rollback.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupCounts {
    pub delivered_g: u64,
    pub offers_made: u64,
    pub offers_accepted: u64,
    pub offers_declined: u64,
    pub offers_timed_out: u64,
}

impl GroupCounts {
    pub fn observe(&mut self, event: &sync_protocol::Event) {
        use sync_protocol::{ClaimVia, Event};
        match event {
            Event::Delivered { delivered, .. } => self.delivered_g += delivered.grams(),
            Event::OfferMade { .. } => self.offers_made += 1,
            Event::OfferDeclined { .. } => self.offers_declined += 1,
            Event::OfferTimedOut { .. } => self.offers_timed_out += 1,
            Event::Claimed {
                via: ClaimVia::OfferAccepted,
                ..
            } => self.offers_accepted += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_kilograms_become_tonnes_and_offers_count_by_outcome() {
        let m = Metrics::new();
        let mut g = GroupCounts::default();
        g.observe(&sync_protocol::Event::Delivered {
            surplus_id: sync_protocol::SurplusId::from_bytes([1; 16]),
            recipient_id: sync_protocol::RecipientId::from_bytes([2; 16]),
            delivered: sync_protocol::Mass::from_grams(2_500_000),
            version: 5,
        });
        m.committed(&g);
        m.http
            .get_or_create(&HttpLabels {
                route: "/api/v1/surplus".into(),
                method: "POST".into(),
                status: 201,
            })
            .observe(0.002);
        let text = m.encode();
        assert!(
            text.contains("food_waste_prevented_tons_total 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("offers_total{outcome=\"made\"} 0\n"),
            "{text}"
        );
        for family in FAMILIES {
            let base = family.trim_end_matches("_total");
            assert!(
                text.contains(&format!("# TYPE {base} ")),
                "{family} missing:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
