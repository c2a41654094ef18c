//! The writer's own telemetry: counters and latency histograms it keeps
//! about itself, whether it can commit, and its heartbeat. Only the writer
//! thread writes them; `simulate`, the benchmark, readiness and the systemd
//! watchdog read them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

#[derive(Debug)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub events: AtomicU64,
    /// Audit records written.
    pub audit_records: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Group commits that failed because the disk was full.
    pub disk_full_failures: AtomicU64,
    /// Commands answered "disk full" (507) without being tried.
    pub disk_full_refusals: AtomicU64,
    /// True while the writer refuses writes for a full disk.
    pub disk_full: AtomicBool,
    /// False while the writer cannot commit (readiness).
    pub writer_healthy: AtomicBool,
    /// True from when the writer thread starts its loop until it ends
    /// (readiness).
    pub writer_alive: AtomicBool,
    /// Times the writer went round its loop (each wake: a group, a timer,
    /// the heartbeat). The systemd watchdog pings only while it grows.
    pub heartbeats: AtomicU64,
    /// Panics caught in the writer (each rolled back and reloaded).
    pub writer_panics: AtomicU64,
    /// Matches that stopped at `matching.max_scanned`.
    pub match_scan_limit_hits: AtomicU64,
    /// Nanoseconds the engine spent deciding each post (matching included).
    pub decide_ns: Mutex<Histogram<u64>>,
    /// Nanoseconds per batch commit (the fsync).
    pub commit_ns: Mutex<Histogram<u64>>,
    /// Nanoseconds per group: apply, commit, publish, reply.
    pub group_ns: Mutex<Histogram<u64>>,
    /// Commands per committed batch.
    pub batch_size: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static bounds are valid")
}

impl Default for WriterStats {
    fn default() -> WriterStats {
        WriterStats {
            batches: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            events: AtomicU64::new(0),
            audit_records: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            disk_full_failures: AtomicU64::new(0),
            disk_full_refusals: AtomicU64::new(0),
            disk_full: AtomicBool::new(false),
            writer_healthy: AtomicBool::new(true),
            writer_alive: AtomicBool::new(false),
            heartbeats: AtomicU64::new(0),
            writer_panics: AtomicU64::new(0),
            match_scan_limit_hits: AtomicU64::new(0),
            decide_ns: Mutex::new(histogram()),
            commit_ns: Mutex::new(histogram()),
            group_ns: Mutex::new(histogram()),
            batch_size: Mutex::new(histogram()),
        }
    }
}

impl WriterStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Ready when the writer is running and can commit (so not before its
    /// thread has started).
    pub fn is_ready(&self) -> bool {
        self.writer_alive.load(Ordering::Relaxed) && self.writer_healthy.load(Ordering::Relaxed)
    }

    /// A histogram sample (at least 1: the histograms start there).
    pub(crate) fn record(histogram: &Mutex<Histogram<u64>>, value: u64) {
        let _ = histogram.lock().record(value.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_is_not_ready_before_its_thread_runs_nor_while_it_cannot_commit() {
        let stats = WriterStats::default();
        assert!(!stats.is_ready(), "not before the writer thread runs");
        stats.writer_alive.store(true, Ordering::Relaxed);
        assert!(stats.is_ready());
        stats.writer_healthy.store(false, Ordering::Relaxed);
        assert!(!stats.is_ready(), "not while it cannot commit");
    }
}
