//! The recipient registry: every recipient this edge can offer to, their
//! day's reserved capacity and acceptance record, and one 3-D R-tree per
//! food type over their unit vectors, so "nearest on Earth that takes
//! bakery" is an exact Euclidean query that never wades through recipients
//! who would refuse the food.

use std::collections::HashMap;

use rstar::RTree;
use rstar::primitives::GeomWithData;
use sync_protocol::geo::{chord_squared_for_km, km_from_chord_squared};
use sync_protocol::{FoodType, FoodTypeSet, GeoPoint, Mass, Recipient, RecipientId};

type Node = GeomWithData<[f64; 3], u32>;

/// How often a recipient has taken what it was offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptanceStats {
    pub offers_made: u32,
    pub offers_accepted: u32,
}

impl AcceptanceStats {
    /// Laplace-smoothed acceptance rate in (0, 1): a new recipient starts at ½.
    pub fn rate(&self) -> f64 {
        (f64::from(self.offers_accepted) + 1.0) / (f64::from(self.offers_made) + 2.0)
    }
}

/// Capacity reserved on one local day by pending offers and claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reservation {
    pub day: i64,
    pub mass: Mass,
}

#[derive(Debug, Clone)]
pub struct RecipientEntry {
    pub recipient: Recipient,
    /// The S2 cell (ownership level) the recipient lies in.
    pub cell: u64,
    pub stats: AcceptanceStats,
    pub reserved: Reservation,
    /// Surplus this recipient claimed and has not picked up yet.
    pub open_claims: u32,
}

impl RecipientEntry {
    /// Capacity not yet reserved on `day`.
    pub fn remaining(&self, day: i64) -> Mass {
        let used = if self.reserved.day == day {
            self.reserved.mass
        } else {
            Mass::ZERO
        };
        self.recipient.capacity_per_day.saturating_sub(used)
    }

    pub fn reserve(&mut self, day: i64, mass: Mass) {
        if self.reserved.day != day {
            self.reserved = Reservation {
                day,
                mass: Mass::ZERO,
            };
        }
        self.reserved.mass = self.reserved.mass.saturating_add(mass);
    }

    /// Gives back a reservation made on `day`; one from an earlier day has
    /// already lapsed with the day itself.
    pub fn release(&mut self, day: i64, mass: Mass) {
        if self.reserved.day == day {
            self.reserved.mass = self.reserved.mass.saturating_sub(mass);
        }
    }
}

#[derive(Debug, Default)]
pub struct RecipientIndex {
    /// One tree per food type, indexed by `FoodType as usize`.
    trees: [RTree<Node>; FoodType::ALL.len()],
    entries: Vec<RecipientEntry>,
    by_id: HashMap<RecipientId, u32>,
}

fn node(e: &RecipientEntry, i: u32) -> Node {
    Node::new(e.recipient.location.unit_vector(), i)
}

impl RecipientIndex {
    pub fn new() -> RecipientIndex {
        RecipientIndex::default()
    }

    /// Bulk-loads the tree (much faster than inserting one by one at start).
    pub fn from_entries(entries: Vec<RecipientEntry>) -> RecipientIndex {
        let trees = FoodType::ALL.map(|t| {
            let nodes = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.recipient.accepted_food_types.contains(t))
                .map(|(i, e)| node(e, slot(i)))
                .collect();
            RTree::bulk_load(nodes)
        });
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.recipient.id, slot(i)))
            .collect();
        RecipientIndex {
            trees,
            entries,
            by_id,
        }
    }

    fn unindex(&mut self, i: u32) {
        let e = &self.entries[i as usize];
        let n = node(e, i);
        for t in e.recipient.accepted_food_types.iter() {
            self.trees[t as usize].remove(&n);
        }
    }

    fn index(&mut self, i: u32) {
        let e = &self.entries[i as usize];
        let n = node(e, i);
        for t in e.recipient.accepted_food_types.iter() {
            self.trees[t as usize].insert(n);
        }
    }

    /// Adds a recipient, or replaces it (keeping its stats and reservation).
    pub fn upsert(&mut self, recipient: Recipient, cell: u64) {
        match self.by_id.get(&recipient.id).copied() {
            Some(i) => {
                self.unindex(i);
                let e = &mut self.entries[i as usize];
                e.recipient = recipient;
                e.cell = cell;
                self.index(i);
            }
            None => {
                let i = slot(self.entries.len());
                self.by_id.insert(recipient.id, i);
                self.entries.push(RecipientEntry {
                    recipient,
                    cell,
                    stats: AcceptanceStats::default(),
                    reserved: Reservation::default(),
                    open_claims: 0,
                });
                self.index(i);
            }
        }
    }

    pub fn get(&self, id: &RecipientId) -> Option<&RecipientEntry> {
        self.by_id.get(id).map(|&i| &self.entries[i as usize])
    }

    pub fn get_mut(&mut self, id: &RecipientId) -> Option<&mut RecipientEntry> {
        self.by_id.get(id).map(|&i| &mut self.entries[i as usize])
    }

    pub fn contains(&self, id: &RecipientId) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every matchable recipient (retired ones are skipped).
    pub fn iter(&self) -> impl Iterator<Item = &RecipientEntry> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, e)| self.by_id.get(&e.recipient.id) == Some(&slot(*i)))
            .map(|(_, e)| e)
    }

    /// Takes a recipient out of matching for good (GDPR erasure): it is no
    /// longer found, offered, or a fallback. Its slot stays (slots are never
    /// reused), so the registry cap still counts it until restart.
    pub fn retire(&mut self, id: &RecipientId) -> bool {
        let Some(i) = self.by_id.get(id).copied() else {
            return false;
        };
        self.unindex(i);
        self.by_id.remove(id);
        let e = &mut self.entries[i as usize];
        e.recipient.accepted_food_types = FoodTypeSet::default();
        e.recipient.is_fallback = false;
        // Nothing personal stays in memory either.
        e.recipient.name = String::new();
        e.recipient.contact = sync_protocol::SealedContact::default();
        true
    }

    /// Recipients that accept `food` within `radius_km` of `point`, nearest
    /// first, with their great-circle distance.
    pub fn nearest_within(
        &self,
        point: &GeoPoint,
        radius_km: f64,
        food: FoodType,
    ) -> impl Iterator<Item = (&RecipientEntry, f64)> {
        let limit = chord_squared_for_km(radius_km);
        self.trees[food as usize]
            .nearest_neighbor_iter_with_distance_2(&point.unit_vector())
            .take_while(move |(_, d2)| *d2 <= limit)
            .map(move |(node, d2)| (&self.entries[node.data as usize], km_from_chord_squared(d2)))
    }

    /// The cell's fallback recipient (lowest id if several claim the role).
    pub fn fallback_for_cell(&self, cell: u64) -> Option<&RecipientEntry> {
        self.iter()
            .filter(|e| e.recipient.is_fallback && e.cell == cell)
            .min_by_key(|e| e.recipient.id)
    }
}

fn slot(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 recipients on one edge")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::{FoodTypeSet, SealedContact};

    pub(crate) fn recipient(n: u8, lat: f64, lon: f64) -> Recipient {
        Recipient {
            id: RecipientId::from_bytes([n; 16]),
            name: format!("r{n}"),
            location: GeoPoint::new(lat, lon).expect("valid"),
            capacity_per_day: Mass::from_grams(100_000),
            accepted_food_types: FoodTypeSet::all(),
            is_fallback: false,
            contact: SealedContact::default(),
        }
    }

    #[test]
    fn nearest_within_is_ordered_and_bounded() {
        let mut idx = RecipientIndex::new();
        idx.upsert(recipient(1, -6.20, 106.80), 1);
        idx.upsert(recipient(2, -6.21, 106.80), 1); // ~1.1 km
        idx.upsert(recipient(3, -6.30, 106.80), 1); // ~11 km
        idx.upsert(recipient(4, -6.60, 106.80), 1); // ~44 km
        let here = GeoPoint::new(-6.20, 106.80).expect("valid");
        let got: Vec<_> = idx
            .nearest_within(&here, 15.0, FoodType::Bakery)
            .map(|(e, d)| (e.recipient.id, d))
            .collect();
        let ids: Vec<_> = got.iter().map(|(id, _)| id.as_bytes()[0]).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn upsert_moves_a_recipient() {
        let mut idx = RecipientIndex::new();
        idx.upsert(recipient(1, -6.20, 106.80), 1);
        idx.upsert(recipient(1, -7.50, 110.00), 2);
        let here = GeoPoint::new(-6.20, 106.80).expect("valid");
        assert_eq!(idx.nearest_within(&here, 50.0, FoodType::Bakery).count(), 0);
        assert_eq!(idx.len(), 1);
        assert_eq!(
            idx.get(&RecipientId::from_bytes([1; 16])).map(|e| e.cell),
            Some(2)
        );
    }

    #[test]
    fn each_food_type_has_its_own_tree_and_upsert_moves_between_them() {
        let mut idx = RecipientIndex::new();
        let mut dairy_only = recipient(1, -6.20, 106.80);
        dairy_only.accepted_food_types = [FoodType::Dairy].into_iter().collect();
        idx.upsert(dairy_only.clone(), 1);
        let here = GeoPoint::new(-6.20, 106.80).expect("valid");
        assert_eq!(idx.nearest_within(&here, 5.0, FoodType::Dairy).count(), 1);
        assert_eq!(idx.nearest_within(&here, 5.0, FoodType::Bakery).count(), 0);
        dairy_only.accepted_food_types = [FoodType::Bakery].into_iter().collect();
        idx.upsert(dairy_only, 1);
        assert_eq!(idx.nearest_within(&here, 5.0, FoodType::Dairy).count(), 0);
        assert_eq!(idx.nearest_within(&here, 5.0, FoodType::Bakery).count(), 1);
    }

    #[test]
    fn reservations_lapse_with_the_day() {
        let mut idx = RecipientIndex::new();
        idx.upsert(recipient(1, 0.0, 0.0), 1);
        let e = idx
            .get_mut(&RecipientId::from_bytes([1; 16]))
            .expect("present");
        e.reserve(10, Mass::from_grams(60_000));
        assert_eq!(e.remaining(10), Mass::from_grams(40_000));
        assert_eq!(e.remaining(11), Mass::from_grams(100_000));
        e.release(9, Mass::from_grams(60_000));
        assert_eq!(e.remaining(10), Mass::from_grams(40_000));
        e.release(10, Mass::from_grams(60_000));
        assert_eq!(e.remaining(10), Mass::from_grams(100_000));
    }

    #[test]
    fn bulk_load_equals_incremental() {
        let rs: Vec<_> = (1..=20u8)
            .map(|n| recipient(n, -6.0 - f64::from(n) * 0.01, 106.8))
            .collect();
        let mut inc = RecipientIndex::new();
        for r in &rs {
            inc.upsert(r.clone(), 1);
        }
        let bulk = RecipientIndex::from_entries(
            rs.iter()
                .map(|r| RecipientEntry {
                    recipient: r.clone(),
                    cell: 1,
                    stats: AcceptanceStats::default(),
                    reserved: Reservation::default(),
                    open_claims: 0,
                })
                .collect(),
        );
        let here = GeoPoint::new(-6.05, 106.8).expect("valid");
        let a: Vec<_> = inc
            .nearest_within(&here, 30.0, FoodType::Bakery)
            .map(|(e, _)| e.recipient.id)
            .collect();
        let b: Vec<_> = bulk
            .nearest_within(&here, 30.0, FoodType::Bakery)
            .map(|(e, _)| e.recipient.id)
            .collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 20);
    }
}
