//! What one group changed, as a value: gathered while the group runs,
//! handed to a [`Publish`] after its commit, dropped with a group that rolled
//! back. The writer writes no state but SQLite's; whoever publishes applies
//! this to what readers see.

use std::sync::Arc;

use edge_core::engine::Alert;
use sync_protocol::{
    ClaimVia, Event, FoodTypeSet, GeoPoint, ProviderId, RecipientId, Subject, SurplusId, Timestamp,
};

use crate::pii::PiiKeys;
use sync_protocol::Surplus;

/// A matchable recipient's place, for asking a routing service about it.
pub type DirectoryEntry = (RecipientId, GeoPoint, FoodTypeSet);

/// Applies what a group committed to what readers see (the read model, the
/// offer stream, metrics, the committed-seq watch). Runs on the writer
/// thread after the commit and before any reply: a client that got its
/// answer reads its own write.
pub trait Publish: Send + 'static {
    fn publish(&mut self, committed: Committed);
}

/// What one committed group changed.
#[derive(Debug, Default)]
pub struct Committed {
    /// The group's time.
    pub now: Timestamp,
    /// The last outbox `seq` committed (unchanged if the group wrote none).
    pub last_seq: u64,
    /// The final state of every surplus the group touched.
    pub views: Vec<Surplus>,
    /// Offers made: (recipient, surplus). One may be superseded later in
    /// the same group; the publisher announces only those still standing.
    pub offers_made: Vec<(RecipientId, SurplusId)>,
    /// What counters follow.
    pub counts: GroupCounts,
    /// What an operator must hear about.
    pub alerts: Vec<Alert>,
    /// Providers erased: their surplus lose their descriptions.
    pub erased_providers: Vec<ProviderId>,
    /// Every matchable recipient, when the group changed them and a routing
    /// service is configured (the directory is rebuilt from it).
    pub directory: Option<Vec<DirectoryEntry>>,
    /// New sealing keys, for readers to open contacts with.
    pub pii_keys: Option<Arc<PiiKeys>>,
}

impl Committed {
    /// Notes what one appended event changes for readers.
    pub(super) fn observe(&mut self, event: &Event) {
        self.counts.observe(event);
        match event {
            Event::OfferMade {
                surplus_id,
                recipient_id,
                ..
            } => self.offers_made.push((*recipient_id, *surplus_id)),
            Event::SubjectErased {
                subject: Subject::Provider(p),
            } => self.erased_providers.push(*p),
            _ => {}
        }
    }
}

/// What one writer group changed that counters follow.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupCounts {
    pub delivered_g: u64,
    pub offers_made: u64,
    pub offers_accepted: u64,
    pub offers_declined: u64,
    pub offers_timed_out: u64,
}

impl GroupCounts {
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::Delivered { delivered, .. } => self.delivered_g += delivered.grams(),
            Event::OfferMade { .. } => self.offers_made += 1,
            Event::OfferDeclined { .. } => self.offers_declined += 1,
            Event::OfferTimedOut { .. } => self.offers_timed_out += 1,
            Event::Claimed {
                via: ClaimVia::OfferAccepted,
                ..
            } => self.offers_accepted += 1,
            _ => {}
        }
    }
}
