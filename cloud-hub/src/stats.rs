//! The hub's counters, for the HTTP status API, the benchmark and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

#[derive(Debug)]
pub struct HubStats {
    pub sessions_open: AtomicU64,
    pub sessions_refused: AtomicU64,
    pub batches: AtomicU64,
    pub events: AtomicU64,
    pub fenced: AtomicU64,
    /// Nanoseconds per batch apply (one PostgreSQL transaction).
    pub apply_ns: Mutex<Histogram<u64>>,
    /// Milliseconds from each event's commit on the edge to its apply here.
    pub lag_ms: Mutex<Histogram<u64>>,
    pub metrics: crate::metrics::HubMetrics,
    /// Nanoseconds sessions have spent applying batches, summed.
    pub apply_busy_ns: AtomicU64,
}

impl Default for HubStats {
    fn default() -> HubStats {
        let h = || {
            Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("static bounds are valid")
        };
        HubStats {
            sessions_open: AtomicU64::new(0),
            sessions_refused: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            events: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            apply_ns: Mutex::new(h()),
            lag_ms: Mutex::new(h()),
            metrics: crate::metrics::HubMetrics::default(),
            apply_busy_ns: AtomicU64::new(0),
        }
    }
}

impl HubStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
