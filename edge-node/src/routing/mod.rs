//! Travel times for matching: road travel time from an OSRM-compatible
//! service when one is configured and answering, haversine at the matching
//! speed otherwise, so matching never waits on a dead service.
//!
//! - `breaker.rs`: the circuit breaker, an I/O-free core (time passed in).
//! - `osrm.rs`: the HTTP shell: one connection per call, deadline, body cap,
//!   total decoders.
//!
//! [`TravelTimes::travel_times`] never fails and never waits longer than the
//! configured deadline: not configured, breaker open, an error, a timeout or
//! a destination the service cannot route all fall back to haversine.

pub use edge_core::breaker;
mod directory;
pub mod osrm;

pub use directory::{RecipientDirectory, hints};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sync_protocol::{Duration, GeoPoint};

pub use breaker::{Breaker, BreakerConfig, BreakerState, Permit};
pub use osrm::{DecodeError, InvalidUrl, OsrmClient, OsrmSettings, RoutingError};

use crate::clock::Clock;
use edge_core::matching::travel_time;

/// Bounds on the configuration (see [`RoutingConfig::validate`]).
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=10_000;
pub const MAX_DESTINATIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=1_000;

/// The `[routing]` section of the edge config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Base URL of an OSRM-compatible service (`http://127.0.0.1:5000`).
    /// Unset: travel times are haversine at the matching speed.
    pub osrm_url: Option<String>,
    /// Deadline for one routing call, connect to last byte.
    pub timeout_ms: u64,
    /// Consecutive failed calls that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before one probe may go.
    pub open_secs: u64,
    /// Most destinations sent in one call; the rest are estimated by
    /// haversine. OSRM's own default `--max-table-size` is 100.
    pub max_destinations: usize,
}

impl Default for RoutingConfig {
    fn default() -> RoutingConfig {
        let settings = OsrmSettings::default();
        RoutingConfig {
            osrm_url: None,
            timeout_ms: 300,
            failure_threshold: settings.breaker.failure_threshold,
            open_secs: 10,
            max_destinations: settings.max_destinations,
        }
    }
}

/// What is wrong with a `[routing]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingConfigError {
    #[error("routing.osrm_url: {0}")]
    OsrmUrl(#[from] InvalidUrl),
    #[error("routing.timeout_ms must be in 10..=10000, got {0}")]
    TimeoutMs(u64),
    #[error("routing.failure_threshold must be ≥ 1")]
    FailureThreshold,
    #[error("routing.open_secs must be in 1..=86400, got {0}")]
    OpenSecs(u64),
    #[error("routing.max_destinations must be in 1..=1000, got {0}")]
    MaxDestinations(usize),
}

impl RoutingConfig {
    pub fn validate(&self) -> Result<(), RoutingConfigError> {
        if let Some(url) = &self.osrm_url {
            osrm::Endpoint::parse(url)?;
        }
        if !TIMEOUT_MS_RANGE.contains(&self.timeout_ms) {
            return Err(RoutingConfigError::TimeoutMs(self.timeout_ms));
        }
        if self.failure_threshold < 1 {
            return Err(RoutingConfigError::FailureThreshold);
        }
        if !(1..=86_400).contains(&self.open_secs) {
            return Err(RoutingConfigError::OpenSecs(self.open_secs));
        }
        if !MAX_DESTINATIONS_RANGE.contains(&self.max_destinations) {
            return Err(RoutingConfigError::MaxDestinations(self.max_destinations));
        }
        Ok(())
    }

    /// The client settings these values stand for (validate first).
    pub fn settings(&self) -> OsrmSettings {
        OsrmSettings {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            breaker: BreakerConfig {
                failure_threshold: self.failure_threshold,
                // In range after validation (at most a day).
                open_for: Duration::from_secs(i64::try_from(self.open_secs).unwrap_or(i64::MAX)),
            },
            max_destinations: self.max_destinations,
        }
    }
}

/// Where a set of travel times came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The routing service answered this request.
    Osrm,
    /// No routing answer: every duration is haversine at the matching speed.
    Haversine,
}

/// Travel times from one point to each of several, in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TravelEstimate {
    pub durations: Vec<Duration>,
    pub source: Source,
    /// With [`Source::Osrm`]: how many durations are haversine all the same
    /// (destinations the service had no route to, and any beyond
    /// `max_destinations`). With [`Source::Haversine`]: all of them.
    pub haversine_filled: usize,
}

/// Counters and the breaker gauge, for the metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingSnapshot {
    pub configured: bool,
    pub calls_ok: u64,
    pub calls_failed: u64,
    pub calls_short_circuited: u64,
    pub calls_cancelled: u64,
    /// Requests answered wholly by haversine (service unset, refused or failing).
    pub haversine_fallbacks: u64,
    /// `routing_breaker_state`: 0 closed, 1 open, 2 half-open.
    pub breaker_state: f64,
}

/// The travel-time source matching calls.
#[derive(Debug)]
pub struct TravelTimes {
    osrm: Option<OsrmClient>,
    fallbacks: AtomicU64,
}

impl TravelTimes {
    /// From a `[routing]` section; validates it first.
    pub fn new(
        config: &RoutingConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<TravelTimes, RoutingConfigError> {
        config.validate()?;
        let osrm = match &config.osrm_url {
            Some(url) => Some(OsrmClient::new(url, config.settings(), clock)?),
            None => None,
        };
        Ok(TravelTimes {
            osrm,
            fallbacks: AtomicU64::new(0),
        })
    }

    /// Haversine only, no service.
    pub fn haversine_only() -> TravelTimes {
        TravelTimes {
            osrm: None,
            fallbacks: AtomicU64::new(0),
        }
    }

    pub fn osrm(&self) -> Option<&OsrmClient> {
        self.osrm.as_ref()
    }

    /// Travel time from `from` to each of `to` at `speed_kmh` where the
    /// service cannot say. Never fails; waits at most the call deadline.
    pub async fn travel_times(
        &self,
        from: GeoPoint,
        to: &[GeoPoint],
        speed_kmh: f64,
    ) -> TravelEstimate {
        debug_assert!(
            speed_kmh.is_finite() && speed_kmh > 0.0,
            "validated by the config"
        );
        let haversine = |p: &GeoPoint| travel_time(from.haversine_km(p), speed_kmh);
        let fallback = || {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            TravelEstimate {
                durations: to.iter().map(haversine).collect(),
                source: Source::Haversine,
                haversine_filled: to.len(),
            }
        };
        let Some(osrm) = &self.osrm else {
            return fallback();
        };
        if to.is_empty() {
            return fallback();
        }
        let routed = to.len().min(osrm.settings().max_destinations);
        let answer = match osrm.table(from, &to[..routed]).await {
            Ok(answer) => answer,
            Err(error) => {
                // Expected while the service is down: the breaker logs the
                // transitions, each call only at debug.
                tracing::debug!(%error, "routing: haversine fallback");
                return fallback();
            }
        };
        debug_assert_eq!(answer.len(), routed, "decode_table checks the count");
        let mut filled = 0;
        let mut estimate = |routed: Option<Duration>, p: &GeoPoint| {
            routed.unwrap_or_else(|| {
                filled += 1;
                haversine(p)
            })
        };
        let durations = to
            .iter()
            .zip(answer.into_iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(p, d)| estimate(d.flatten(), p))
            .collect();
        TravelEstimate {
            durations,
            source: Source::Osrm,
            haversine_filled: filled,
        }
    }

    pub fn snapshot(&self) -> RoutingSnapshot {
        let fallbacks = self.fallbacks.load(Ordering::Relaxed);
        let Some(osrm) = &self.osrm else {
            return RoutingSnapshot {
                configured: false,
                calls_ok: 0,
                calls_failed: 0,
                calls_short_circuited: 0,
                calls_cancelled: 0,
                haversine_fallbacks: fallbacks,
                breaker_state: BreakerState::Closed.as_gauge(),
            };
        };
        let c = osrm.counters();
        RoutingSnapshot {
            configured: true,
            calls_ok: c.ok.load(Ordering::Relaxed),
            calls_failed: c.failed.load(Ordering::Relaxed),
            calls_short_circuited: c.short_circuited.load(Ordering::Relaxed),
            calls_cancelled: c.cancelled.load(Ordering::Relaxed),
            haversine_fallbacks: fallbacks,
            breaker_state: osrm.breaker_state().as_gauge(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use sync_protocol::Timestamp;

    fn p(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).expect("valid")
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = RoutingConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            (c.timeout_ms, c.failure_threshold, c.open_secs),
            (300, 3, 10)
        );
        assert_eq!(c.max_destinations, 100);
        assert_eq!(c.osrm_url, None);
        let s = c.settings();
        assert_eq!(s.timeout, std::time::Duration::from_millis(300));
        assert_eq!(s.breaker.open_for, Duration::from_secs(10));
    }

    #[test]
    fn validation_names_the_bad_value() {
        let ok = RoutingConfig {
            osrm_url: Some("http://127.0.0.1:5000".into()),
            ..RoutingConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        type Edit = fn(&mut RoutingConfig);
        let table: [(Edit, RoutingConfigError); 8] = [
            (
                |c| c.osrm_url = Some("osrm:5000".into()),
                RoutingConfigError::OsrmUrl(InvalidUrl::Scheme(String::new())),
            ),
            (
                |c| c.osrm_url = Some("https://osrm".into()),
                RoutingConfigError::OsrmUrl(InvalidUrl::Scheme("https".into())),
            ),
            (|c| c.timeout_ms = 9, RoutingConfigError::TimeoutMs(9)),
            (
                |c| c.timeout_ms = 10_001,
                RoutingConfigError::TimeoutMs(10_001),
            ),
            (
                |c| c.failure_threshold = 0,
                RoutingConfigError::FailureThreshold,
            ),
            (|c| c.open_secs = 0, RoutingConfigError::OpenSecs(0)),
            (
                |c| c.max_destinations = 0,
                RoutingConfigError::MaxDestinations(0),
            ),
            (
                |c| c.max_destinations = 1_001,
                RoutingConfigError::MaxDestinations(1_001),
            ),
        ];
        for (i, (edit, expected)) in table.into_iter().enumerate() {
            let mut c = ok.clone();
            edit(&mut c);
            assert_eq!(c.validate(), Err(expected), "row {i}");
        }
        let mut no_host = ok.clone();
        no_host.osrm_url = Some("http://".into());
        assert!(matches!(
            no_host.validate(),
            Err(RoutingConfigError::OsrmUrl(InvalidUrl::Parse(_)))
        ));
        let mut edges = ok.clone();
        (edges.timeout_ms, edges.open_secs, edges.max_destinations) = (10, 1, 1);
        assert_eq!(edges.validate(), Ok(()));
    }

    #[test]
    fn toml_takes_known_fields_with_defaults_and_refuses_unknown_ones() {
        let c: RoutingConfig =
            toml::from_str("osrm_url = \"http://10.0.0.5:5000\"\ntimeout_ms = 250\n")
                .expect("parses");
        assert_eq!(c.osrm_url.as_deref(), Some("http://10.0.0.5:5000"));
        assert_eq!(c.timeout_ms, 250);
        assert_eq!(c.failure_threshold, 3, "the rest defaulted");
        let err = toml::from_str::<RoutingConfig>("timeout = 250\n").expect_err("unknown field");
        assert!(err.to_string().contains("unknown field"), "{err}");
        let round: RoutingConfig =
            toml::from_str(&toml::to_string(&c).expect("serialises")).expect("parses back");
        assert_eq!(round, c);
    }

    #[tokio::test]
    async fn without_a_service_it_is_haversine_at_the_speed() {
        let tt = TravelTimes::haversine_only();
        let from = p(-6.2, 106.8);
        let to = [p(-6.3, 106.8), p(-6.2, 106.8)];
        let e = tt.travel_times(from, &to, 20.0).await;
        assert_eq!(e.source, Source::Haversine);
        assert_eq!(e.haversine_filled, 2);
        assert_eq!(e.durations[0], travel_time(from.haversine_km(&to[0]), 20.0));
        assert_eq!(e.durations[1], Duration::ZERO);
        let s = tt.snapshot();
        assert!(!s.configured);
        assert_eq!(s.haversine_fallbacks, 1);
    }

    #[tokio::test]
    async fn an_unreachable_service_falls_back_and_counts_a_failure() {
        // A port that was just free: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = RoutingConfig {
            osrm_url: Some(format!("http://127.0.0.1:{port}")),
            ..RoutingConfig::default()
        };
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_800_000_000_000)));
        let tt = TravelTimes::new(&config, clock).expect("valid");
        let e = tt
            .travel_times(p(-6.2, 106.8), &[p(-6.3, 106.8)], 20.0)
            .await;
        assert_eq!(e.source, Source::Haversine);
        let s = tt.snapshot();
        assert_eq!(
            (s.calls_ok, s.calls_failed, s.haversine_fallbacks),
            (0, 1, 1)
        );
        assert_eq!(s.breaker_state, 0.0);
    }
}
