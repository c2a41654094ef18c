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
}

impl Shared {
    pub fn new(read_model: ReadModel) -> Shared {
        Shared {
            read_model: RwLock::new(read_model),
            offers: broadcast::channel(OFFER_STREAM_CAPACITY).0,
            stats: Stats::default(),
            shutting_down: watch::Sender::new(false),
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
