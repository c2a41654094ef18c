//! Criterion benches for the matching core: k-nearest among 100,000
//! recipients, and a full match (candidates → feasible → scored → best).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_core::index::{AcceptanceStats, RecipientEntry, RecipientIndex, Reservation};
use edge_core::matching::{self, MatchParams, SurplusFacts};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sync_protocol::{
    Duration, FoodType, FoodTypeSet, GeoPoint, Mass, Recipient, RecipientId, SealedContact,
    Timestamp,
};

const N: usize = 100_000;
const NOW: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

fn point(rng: &mut SmallRng) -> GeoPoint {
    GeoPoint::new(
        -6.2 + rng.random_range(-0.3..0.3),
        106.85 + rng.random_range(-0.3..0.3),
    )
    .unwrap()
}

fn index(rng: &mut SmallRng) -> RecipientIndex {
    let entries = (0..N)
        .map(|i| {
            let mut id = [0u8; 16];
            rng.fill(&mut id);
            let types: FoodTypeSet = FoodType::ALL
                .into_iter()
                .filter(|_| rng.random_bool(0.7))
                .collect();
            RecipientEntry {
                recipient: Recipient {
                    id: RecipientId::from_bytes(id),
                    name: format!("r{i}"),
                    location: point(rng),
                    capacity_per_day: Mass::from_grams(rng.random_range(50..800) * 1_000),
                    accepted_food_types: types,
                    is_fallback: false,
                    contact: SealedContact::default(),
                },
                cell: 1,
                stats: AcceptanceStats {
                    offers_made: rng.random_range(0..50),
                    offers_accepted: rng.random_range(0..20),
                },
                reserved: Reservation {
                    day: NOW.local_day(420),
                    mass: Mass::from_grams(rng.random_range(0..40) * 1_000),
                },
                open_claims: 0,
            }
        })
        .collect();
    RecipientIndex::from_entries(entries)
}

fn benches(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(1);
    let idx = index(&mut rng);
    let points: Vec<GeoPoint> = (0..1024).map(|_| point(&mut rng)).collect();
    let facts: Vec<SurplusFacts> = points
        .iter()
        .map(|p| SurplusFacts {
            location: *p,
            food_type: FoodType::ALL[rng.random_range(0..7)],
            quantity: Mass::from_grams(rng.random_range(1..40) * 1_000),
            expires_at: NOW + Duration::from_mins(rng.random_range(60..360)),
        })
        .collect();
    let params = MatchParams::default();
    let day = NOW.local_day(420);

    let mut i = 0;
    c.bench_function("knn10_among_100k_recipients", |b| {
        b.iter(|| {
            i = (i + 1) % points.len();
            let n = idx
                .nearest_within(black_box(&points[i]), 15.0, FoodType::Bakery)
                .take(10)
                .count();
            black_box(n)
        })
    });
    let mut j = 0;
    c.bench_function("best_match_among_100k_recipients", |b| {
        b.iter(|| {
            j = (j + 1) % facts.len();
            black_box(matching::best(
                &idx,
                black_box(&facts[j]),
                NOW,
                day,
                &[],
                &params,
            ))
        })
    });
    let excluded: Vec<RecipientId> = idx.iter().take(3).map(|e| e.recipient.id).collect();
    let mut k = 0;
    c.bench_function("rank_16_with_exclusions_among_100k", |b| {
        b.iter(|| {
            k = (k + 1) % facts.len();
            black_box(matching::rank(
                &idx,
                black_box(&facts[k]),
                NOW,
                day,
                &excluded,
                &params,
            ))
        })
    });
}

criterion_group!(matching_benches, benches);
criterion_main!(matching_benches);
