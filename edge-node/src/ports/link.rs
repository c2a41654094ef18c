//! The hub link's port: the committed outbox it ships (through the read
//! pool), the committed-seq watch it wakes on, the three writes it hands the
//! writer (acknowledged marks, the lease epoch, neighbouring recipients —
//! background work that waits for room), and the [`LinkStatus`] it
//! publishes on a `watch` for `/api/v1/sync` and metrics. Nothing else
//! writes that status, and the link reads no one else's.

use std::sync::Arc;

use sync_protocol::{EdgeId, Timestamp};
use tokio::sync::watch;

use super::{EdgeError, Writes};
use crate::store::reader::ReadPool;

/// The state of the link to the hub, as the link last published it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStatus {
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
    /// When the hub last acknowledged events (or welcomed a session).
    pub last_sync_at: Option<Timestamp>,
}

/// What the hub link may see and do.
#[derive(Clone)]
pub struct LinkPort {
    edge_id: EdgeId,
    cells: Arc<Vec<u64>>,
    pool: Arc<ReadPool>,
    committed: watch::Receiver<u64>,
    writes: Writes,
    status: Arc<watch::Sender<LinkStatus>>,
}

impl LinkPort {
    pub fn new(
        edge_id: EdgeId,
        pool: Arc<ReadPool>,
        committed: watch::Receiver<u64>,
        writes: Writes,
        status: Arc<watch::Sender<LinkStatus>>,
    ) -> LinkPort {
        LinkPort {
            cells: Arc::new(writes.cells().iter().collect()),
            edge_id,
            pool,
            committed,
            writes,
            status,
        }
    }

    pub fn edge_id(&self) -> &EdgeId {
        &self.edge_id
    }

    /// The cells this edge serves.
    pub fn cells(&self) -> &[u64] {
        &self.cells
    }

    /// The last outbox `seq` committed.
    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    pub fn subscribe_committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Raw outbox events after `after` (at most `limit`), for the hub.
    pub async fn outbox_batch(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<sync_protocol::session::BatchEvent>, EdgeError> {
        Ok(self.pool.outbox_batch(after, limit).await?)
    }

    /// When the outbox event `seq` was committed, if it exists.
    pub async fn event_time(&self, seq: u64) -> Result<Option<Timestamp>, EdgeError> {
        Ok(self.pool.event_time(seq).await?)
    }

    /// (published seq, lease epoch) as stored.
    pub async fn sync_state(&self) -> Result<(u64, u64), EdgeError> {
        Ok(self.pool.sync_state().await?)
    }

    pub async fn mark_published(&self, seq: u64) -> Result<(), EdgeError> {
        self.writes.mark_published(seq).await
    }

    pub async fn set_lease_epoch(&self, epoch: u64) -> Result<(), EdgeError> {
        self.writes.set_lease_epoch(epoch).await
    }

    pub async fn import_recipients(
        &self,
        entries: Vec<sync_protocol::session::RegistryEntry>,
    ) -> Result<usize, EdgeError> {
        self.writes.import_recipients(entries).await
    }

    /// A receiver of the link's status, for those who show it.
    pub fn subscribe_status(&self) -> watch::Receiver<LinkStatus> {
        self.status.subscribe()
    }

    /// The link's status as last published.
    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// Publishes a change to the link's status.
    pub fn update_status(&self, change: impl FnOnce(&mut LinkStatus)) {
        self.status.send_modify(change);
    }
}
