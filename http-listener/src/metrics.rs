//! The listener's metrics, registered into the edge's or the hub's
//! Prometheus registry: open connections and the cap in effect, accepted
//! and refused connections, and connections the listener closed itself.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The families [`ConnMetrics::register`] adds.
pub const FAMILIES: [&str; 6] = [
    "http_connections_open",
    "http_connections_limit",
    "http_connections_accepted_total",
    "http_connections_refused_total",
    "http_connections_closed_total",
    "http_tls_reloads_total",
];

/// The `reason`s of `http_connections_refused_total`.
pub const REFUSED: [&str; 2] = ["total_cap", "address_cap"];
/// The `reason`s of `http_connections_closed_total`.
pub const CLOSED: [&str; 4] = [
    "header_timeout",
    "idle_timeout",
    "tls_handshake",
    "plain_http_on_tls",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// refused: `total_cap` | `address_cap`; closed: `header_timeout` |
    /// `idle_timeout` | `tls_handshake` | `plain_http_on_tls`
    pub reason: &'static str,
}

/// Handles to feed; clones share the same series.
#[derive(Clone, Debug, Default)]
pub struct ConnMetrics {
    pub open: Gauge,
    pub limit: Gauge,
    pub accepted: Counter,
    pub refused: Family<ReasonLabels, Counter>,
    pub closed: Family<ReasonLabels, Counter>,
    /// By `outcome`: `loaded` | `refused` (the certificate in use stays).
    pub tls_reloads: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

impl ConnMetrics {
    /// Registers every family, each label value at zero (a scrape shows a
    /// series before its first event).
    pub fn register(&self, registry: &mut Registry) {
        for reason in REFUSED {
            let _ = self.refused.get_or_create(&ReasonLabels { reason });
        }
        for reason in CLOSED {
            let _ = self.closed.get_or_create(&ReasonLabels { reason });
        }
        for outcome in ["loaded", "refused"] {
            let _ = self.tls_reloads.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "http_connections_open",
            "HTTP connections open now (every listener of this server)",
            self.open.clone(),
        );
        registry.register(
            "http_connections_limit",
            "The total HTTP connection cap in effect (from the configuration and the open-file limit)",
            self.limit.clone(),
        );
        registry.register(
            "http_connections_accepted",
            "HTTP connections admitted under the caps",
            self.accepted.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections refused at accept time, by cap",
            self.refused.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections the server closed itself: timeouts, failed TLS handshakes, plain HTTP on the TLS port",
            self.closed.clone(),
        );
        registry.register(
            "http_tls_reloads",
            "Changes of the HTTPS certificate files, by outcome: loaded, or refused (the certificate in use stays)",
            self.tls_reloads.clone(),
        );
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn reloaded(&self, outcome: &'static str) {
        self.tls_reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn closed(&self, reason: &'static str) {
        self.closed.get_or_create(&ReasonLabels { reason }).inc();
    }
}
