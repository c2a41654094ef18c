//! The in-memory read side: a snapshot of every unfinished surplus (and those
//! finished within the recent window), an R-tree over them for "near me"
//! queries, and pending offers by recipient. Only the publisher updates it
//! (on the writer thread), and only with committed state, after the commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rstar::RTree;
use rstar::primitives::GeomWithData;
use sync_protocol::geo::chord_squared_for_km;
use sync_protocol::{Duration, GeoPoint, RecipientId, SurplusId, SurplusStatus, Timestamp};

use sync_protocol::Surplus;

type Node = GeomWithData<[f64; 3], SurplusId>;

/// An offer made, as announced to its recipient's stream.
#[derive(Debug, Clone)]
pub struct OfferNotice {
    pub recipient_id: RecipientId,
    pub surplus: Surplus,
}

#[derive(Debug)]
pub struct ReadModel {
    /// A B-tree so growth never stalls the writer with a rehash (see engine).
    views: BTreeMap<SurplusId, Surplus>,
    tree: RTree<Node>,
    pending: HashMap<RecipientId, BTreeSet<SurplusId>>,
    finished: VecDeque<(Timestamp, SurplusId)>,
    recent_window: Duration,
    max_finished: usize,
}

impl ReadModel {
    /// Finished surplus stay listed for `recent_window`, at most `max_finished`.
    pub fn new(recent_window: Duration, max_finished: usize) -> ReadModel {
        ReadModel {
            views: BTreeMap::new(),
            tree: RTree::new(),
            pending: HashMap::new(),
            finished: VecDeque::new(),
            recent_window,
            max_finished,
        }
    }

    /// Refills the recent window after a restart: each finished view is
    /// remembered from its own `updated_at`, so it leaves on time.
    pub fn restore_finished(&mut self, views: Vec<Surplus>, now: Timestamp) {
        for v in views {
            let at = v.updated_at;
            self.apply([v], at);
        }
        self.evict(now);
    }

    /// A provider was erased: its surplus keep no description.
    pub fn redact_provider(&mut self, provider: &sync_protocol::ProviderId) {
        for v in self.views.values_mut() {
            if v.provider_id == *provider {
                v.description.clear();
            }
        }
    }

    /// How many surplus are in `status` now (a scan: for scrapes, not hot paths).
    pub fn count_status(&self, status: SurplusStatus) -> usize {
        self.views.values().filter(|v| v.status == status).count()
    }

    /// Every view (optionally only in `status`), oldest posted first, then
    /// by id; at most `limit`.
    pub fn all(&self, status: Option<SurplusStatus>, limit: usize) -> Vec<Surplus> {
        let mut out: Vec<&Surplus> = self
            .views
            .values()
            .filter(|v| status.is_none_or(|s| v.status == s))
            .collect();
        out.sort_by_key(|v| (v.posted_at, v.id));
        out.into_iter().take(limit).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    pub fn apply(&mut self, views: impl IntoIterator<Item = Surplus>, now: Timestamp) {
        for v in views {
            let id = v.id;
            if let Some(o) = &v.offer {
                self.pending.entry(o.recipient_id).or_default().insert(id);
            }
            // Finished and picked-up surplus stay listed for the recent window.
            if v.status.is_terminal() || v.status == SurplusStatus::PickedUp {
                self.finished.push_back((now, id));
            }
            let point = v.location.unit_vector();
            let now_offered_to = v.offer.as_ref().map(|o| o.recipient_id);
            match self.views.insert(id, v) {
                Some(old) => self.forget_offer(&old, now_offered_to),
                None => self.tree.insert(Node::new(point, id)),
            }
        }
        self.evict(now);
    }

    /// Drops `old`'s pending-offer entry unless the offer still stands.
    fn forget_offer(&mut self, old: &Surplus, now_offered_to: Option<RecipientId>) {
        let Some(o) = &old.offer else { return };
        if now_offered_to == Some(o.recipient_id) {
            return;
        }
        if let Some(set) = self.pending.get_mut(&o.recipient_id) {
            set.remove(&old.id);
            if set.is_empty() {
                self.pending.remove(&o.recipient_id);
            }
        }
    }

    fn evict(&mut self, now: Timestamp) {
        let horizon = now + Duration::from_ms(-self.recent_window.as_ms());
        while let Some(&(at, id)) = self.finished.front() {
            if at > horizon && self.finished.len() <= self.max_finished {
                break;
            }
            self.finished.pop_front();
            if let Some(v) = self.views.remove(&id) {
                self.tree.remove(&Node::new(v.location.unit_vector(), id));
                self.forget_offer(&v, None);
            }
        }
    }

    pub fn get(&self, id: &SurplusId) -> Option<&Surplus> {
        self.views.get(id)
    }

    /// Surplus within `radius_km` of `point`, nearest first, optionally of
    /// one status, at most `limit`.
    pub fn near(
        &self,
        point: &GeoPoint,
        radius_km: f64,
        status: Option<SurplusStatus>,
        limit: usize,
    ) -> Vec<(Surplus, f64)> {
        let max_d2 = chord_squared_for_km(radius_km);
        self.tree
            .nearest_neighbor_iter_with_distance_2(&point.unit_vector())
            .take_while(|(_, d2)| *d2 <= max_d2)
            .filter_map(|(node, _)| self.views.get(&node.data))
            .filter(|v| status.is_none_or(|s| v.status == s))
            .take(limit)
            .map(|v| (v.clone(), point.haversine_km(&v.location)))
            .collect()
    }

    /// What `recipient` claimed, newest change first, at most `limit`: a scan
    /// of the views (bounded by `store.max_live_surplus` and the finished
    /// window), for a kiosk's day list, which it asks for now and then.
    pub fn claimed_by(&self, recipient: &RecipientId, limit: usize) -> Vec<Surplus> {
        let mut out: Vec<Surplus> = self
            .views
            .values()
            .filter(|v| v.claimed_by == Some(*recipient))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        out.truncate(limit);
        out
    }

    /// The offers waiting on `recipient`'s answer, oldest surplus first.
    pub fn pending_for(&self, recipient: &RecipientId) -> Vec<Surplus> {
        self.pending
            .get(recipient)
            .into_iter()
            .flatten()
            .filter_map(|id| self.views.get(id))
            .filter(|v| {
                v.offer
                    .as_ref()
                    .is_some_and(|o| o.recipient_id == *recipient)
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::Offer;
    use sync_protocol::{FoodType, Mass, ProviderId};

    const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

    fn view(n: u8, km_south: f64, status: SurplusStatus, offer_to: Option<u8>) -> Surplus {
        Surplus {
            id: SurplusId::from_bytes([n; 16]),
            provider_id: ProviderId::from_bytes([0; 16]),
            location: GeoPoint::new(-6.2 - km_south / 111.2, 106.8).expect("valid"),
            cell: 1,
            quantity: Mass::from_grams(1_000),
            food_type: FoodType::Bakery,
            expires_at: T0,
            description: String::new(),
            posted_at: T0,
            status,
            version: 1,
            claimed_by: None,
            delivered: None,
            offer: offer_to.map(|r| Offer {
                recipient_id: RecipientId::from_bytes([r; 16]),
                expires_at: T0,
                fallback: false,
            }),
            updated_at: T0,
        }
    }

    #[test]
    fn near_is_sorted_filtered_and_bounded() {
        let mut m = ReadModel::new(Duration::from_mins(60), 100);
        m.apply(
            [
                view(1, 3.0, SurplusStatus::Offered, Some(9)),
                view(2, 1.0, SurplusStatus::Available, None),
                view(3, 2.0, SurplusStatus::Offered, Some(9)),
                view(4, 30.0, SurplusStatus::Available, None),
            ],
            T0,
        );
        let here = GeoPoint::new(-6.2, 106.8).expect("valid");
        let ids = |v: Vec<(Surplus, f64)>| {
            v.iter()
                .map(|(v, _)| v.id.as_bytes()[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(m.near(&here, 10.0, None, 10)), vec![2, 3, 1]);
        assert_eq!(
            ids(m.near(&here, 10.0, Some(SurplusStatus::Offered), 10)),
            vec![3, 1]
        );
        assert_eq!(ids(m.near(&here, 10.0, None, 1)), vec![2]);
    }

    #[test]
    fn pending_offers_follow_the_latest_view() {
        let mut m = ReadModel::new(Duration::from_mins(60), 100);
        m.apply([view(1, 1.0, SurplusStatus::Offered, Some(9))], T0);
        assert_eq!(m.pending_for(&RecipientId::from_bytes([9; 16])).len(), 1);
        m.apply([view(1, 1.0, SurplusStatus::Offered, Some(8))], T0);
        assert!(m.pending_for(&RecipientId::from_bytes([9; 16])).is_empty());
        assert_eq!(m.pending_for(&RecipientId::from_bytes([8; 16])).len(), 1);
        m.apply([view(1, 1.0, SurplusStatus::Claimed, None)], T0);
        assert!(m.pending_for(&RecipientId::from_bytes([8; 16])).is_empty());
    }

    #[test]
    fn finished_views_leave_after_the_window() {
        let mut m = ReadModel::new(Duration::from_mins(60), 100);
        m.apply(
            [
                view(1, 1.0, SurplusStatus::Delivered, None),
                view(2, 1.0, SurplusStatus::Claimed, None),
            ],
            T0,
        );
        assert_eq!(m.len(), 2);
        m.apply([], T0 + Duration::from_mins(61));
        assert_eq!(m.len(), 1);
        assert!(m.get(&SurplusId::from_bytes([2; 16])).is_some());
        let here = GeoPoint::new(-6.2, 106.8).expect("valid");
        assert_eq!(m.near(&here, 5.0, None, 10).len(), 1);
    }
}
