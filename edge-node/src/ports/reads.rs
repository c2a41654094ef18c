//! The read port: what readers see without asking the writer — the read
//! model (unfinished and recently finished surplus, pending offers), the
//! offer stream, the read-only connection pool for the rest, and the PII
//! keys contacts are opened with (as the writer last committed them).

use std::sync::Arc;

use parking_lot::RwLock;
use sync_protocol::{
    Contact, GeoPoint, Provider, ProviderId, Recipient, RecipientId, SealedContact, Subject,
    SurplusId, SurplusStatus,
};
use tokio::sync::{broadcast, watch};

use super::EdgeError;
use crate::pii::{PiiError, PiiKeys};
use crate::read_model::{OfferNotice, ReadModel};
use crate::store::reader::ReadPool;
use sync_protocol::Surplus;

/// A cheap, cloneable handle for reading.
#[derive(Clone)]
pub struct Reads {
    model: Arc<RwLock<ReadModel>>,
    pool: Arc<ReadPool>,
    offers: broadcast::Sender<OfferNotice>,
    pii: watch::Receiver<Arc<PiiKeys>>,
}

impl Reads {
    pub fn new(
        model: Arc<RwLock<ReadModel>>,
        pool: Arc<ReadPool>,
        offers: broadcast::Sender<OfferNotice>,
        pii: watch::Receiver<Arc<PiiKeys>>,
    ) -> Reads {
        Reads {
            model,
            pool,
            offers,
            pii,
        }
    }

    /// A surplus as last committed: from memory if recent, else from SQLite.
    pub async fn surplus(&self, id: SurplusId) -> Result<Option<Surplus>, EdgeError> {
        if let Some(v) = self.model.read().get(&id) {
            return Ok(Some(v.clone()));
        }
        Ok(self.pool.surplus(id).await?)
    }

    /// Surplus within `radius_km` of `point`, nearest first.
    pub fn surplus_near(
        &self,
        point: &GeoPoint,
        radius_km: f64,
        status: Option<SurplusStatus>,
        limit: usize,
    ) -> Vec<(Surplus, f64)> {
        self.model.read().near(point, radius_km, status, limit)
    }

    /// The offers waiting on `recipient`'s answer.
    pub fn pending_offers(&self, recipient: &RecipientId) -> Vec<Surplus> {
        self.model.read().pending_for(recipient)
    }

    /// How many surplus are in `status` (a scan: for scrapes).
    pub fn count_status(&self, status: SurplusStatus) -> usize {
        self.model.read().count_status(status)
    }

    /// Surplus held in memory now.
    pub fn live_count(&self) -> usize {
        self.model.read().len()
    }

    /// New offers, as they commit.
    pub fn subscribe_offers(&self) -> broadcast::Receiver<OfferNotice> {
        self.offers.subscribe()
    }

    /// A kiosk device credential by id.
    pub async fn kiosk_device(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<crate::store::reader::KioskDeviceRow>, EdgeError> {
        Ok(self.pool.kiosk_device(id).await?)
    }

    /// Kiosk devices, newest first.
    pub async fn kiosk_devices(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::store::reader::KioskDeviceRow>, EdgeError> {
        Ok(self.pool.kiosk_devices(limit).await?)
    }

    /// What this recipient claimed that the read model holds: unfinished,
    /// and finished within the recent window (24 h).
    pub fn claimed_by(&self, recipient: &RecipientId, limit: usize) -> Vec<Surplus> {
        self.model.read().claimed_by(recipient, limit)
    }

    /// A provider and its address.
    pub async fn provider(&self, id: ProviderId) -> Result<Option<(Provider, String)>, EdgeError> {
        Ok(self.pool.provider(id).await?)
    }

    pub async fn recipient(&self, id: RecipientId) -> Result<Option<(Recipient, u64)>, EdgeError> {
        Ok(self.pool.recipient(id).await?)
    }

    /// A page of this edge's own recipients, in id order after `after`.
    pub async fn recipients_page(
        &self,
        after: Option<RecipientId>,
        limit: usize,
    ) -> Result<Vec<(Recipient, u64)>, EdgeError> {
        Ok(self.pool.recipients_page(after, limit).await?)
    }

    /// A page of providers, in id order after `after`.
    pub async fn providers_page(
        &self,
        after: Option<ProviderId>,
        limit: usize,
    ) -> Result<Vec<(Provider, String)>, EdgeError> {
        Ok(self.pool.providers_page(after, limit).await?)
    }

    /// Surplus in memory (unfinished, and finished within the recent
    /// window), optionally only in `status`, oldest posted first, at most `limit`.
    pub fn surplus_all(&self, status: Option<SurplusStatus>, limit: usize) -> Vec<Surplus> {
        self.model.read().all(status, limit)
    }

    /// Everything held on a subject besides its own row (GDPR export).
    pub async fn subject_rows(
        &self,
        subject: Subject,
    ) -> Result<crate::store::export::SubjectRows, EdgeError> {
        Ok(self.pool.subject_rows(subject).await?)
    }

    /// Committed outbox events after `seq`, oldest first (at most `limit`).
    pub async fn outbox_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<sync_protocol::Envelope>, EdgeError> {
        Ok(self.pool.outbox_after(seq, limit).await?)
    }

    /// The notification dispatcher's stored cursor.
    pub async fn notified_seq(&self) -> Result<u64, EdgeError> {
        Ok(self.pool.notified_seq().await?)
    }

    /// A recipient's notification channels (their targets still sealed).
    pub async fn channels(
        &self,
        recipient: RecipientId,
    ) -> Result<Vec<crate::store::reader::ChannelRow>, EdgeError> {
        Ok(self.pool.channels(recipient).await?)
    }

    /// Opens what a channel sends to, with the keys the writer last
    /// committed.
    pub fn open_channel(
        &self,
        row: &crate::store::reader::ChannelRow,
    ) -> Result<crate::commands::ChannelTarget, PiiError> {
        let plain = self
            .pii
            .borrow()
            .open_bytes(&row.sealed, row.recipient.as_bytes())?;
        serde_json::from_slice(&plain).map_err(|_| PiiError::Damaged)
    }

    /// Opens a sealed contact (empty: erased, or a neighbour's recipient).
    pub fn open_contact(
        &self,
        sealed: &SealedContact,
        subject: &Subject,
    ) -> Result<Option<Contact>, PiiError> {
        if sealed.is_empty() {
            return Ok(None);
        }
        self.pii
            .borrow()
            .open(sealed.as_bytes(), subject.id_bytes())
            .map(Some)
    }
}
