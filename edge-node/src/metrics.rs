//! Prometheus metrics of one edge, served at `GET /metrics` (OpenMetrics
//! text). The seed's three — `surplus_claim_latency_seconds`,
//! `food_waste_prevented_tons_total`, `matching_engine_saturation_ratio` —
//! plus request duration by route and status, the outbox backlog, sync lag,
//! the dead-letter queue, offers by outcome, operator alerts by kind and the
//! routing breaker's state.
//!
//! Counters that follow committed state (tons, offers, alerts) are fed by
//! the publisher from what a writer group committed, so a rolled-back group
//! never counts. Gauges that mirror
//! state (backlog, lag, DLQ, breaker) are read at scrape time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::writer::GroupCounts;
use edge_core::engine::Alert;

/// Every metric family an edge exports (the deploy examples are tested
/// against the scrape itself, not this list).
pub const FAMILIES: [&str; 19] = [
    "surplus_claim_latency_seconds",
    "food_waste_prevented_tons_total",
    "matching_engine_saturation_ratio",
    "http_request_duration_seconds",
    "outbox_backlog_events",
    "sync_lag_seconds",
    "dlq_size",
    "offers_total",
    "routing_breaker_state",
    "alerts_total",
    "backup_age_seconds",
    "notify_deliveries_total",
    "notify_attempts_total",
    "notify_queue_deliveries",
    "notify_breakers_open",
    "store_disk_full",
    "store_disk_free_bytes",
    "store_wal_bytes",
    "store_commit_failures_total",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// webhook | sms | whatsapp | oncall
    pub channel: &'static str,
    /// deliveries: delivered | refused | expired; attempts: delivered |
    /// refused | failed
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/api/v1/surplus/{id}`), never the raw path.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// disk_full: a commit failed or was refused for a full disk; other:
    /// any other failed commit
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// made | accepted | declined | timed_out
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// fallback_offered | no_fallback
    pub kind: &'static str,
}

/// The `kind` label of an alert.
pub fn alert_kind(alert: &Alert) -> &'static str {
    match alert {
        Alert::FallbackOffered { .. } => "fallback_offered",
        Alert::NoFallback { .. } => "no_fallback",
    }
}

/// Registers `metric` under `name` and hands back the handle kept to feed it.
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
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
    pub alerts: Family<AlertLabels, Counter>,
    /// The HTTP listener's connections (open, cap, accepted, refused,
    /// closed by timeouts, TLS reloads).
    pub conn: http_listener::ConnMetrics,
    /// Seconds since the last scheduled backup was taken (-1: none yet),
    /// from [`Metrics::last_backup_ms`] at scrape time.
    pub backup_age: Gauge<f64, AtomicU64>,
    /// When the newest scheduled backup was taken (UTC ms), -1 when none.
    pub last_backup_ms: std::sync::atomic::AtomicI64,
    /// Notifications finished, by channel kind and how they ended.
    pub notify_deliveries: Family<NotifyLabels, Counter>,
    /// Notification attempts, by channel kind and what the receiver did.
    pub notify_attempts: Family<NotifyLabels, Counter>,
    /// Deliveries waiting or in flight in the dispatcher.
    pub notify_queue: Gauge,
    /// Channels behind an open (or half-open) breaker.
    pub notify_breakers_open: Gauge,
    /// 1 while the writer refuses writes for a full disk.
    pub disk_full: Gauge,
    /// The data directory's free space (bytes an unprivileged writer may use).
    pub disk_free: Gauge,
    /// The SQLite WAL file's size.
    pub wal_bytes: Gauge,
    /// Writes that did not commit, by cause (mirrored from the writer's
    /// own counters at scrape time).
    pub commit_failures: Family<FailureLabels, Counter>,
    /// Held while counters are mirrored, so two scrapes at once do not
    /// both add the same difference.
    pub mirror_lock: parking_lot::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let offers = register(&mut r, "offers", "Offers by outcome", Family::default());
        for outcome in ["made", "accepted", "declined", "timed_out"] {
            let _ = offers.get_or_create(&OutcomeLabels { outcome });
        }
        let alerts = register(
            &mut r,
            "alerts",
            "Dead-letter queue alerts by kind: offered to the cell's fallback recipient, or no fallback took it",
            Family::default(),
        );
        for kind in ["fallback_offered", "no_fallback"] {
            let _ = alerts.get_or_create(&AlertLabels { kind });
        }
        let notify_deliveries: Family<NotifyLabels, Counter> = register(
            &mut r,
            "notify_deliveries",
            "Notifications finished: delivered (2xx), refused by the receiver (4xx), or expired (deadline passed)",
            Family::default(),
        );
        let notify_attempts: Family<NotifyLabels, Counter> = register(
            &mut r,
            "notify_attempts",
            "Notification attempts by what the receiver did: delivered, refused, failed (error, timeout, 5xx, 408, 429)",
            Family::default(),
        );
        for channel in ["webhook", "sms", "whatsapp", "oncall"] {
            for outcome in ["delivered", "refused", "expired"] {
                let _ = notify_deliveries.get_or_create(&NotifyLabels { channel, outcome });
            }
            for outcome in ["delivered", "refused", "failed"] {
                let _ = notify_attempts.get_or_create(&NotifyLabels { channel, outcome });
            }
        }
        let commit_failures: Family<FailureLabels, Counter> = register(
            &mut r,
            "store_commit_failures",
            "Writes that did not commit: disk_full counts commands refused (507) or groups that failed for a full disk; other, groups that failed otherwise",
            Family::default(),
        );
        for cause in ["disk_full", "other"] {
            let _ = commit_failures.get_or_create(&FailureLabels { cause });
        }
        let conn = http_listener::ConnMetrics::default();
        conn.register(&mut r);
        Metrics {
            conn,
            claim_latency: register(
                &mut r,
                "surplus_claim_latency_seconds",
                "Time to answer a claim (direct claim or accepted offer), request to durable reply",
                Histogram::new(latency_buckets()),
            ),
            tons_prevented: register(
                &mut r,
                "food_waste_prevented_tons",
                "Delivered food, in tonnes (from delivered kg)",
                Counter::default(),
            ),
            saturation: register(
                &mut r,
                "matching_engine_saturation_ratio",
                "Busy matching workers / matching pool size",
                Gauge::default(),
            ),
            http: register(
                &mut r,
                "http_request_duration_seconds",
                "HTTP request duration by route template, method and status",
                Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            ),
            outbox_backlog: register(
                &mut r,
                "outbox_backlog_events",
                "Committed events the hub has not acknowledged (0 without a hub)",
                Gauge::default(),
            ),
            sync_lag: register(
                &mut r,
                "sync_lag_seconds",
                "Age of the oldest event the hub has not acknowledged",
                Gauge::default(),
            ),
            dlq_size: register(
                &mut r,
                "dlq_size",
                "Surplus in the dead-letter queue now",
                Gauge::default(),
            ),
            breaker_state: register(
                &mut r,
                "routing_breaker_state",
                "Travel-time service circuit breaker: 0 closed, 1 open, 2 half-open",
                Gauge::default(),
            ),
            backup_age: register(
                &mut r,
                "backup_age_seconds",
                "Seconds since the newest scheduled backup was taken; -1 when there is none",
                Gauge::default(),
            ),
            last_backup_ms: std::sync::atomic::AtomicI64::new(-1),
            notify_queue: register(
                &mut r,
                "notify_queue_deliveries",
                "Notification deliveries waiting or in flight",
                Gauge::default(),
            ),
            notify_breakers_open: register(
                &mut r,
                "notify_breakers_open",
                "Notification channels behind an open or half-open circuit breaker",
                Gauge::default(),
            ),
            disk_full: register(
                &mut r,
                "store_disk_full",
                "1 while the edge refuses writes (507) because its data directory's disk is full or under store.min_free_mib",
                Gauge::default(),
            ),
            disk_free: register(
                &mut r,
                "store_disk_free_bytes",
                "Free space in the data directory's file system (bytes the edge may still use; -1 when unknown)",
                Gauge::default(),
            ),
            wal_bytes: register(
                &mut r,
                "store_wal_bytes",
                "Size of the SQLite write-ahead log (bounded by store.wal_limit_mib after each checkpoint)",
                Gauge::default(),
            ),
            commit_failures,
            mirror_lock: parking_lot::Mutex::new(()),
            notify_deliveries,
            notify_attempts,
            offers,
            alerts,
            registry: r,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Sets a counter mirrored from an atomic to that atomic's value.
    pub fn mirror(counter: &Counter, value: u64) {
        let seen = counter.get();
        if value > seen {
            counter.inc_by(value - seen);
        }
    }

    /// One committed alert.
    pub fn alert(&self, alert: &Alert) {
        self.alerts
            .get_or_create(&AlertLabels {
                kind: alert_kind(alert),
            })
            .inc();
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

    #[test]
    fn each_alert_counts_under_its_kind() {
        let m = Metrics::new();
        let surplus_id = sync_protocol::SurplusId::from_bytes([1; 16]);
        m.alert(&Alert::NoFallback { surplus_id });
        let text = m.encode();
        assert!(
            text.contains("alerts_total{kind=\"no_fallback\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("alerts_total{kind=\"fallback_offered\"} 0\n"),
            "{text}"
        );
    }
}
