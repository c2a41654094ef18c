//! What the HTTP handlers and middleware reach: the ports they call and the
//! few HTTP-side pieces (who may call, matching admission, travel times),
//! behind one `Arc`, so cloning the state per layer is one atomic increment.

use std::ops::Deref;
use std::sync::Arc;

use sync_protocol::{SurplusStatus, Timestamp};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::commands::NewSurplus;
use crate::config::EdgeConfig;
use crate::metrics::Metrics;
use crate::pool::{MatchPool, Slot};
use crate::ports::{EdgeError, LinkStatus, Reads, Writes};
use crate::routing::{RecipientDirectory, TravelTimes};
use crate::store::stats::WriterStats;

/// Who may call, and how often.
#[derive(Debug)]
pub struct Security {
    pub verifier: crate::auth::Verifier,
    pub limits: crate::ratelimit::Limits,
    pub failed_auth: crate::ratelimit::FailedAuth,
}

/// The parts of the edge the API uses.
pub struct Parts {
    pub writes: Writes,
    pub reads: Reads,
    /// The hub link's status, as the link last published it.
    pub link: watch::Receiver<LinkStatus>,
    /// The last outbox `seq` committed.
    pub committed: watch::Receiver<u64>,
    /// Recipients' positions, for routed travel times.
    pub directory: watch::Receiver<Arc<RecipientDirectory>>,
    pub security: Arc<Security>,
    /// The VAPID identity push subscriptions are made for (none: Web Push
    /// is off).
    pub web_push: Option<Arc<crate::web_push::Vapid>>,
    pub matching: MatchPool,
    pub travel: Arc<TravelTimes>,
    pub metrics: Arc<Metrics>,
    /// The writer's own health, for readiness.
    pub writer: Arc<WriterStats>,
    pub config: Arc<EdgeConfig>,
    pub clock: Arc<dyn Clock>,
    /// When this edge started (for its uptime).
    pub started_at: Timestamp,
    /// Flips to `true` when the edge starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// The axum state of every route.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        AppState(Arc::new(parts))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Ready when the writer is running and can commit.
    pub fn is_ready(&self) -> bool {
        self.writer.is_ready()
    }

    /// Resolves once shutdown has begun.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.shutdown.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    }

    /// A slot in the matching pool (HTTP requests that match take one), or
    /// `Busy` when the pool and its queue are full.
    pub async fn matching_slot(&self) -> Result<Slot, EdgeError> {
        let slot = self.matching.enter().await.map_err(|_| EdgeError::Busy);
        self.metrics.saturation.set(self.matching.saturation());
        slot
    }

    /// Routed travel times from a surplus to the recipients its match will
    /// consider, when a routing service is configured (`None` otherwise, or
    /// when it cannot answer: matching then estimates from the distance).
    /// Waits at most the routing deadline; never fails.
    pub async fn travel_hints(&self, new: &NewSurplus) -> Option<edge_core::matching::TravelHints> {
        self.travel.osrm()?;
        let directory = self.directory.borrow().clone();
        crate::routing::hints(&self.travel, &directory, &self.config.matching, new).await
    }

    /// Sets the gauges that mirror state, for a scrape.
    /// The disk and the writer's failures: free space, WAL size, refusals.
    fn refresh_store_gauges(&self) {
        use crate::metrics::{FailureLabels, Metrics};
        use std::sync::atomic::Ordering::Relaxed;
        let (m, w) = (&self.metrics, &self.writer);
        m.disk_full.set(i64::from(w.disk_full.load(Relaxed)));
        let dir = &self.config.data_dir;
        m.disk_free.set(
            crate::store::disk::free_bytes(dir)
                .and_then(|f| i64::try_from(f).ok())
                .unwrap_or(-1),
        );
        let wal = dir.join(format!("{}-wal", crate::store::DB_FILE));
        m.wal_bytes.set(
            std::fs::metadata(wal)
                .ok()
                .and_then(|md| i64::try_from(md.len()).ok())
                .unwrap_or(0),
        );
        let failures = w.commit_failures.load(Relaxed);
        let full = w.disk_full_failures.load(Relaxed);
        let disk_full = w.disk_full_refusals.load(Relaxed) + full;
        let other = failures.saturating_sub(full);
        let _mirroring = m.mirror_lock.lock();
        for (cause, n) in [("disk_full", disk_full), ("other", other)] {
            Metrics::mirror(
                &m.commit_failures.get_or_create(&FailureLabels { cause }),
                n,
            );
        }
    }

    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        let committed = self.committed_seq();
        let (acked, lag) = {
            let s = self.link.borrow();
            (s.acked_seq, s.lag_seconds)
        };
        let backlog = if self.config.hub.is_some() {
            committed.saturating_sub(acked)
        } else {
            0
        };
        m.outbox_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        m.sync_lag.set(lag);
        let dlq = self.reads.count_status(SurplusStatus::DeadLettered);
        m.dlq_size.set(i64::try_from(dlq).unwrap_or(i64::MAX));
        m.saturation.set(self.matching.saturation());
        m.breaker_state
            .set(self.travel.snapshot().breaker_state as i64);
        self.refresh_store_gauges();
        let last = m.last_backup_ms.load(std::sync::atomic::Ordering::Relaxed);
        m.backup_age.set(if last < 0 {
            -1.0
        } else {
            (self.now().unix_ms().saturating_sub(last).max(0) as f64) / 1_000.0
        });
    }
}
