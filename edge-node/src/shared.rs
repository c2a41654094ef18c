//! What the writer publishes to the rest of the edge: the read model, the
//! stream of new offers, and its statistics.

use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};

use crate::read_model::{OfferNotice, ReadModel};
use crate::stats::Stats;

/// Offers waiting in the broadcast buffer for slow SSE clients; a client that
/// falls further behind is told to resynchronise.
pub const OFFER_STREAM_CAPACITY: usize = 4_096;

#[derive(Debug)]
pub struct Shared {
    pub read_model: RwLock<ReadModel>,
    pub offers: broadcast::Sender<OfferNotice>,
    pub stats: Stats,
    /// Flips to `true` when the edge starts shutting down: long-lived
    /// responses (offer streams) end so the server can drain.
    pub shutting_down: watch::Sender<bool>,
    /// The last outbox `seq` committed (the sync task waits on it).
    pub committed_seq: watch::Sender<u64>,
    /// What the sync task reports about the link to the hub.
    pub sync: RwLock<SyncStatus>,
    /// Recipients' positions, for routed travel times (empty unless a
    /// routing service is configured).
    pub directory: RwLock<std::sync::Arc<crate::read_model::RecipientDirectory>>,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The keys contact data is sealed with (replaced on rotation).
    pub pii: RwLock<std::sync::Arc<crate::pii::PiiKeys>>,
}

/// The state of the link to the hub, for `GET /api/v1/sync` and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatus {
    pub enabled: bool,
    pub connected: bool,
    /// The hub's acknowledged high-water mark.
    pub acked_seq: u64,
    pub lease_epoch: u64,
    /// Cells another edge holds the lease of.
    pub conflicts: Vec<u64>,
    /// Seconds since the oldest unacknowledged event was committed.
    pub lag_seconds: f64,
    pub last_error: Option<String>,
    /// Recipients of neighbouring cells imported from the hub.
    pub neighbours_imported: u64,
    /// Sessions established with the hub since start (reconnects + 1).
    pub sessions: u64,
}

impl Shared {
    pub fn new(read_model: ReadModel, pii: crate::pii::PiiKeys) -> Shared {
        Shared {
            read_model: RwLock::new(read_model),
            offers: broadcast::channel(OFFER_STREAM_CAPACITY).0,
            stats: Stats::default(),
            shutting_down: watch::Sender::new(false),
            committed_seq: watch::Sender::new(0),
            sync: RwLock::new(SyncStatus::default()),
            pii: RwLock::new(std::sync::Arc::new(pii)),
            metrics: crate::metrics::Metrics::new(),
            directory: RwLock::new(std::sync::Arc::default()),
        }
    }

    /// Resolves once shutdown has begun.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.shutting_down.subscribe();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    }
}
