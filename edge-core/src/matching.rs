//! Matching: which recipient gets the offer. Candidates come from the R-tree
//! within a radius; a candidate is feasible if it accepts the food type, has
//! capacity left today, can arrive before expiry and was not offered this
//! surplus before; feasible candidates are scored and ranked with a
//! deterministic tie-break. No I/O, no clock.

use std::cmp::Ordering;

use sync_protocol::{Duration, FoodType, GeoPoint, Mass, RecipientId, Timestamp};

use super::index::{RecipientEntry, RecipientIndex};

/// Weights of the score's four terms (each term lies in [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Shorter trips score higher.
    pub travel: f64,
    /// More capacity left after taking this surplus scores higher.
    pub capacity: f64,
    /// More time to spare between arrival and expiry scores higher.
    pub time_left: f64,
    /// A better record of accepting offers scores higher.
    pub acceptance: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            travel: 0.4,
            capacity: 0.2,
            time_left: 0.2,
            acceptance: 0.2,
        }
    }
}

/// Matching parameters (the `[matching]` section of the edge config).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchParams {
    /// Only recipients this close are candidates.
    pub radius_km: f64,
    /// Travel speed used to turn distance into travel time (haversine for now).
    pub speed_kmh: f64,
    /// Stop after this many feasible candidates (the nearest ones).
    pub max_feasible: usize,
    /// Stop after examining this many recipients that take the food type and
    /// could arrive in time, so a dense district of full recipients cannot
    /// make one match slow. Hitting it is counted (`match_scan_limit_hits`).
    pub max_scanned: usize,
    pub weights: Weights,
}

impl Default for MatchParams {
    fn default() -> MatchParams {
        MatchParams {
            radius_km: 15.0,
            speed_kmh: 20.0,
            max_feasible: 16,
            max_scanned: 1_024,
            weights: Weights::default(),
        }
    }
}

/// What matching needs to know about a surplus.
#[derive(Debug, Clone, Copy)]
pub struct SurplusFacts {
    pub location: GeoPoint,
    pub food_type: FoodType,
    pub quantity: Mass,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub recipient_id: RecipientId,
    pub distance_km: f64,
    pub travel: Duration,
    pub score: f64,
}

/// Travel time at `speed_kmh` over `distance_km`, rounded up to the millisecond.
pub fn travel_time(distance_km: f64, speed_kmh: f64) -> Duration {
    let ms = (distance_km / speed_kmh * 3_600_000.0).ceil();
    Duration::from_ms(ms as i64)
}

/// Travel times a routing service gave for some recipients (by road, from
/// the surplus); others are estimated from the great-circle distance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TravelHints(Vec<(RecipientId, Duration)>);

impl TravelHints {
    pub fn new(mut hints: Vec<(RecipientId, Duration)>) -> TravelHints {
        hints.sort_by_key(|(id, _)| *id);
        hints.dedup_by_key(|(id, _)| *id);
        TravelHints(hints)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, id: &RecipientId) -> bool {
        self.0.binary_search_by_key(id, |(r, _)| *r).is_ok()
    }

    /// The routed time to `id`, else `distance_km` at `speed_kmh`.
    pub fn travel(&self, id: &RecipientId, distance_km: f64, speed_kmh: f64) -> Duration {
        match self.0.binary_search_by_key(id, |(r, _)| *r) {
            Ok(i) => self.0[i].1,
            Err(_) => travel_time(distance_km, speed_kmh),
        }
    }
}

/// The outcome of a search, with what it cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Search {
    pub best: Option<Candidate>,
    /// Recipients examined.
    pub scanned: usize,
    /// The search stopped at `max_scanned` before running out of candidates:
    /// a feasible recipient further away may have been missed.
    pub scan_limit_hit: bool,
}

/// Feasible candidates in distance order. Recipients who refuse the food
/// type never appear (each food type has its own tree); the scan stops at
/// the first recipient who cannot arrive before expiry (all farther ones
/// cannot either) or after `max_scanned` recipients.
#[allow(clippy::too_many_arguments)] // the match's inputs, passed through
fn candidates<'a>(
    index: &'a RecipientIndex,
    facts: &'a SurplusFacts,
    now: Timestamp,
    day: i64,
    excluded: &'a [RecipientId],
    params: &'a MatchParams,
    hints: &'a TravelHints,
    scanned: &'a mut usize,
) -> impl Iterator<Item = Candidate> + 'a {
    index
        .nearest_within(&facts.location, params.radius_km, facts.food_type)
        .take_while(move |(entry, distance_km)| {
            // Routed recipients are judged by their routed time (a road can
            // beat the configured speed); the rest stop the scan where the
            // distance says nobody farther arrives in time.
            hints.contains(&entry.recipient.id)
                || now + travel_time(*distance_km, params.speed_kmh) < facts.expires_at
        })
        .take(params.max_scanned)
        .inspect(move |_| *scanned += 1)
        .filter_map(move |(entry, distance_km)| {
            feasible(entry, distance_km, facts, now, day, excluded, params, hints)
        })
        .take(params.max_feasible)
}

/// Feasible candidates, best first (at most `params.max_feasible`).
pub fn rank(
    index: &RecipientIndex,
    facts: &SurplusFacts,
    now: Timestamp,
    day: i64,
    excluded: &[RecipientId],
    params: &MatchParams,
) -> Vec<Candidate> {
    let mut scanned = 0;
    let none = TravelHints::default();
    let mut out: Vec<Candidate> = candidates(
        index,
        facts,
        now,
        day,
        excluded,
        params,
        &none,
        &mut scanned,
    )
    .collect();
    out.sort_by(compare);
    out
}

/// The best feasible candidate, if any (travel times from the distance).
pub fn best(
    index: &RecipientIndex,
    facts: &SurplusFacts,
    now: Timestamp,
    day: i64,
    excluded: &[RecipientId],
    params: &MatchParams,
) -> Search {
    best_with(
        index,
        facts,
        now,
        day,
        excluded,
        params,
        &TravelHints::default(),
    )
}

/// The best feasible candidate, with routed travel times where known. The
/// scan still stops where the great-circle estimate says nobody farther can
/// arrive in time.
pub fn best_with(
    index: &RecipientIndex,
    facts: &SurplusFacts,
    now: Timestamp,
    day: i64,
    excluded: &[RecipientId],
    params: &MatchParams,
    hints: &TravelHints,
) -> Search {
    let mut scanned = 0;
    let mut found = 0;
    let best = candidates(
        index,
        facts,
        now,
        day,
        excluded,
        params,
        hints,
        &mut scanned,
    )
    .inspect(|_| found += 1)
    .min_by(compare);
    Search {
        best,
        scanned,
        scan_limit_hit: scanned >= params.max_scanned && found < params.max_feasible,
    }
}

/// Best first: higher score, then shorter distance, then lower id.
fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.distance_km.total_cmp(&b.distance_km))
        .then(a.recipient_id.cmp(&b.recipient_id))
}

#[allow(clippy::too_many_arguments)] // the match's inputs, passed through
fn feasible(
    entry: &RecipientEntry,
    distance_km: f64,
    facts: &SurplusFacts,
    now: Timestamp,
    day: i64,
    excluded: &[RecipientId],
    params: &MatchParams,
    hints: &TravelHints,
) -> Option<Candidate> {
    let r = &entry.recipient;
    if !r.accepted_food_types.contains(facts.food_type) || excluded.contains(&r.id) {
        return None;
    }
    let remaining = entry.remaining(day);
    if remaining < facts.quantity || r.capacity_per_day == Mass::ZERO {
        return None;
    }
    let travel = hints.travel(&r.id, distance_km, params.speed_kmh);
    let arrival = now + travel;
    if arrival >= facts.expires_at {
        return None;
    }
    let w = &params.weights;
    let max_travel = travel_time(params.radius_km, params.speed_kmh)
        .as_ms()
        .max(1) as f64;
    let travel_term = 1.0 - (travel.as_ms() as f64 / max_travel).min(1.0);
    let capacity_term =
        remaining.saturating_sub(facts.quantity).grams() as f64 / r.capacity_per_day.grams() as f64;
    let window = (facts.expires_at - now).as_ms().max(1) as f64;
    let time_left_term = (facts.expires_at - arrival).as_ms() as f64 / window;
    let score = w.travel * travel_term
        + w.capacity * capacity_term
        + w.time_left * time_left_term
        + w.acceptance * entry.stats.rate();
    Some(Candidate {
        recipient_id: r.id,
        distance_km,
        travel,
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{AcceptanceStats, RecipientIndex};
    use sync_protocol::{FoodTypeSet, Recipient, SealedContact};

    const NOW: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

    fn r(n: u8, lat: f64, lon: f64, capacity_kg: u64, types: &[FoodType]) -> Recipient {
        Recipient {
            id: RecipientId::from_bytes([n; 16]),
            name: format!("r{n}"),
            location: GeoPoint::new(lat, lon).expect("valid"),
            capacity_per_day: Mass::from_grams(capacity_kg * 1_000),
            accepted_food_types: types.iter().copied().collect::<FoodTypeSet>(),
            is_fallback: false,
            contact: SealedContact::default(),
        }
    }

    fn facts(kg: u64, minutes_left: i64) -> SurplusFacts {
        SurplusFacts {
            location: GeoPoint::new(-6.2, 106.8).expect("valid"),
            food_type: FoodType::Bakery,
            quantity: Mass::from_grams(kg * 1_000),
            expires_at: NOW + Duration::from_mins(minutes_left),
        }
    }

    fn id(n: u8) -> RecipientId {
        RecipientId::from_bytes([n; 16])
    }

    fn ranked(idx: &RecipientIndex, f: &SurplusFacts, excluded: &[RecipientId]) -> Vec<u8> {
        rank(idx, f, NOW, 0, excluded, &MatchParams::default())
            .iter()
            .map(|c| c.recipient_id.as_bytes()[0])
            .collect()
    }

    /// One row: a recipient that is infeasible for exactly one reason.
    #[test]
    fn each_feasibility_rule_excludes() {
        let all = FoodType::ALL;
        let mut idx = RecipientIndex::new();
        idx.upsert(r(1, -6.21, 106.8, 100, &all), 1); // feasible
        idx.upsert(r(2, -6.21, 106.81, 100, &[FoodType::Dairy]), 1); // wrong food type
        idx.upsert(r(3, -6.22, 106.8, 5, &all), 1); // too little capacity
        idx.upsert(r(4, -6.45, 106.8, 100, &all), 1); // outside 15 km
        idx.upsert(r(5, -6.23, 106.8, 100, &all), 1); // excluded (offered before)
        idx.upsert(r(6, -6.32, 106.8, 100, &all), 1); // 13 km: 40 min at 20 km/h
        let f = facts(10, 30);
        assert_eq!(ranked(&idx, &f, &[id(5)]), vec![1]);
        let f = facts(10, 60);
        assert_eq!(ranked(&idx, &f, &[id(5)]), vec![1, 6]);
    }

    #[test]
    fn reserved_capacity_counts_against_today_only() {
        let mut idx = RecipientIndex::new();
        idx.upsert(r(1, -6.21, 106.8, 20, &FoodType::ALL), 1);
        idx.get_mut(&id(1))
            .expect("present")
            .reserve(0, Mass::from_grams(15_000));
        let f = facts(10, 120);
        assert!(ranked(&idx, &f, &[]).is_empty());
        assert_eq!(
            rank(&idx, &f, NOW, 1, &[], &MatchParams::default()).len(),
            1
        );
    }

    #[test]
    fn nearer_wins_and_acceptance_history_can_overturn_it() {
        let mut idx = RecipientIndex::new();
        idx.upsert(r(1, -6.21, 106.8, 100, &FoodType::ALL), 1);
        idx.upsert(r(2, -6.23, 106.8, 100, &FoodType::ALL), 1);
        let f = facts(10, 180);
        assert_eq!(ranked(&idx, &f, &[]), vec![1, 2]);
        idx.get_mut(&id(1)).expect("present").stats = AcceptanceStats {
            offers_made: 50,
            offers_accepted: 0,
        };
        idx.get_mut(&id(2)).expect("present").stats = AcceptanceStats {
            offers_made: 50,
            offers_accepted: 50,
        };
        assert_eq!(ranked(&idx, &f, &[]), vec![2, 1]);
    }

    #[test]
    fn exact_ties_break_on_recipient_id() {
        let mut idx = RecipientIndex::new();
        // Same place, same everything: only the id differs. Insert in both orders.
        for order in [[7u8, 3], [3, 7]] {
            let mut idx2 = RecipientIndex::new();
            for n in order {
                idx2.upsert(r(n, -6.21, 106.8, 100, &FoodType::ALL), 1);
            }
            assert_eq!(ranked(&idx2, &facts(10, 120), &[]), vec![3, 7]);
        }
        idx.upsert(r(9, -6.21, 106.8, 100, &FoodType::ALL), 1);
        let b = best(&idx, &facts(10, 120), NOW, 0, &[], &MatchParams::default());
        assert_eq!(b.best.map(|c| c.recipient_id), Some(id(9)));
    }

    #[test]
    fn best_agrees_with_rank() {
        let mut idx = RecipientIndex::new();
        for n in 1..=40u8 {
            let lat = -6.2 - f64::from(n % 7) * 0.01;
            let lon = 106.8 + f64::from(n % 5) * 0.01;
            idx.upsert(r(n, lat, lon, u64::from(n) * 3, &FoodType::ALL), 1);
        }
        let f = facts(12, 90);
        let ranked = rank(&idx, &f, NOW, 0, &[], &MatchParams::default());
        let b = best(&idx, &f, NOW, 0, &[], &MatchParams::default());
        assert_eq!(ranked.first().copied(), b.best);
    }

    #[test]
    fn a_dense_cluster_that_refuses_the_food_hides_nothing() {
        // 600 recipients next door who take only dairy; one baker's friend 10 km away.
        let mut idx = RecipientIndex::new();
        for n in 0..600u32 {
            let mut r = r(0, -6.2001, 106.8, 100, &[FoodType::Dairy]);
            r.id = RecipientId::from_bytes([
                (n % 251) as u8,
                (n / 251) as u8,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ]);
            idx.upsert(r, 1);
        }
        idx.upsert(r(9, -6.29, 106.8, 100, &[FoodType::Bakery]), 1);
        let s = best(&idx, &facts(10, 120), NOW, 0, &[], &MatchParams::default());
        assert_eq!(s.best.map(|c| c.recipient_id), Some(id(9)));
        assert_eq!(s.scanned, 1, "the dairy-only cluster is not even looked at");
    }

    #[test]
    fn full_recipients_past_the_scan_limit_are_reported() {
        let mut idx = RecipientIndex::new();
        for n in 0..40u8 {
            idx.upsert(
                r(n, -6.2 - f64::from(n) * 0.0001, 106.8, 5, &FoodType::ALL),
                1,
            ); // too small
        }
        idx.upsert(r(200, -6.25, 106.8, 100, &FoodType::ALL), 1);
        let params = MatchParams {
            max_scanned: 20,
            ..MatchParams::default()
        };
        let s = best(&idx, &facts(10, 120), NOW, 0, &[], &params);
        assert_eq!((s.best, s.scanned, s.scan_limit_hit), (None, 20, true));
        let s = best(&idx, &facts(10, 120), NOW, 0, &[], &MatchParams::default());
        assert_eq!(s.best.map(|c| c.recipient_id), Some(id(200)));
        assert!(!s.scan_limit_hit);
    }

    #[test]
    fn scanning_stops_at_the_first_recipient_too_far_to_arrive() {
        let mut idx = RecipientIndex::new();
        for n in 1..=10u8 {
            idx.upsert(
                r(n, -6.2 - f64::from(n) * 0.01, 106.8, 100, &FoodType::ALL),
                1,
            );
        }
        // 20 km/h and 5 minutes: only the nearest (1.1 km ≈ 3.3 min) can make it.
        let s = best(&idx, &facts(10, 5), NOW, 0, &[], &MatchParams::default());
        assert_eq!(s.best.map(|c| c.recipient_id), Some(id(1)));
        assert_eq!(s.scanned, 1);
    }

    #[test]
    fn travel_time_rounds_up() {
        assert_eq!(travel_time(20.0, 20.0), Duration::from_mins(60));
        assert_eq!(travel_time(0.0, 20.0), Duration::ZERO);
        assert!(travel_time(0.000_001, 20.0) > Duration::ZERO);
    }
}
