//! The thin publisher: applies what a writer group committed
//! ([`Committed`]) to what the rest of the edge reads — the read model, the
//! offer stream, the recipient directory, the PII keys readers open contacts
//! with, the metrics and the committed-seq watch. It runs on the writer
//! thread after the commit and before the group's replies, and it is the
//! only writer of each of these.

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;
use crate::pii::PiiKeys;
use crate::read_model::{OfferNotice, ReadModel};
use crate::routing::RecipientDirectory;
use crate::store::writer::{Committed, Publish};
use edge_core::engine::Alert;

/// Offers waiting in the broadcast buffer for slow SSE clients; a client that
/// falls further behind is told to resynchronise.
pub const OFFER_STREAM_CAPACITY: usize = 4_096;

/// Where committed state is published, and the receiving ends readers hold.
#[derive(Debug)]
pub struct Publisher {
    pub read_model: Arc<RwLock<ReadModel>>,
    pub offers: broadcast::Sender<OfferNotice>,
    pub metrics: Arc<Metrics>,
    pub committed_seq: watch::Sender<u64>,
    pub directory: watch::Sender<Arc<RecipientDirectory>>,
    pub pii: watch::Sender<Arc<PiiKeys>>,
}

impl Publish for Publisher {
    fn publish(&mut self, c: Committed) {
        if let Some(entries) = c.directory {
            self.directory
                .send_replace(Arc::new(RecipientDirectory::new(entries)));
        }
        if let Some(keys) = c.pii_keys {
            self.pii.send_replace(keys);
        }
        self.metrics.committed(&c.counts);
        for alert in &c.alerts {
            raise(&self.metrics, alert);
        }
        self.committed_seq.send_if_modified(|seq| {
            let changed = *seq != c.last_seq;
            *seq = c.last_seq;
            changed
        });
        let notices = self.update_read_model(c.now, c.views, &c.erased_providers, c.offers_made);
        for n in notices {
            // No subscribers is fine: offers are also listed by GET .../offers.
            let _ = self.offers.send(n);
        }
    }
}

impl Publisher {
    /// The read model learns the group's changes; returns each offer still
    /// standing, to announce to its recipient.
    fn update_read_model(
        &self,
        now: sync_protocol::Timestamp,
        views: Vec<sync_protocol::Surplus>,
        erased: &[sync_protocol::ProviderId],
        offers_made: Vec<(sync_protocol::RecipientId, sync_protocol::SurplusId)>,
    ) -> Vec<OfferNotice> {
        let mut model = self.read_model.write();
        model.apply(views, now);
        for p in erased {
            model.redact_provider(p);
        }
        offers_made
            .into_iter()
            .filter_map(|(recipient_id, surplus_id)| {
                let v = model.get(&surplus_id)?;
                let standing = v
                    .offer
                    .as_ref()
                    .is_some_and(|o| o.recipient_id == recipient_id);
                standing.then(|| OfferNotice {
                    recipient_id,
                    surplus: v.clone(),
                })
            })
            .collect()
    }
}

/// An alert an operator must hear about: logged, and counted in
/// `alerts_total{kind}`.
fn raise(metrics: &Metrics, alert: &Alert) {
    match alert {
        Alert::FallbackOffered {
            surplus_id,
            recipient_id,
        } => {
            tracing::warn!(%surplus_id, %recipient_id, "dead-letter queue exhausted: offered to the cell's fallback recipient");
        }
        Alert::NoFallback { surplus_id } => {
            tracing::warn!(%surplus_id, "dead-letter queue exhausted and no fallback recipient took it: needs a human");
        }
    }
    metrics.alert(alert);
}
