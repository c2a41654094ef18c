//! The registry feed against a model of the hub's `recipients` table, where
//! registrations take their receive time when their transaction begins and
//! become visible when it commits: nothing is missed, nothing goes out twice.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::domain::{FoodTypeSet, Mass};
use crate::geo::GeoPoint;
use crate::ids::EdgeId;

const PAGE: usize = 3;

fn id(n: u8) -> RecipientId {
    RecipientId::from_bytes([n + 1; 16])
}

fn entry(n: u8) -> RegistryEntry {
    RegistryEntry {
        id: id(n),
        owner: EdgeId::new("nb").expect("valid"),
        cell: 7,
        name: "Bank".into(),
        location: GeoPoint::new(-6.2, 106.8).expect("valid"),
        capacity_per_day: Mass::from_grams(1_000),
        accepted_food_types: FoodTypeSet::default(),
        is_fallback: false,
        erased: false,
    }
}

fn ms(t: i64) -> ReceivedAt {
    ReceivedAt::from_unix_us(t * 1_000)
}

/// The `recipients` table: per recipient, its committed versions as
/// `(receive time, commit time)`; the newest commit is the row.
#[derive(Default)]
struct Table(BTreeMap<u8, Vec<(ReceivedAt, i64)>>);

impl Table {
    fn write(&mut self, n: u8, received: ReceivedAt, commit_ms: i64) {
        self.0.entry(n).or_default().push((received, commit_ms));
    }

    /// The query `queries::registry` runs, as of `now_ms`.
    fn query(&self, now_ms: i64, after: Cursor, limit: usize) -> Vec<(RegistryEntry, ReceivedAt)> {
        let mut rows: Vec<(ReceivedAt, u8)> = self
            .0
            .iter()
            .filter_map(|(n, versions)| {
                let (at, _) = versions.iter().rev().find(|(_, c)| *c <= now_ms)?;
                Some((*at, *n))
            })
            .filter(|(at, n)| {
                Cursor {
                    received_at: *at,
                    id: id(*n),
                } > after
            })
            .collect();
        rows.sort_by_key(|(at, n)| (*at, id(*n)));
        rows.into_iter()
            .take(limit)
            .map(|(at, n)| (entry(n), at))
            .collect()
    }
}

/// One whole pass at `now_ms`, page by page; what it pushed, with the
/// receive time of each.
fn pass(feed: &mut RegistryFeed, table: &Table, now_ms: i64) -> Vec<(RecipientId, ReceivedAt)> {
    feed.start_pass();
    let mut pushed = Vec::new();
    while let Some(after) = feed.next_page() {
        let rows = table.query(now_ms, after, PAGE);
        let stamps: BTreeMap<RecipientId, ReceivedAt> =
            rows.iter().map(|(e, at)| (e.id, *at)).collect();
        for e in feed.page(rows, PAGE) {
            pushed.push((e.id, stamps[&e.id]));
        }
    }
    pushed
}

fn feed() -> RegistryFeed {
    RegistryFeed::with_limits(alloc::vec![1], Duration::from_ms(100), 1_000)
}

#[test]
fn a_pass_pages_through_everything_once_and_then_only_what_changed() {
    let mut t = Table::default();
    for n in 0..7 {
        t.write(n, ms(10 + i64::from(n)), 10 + i64::from(n));
    }
    let mut f = feed();
    assert_eq!(pass(&mut f, &t, 20).len(), 7, "all seven, over three pages");
    assert!(pass(&mut f, &t, 30).is_empty(), "nothing new: nothing sent");
    // An erasure bumps the receive time: it goes out once more.
    t.write(3, ms(40), 40);
    assert_eq!(pass(&mut f, &t, 45), [(id(3), ms(40))]);
    assert!(pass(&mut f, &t, 50).is_empty());
}

#[test]
fn a_registration_committed_late_inside_the_overlap_is_not_missed() {
    let mut t = Table::default();
    // 0 begins at 10 but commits at 90; 1 begins and commits at 20.
    t.write(0, ms(10), 90);
    t.write(1, ms(20), 20);
    let mut f = feed();
    assert_eq!(pass(&mut f, &t, 50), [(id(1), ms(20))]);
    assert_eq!(
        pass(&mut f, &t, 95),
        [(id(0), ms(10))],
        "re-read from 20 − 100 ms"
    );
    assert!(pass(&mut f, &t, 99).is_empty());
}

#[test]
fn no_pass_without_cells_and_no_second_pass_while_one_is_under_way() {
    let mut f = RegistryFeed::new(Vec::new());
    f.start_pass();
    assert_eq!(f.next_page(), None, "nothing to watch");
    let mut f = feed();
    f.start_pass();
    let first = f.next_page();
    let _ = f.page(alloc::vec![(entry(0), ms(1)), (entry(1), ms(2))], 2);
    let continued = f.next_page();
    assert_ne!(continued, first, "a full page moves the cursor on");
    f.start_pass();
    assert_eq!(f.next_page(), continued, "the pass under way continues");
}

#[test]
fn past_the_memory_limit_the_oldest_are_forgotten_and_may_go_out_again() {
    let mut t = Table::default();
    for n in 0..5 {
        t.write(n, ms(10 + i64::from(n)), 10);
    }
    let mut f = RegistryFeed::with_limits(alloc::vec![1], Duration::from_ms(100), 3);
    assert_eq!(pass(&mut f, &t, 20).len(), 5);
    assert_eq!(f.remembered(), 3, "held to the limit");
    let again: Vec<RecipientId> = pass(&mut f, &t, 21).into_iter().map(|(i, _)| i).collect();
    assert_eq!(
        again,
        [id(0), id(1)],
        "the two oldest, forgotten, go out once more"
    );
}

#[test]
fn what_left_the_window_is_forgotten() {
    let mut t = Table::default();
    t.write(0, ms(10), 10);
    let mut f = feed();
    assert_eq!(pass(&mut f, &t, 10).len(), 1);
    t.write(1, ms(500), 500);
    assert_eq!(pass(&mut f, &t, 500).len(), 1);
    assert_eq!(f.remembered(), 1, "10 ms is more than 100 ms behind 500 ms");
}

#[derive(Debug, Clone)]
enum Op {
    /// Recipient `n` is registered (or changed) now; it commits later.
    Write {
        n: u8,
        latency_ms: i64,
    },
    Advance {
        by_ms: i64,
    },
    Pass,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, 0i64..100).prop_map(|(n, latency_ms)| Op::Write { n, latency_ms }),
        2 => (0i64..60).prop_map(|by_ms| Op::Advance { by_ms }),
        2 => Just(Op::Pass),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Writes of one recipient are serial (its owning edge's session applies
    /// them in order); different recipients overlap freely, each committing
    /// within the overlap of its start. At the end every recipient's last
    /// version has been pushed, and no version was pushed twice.
    #[test]
    fn every_version_goes_out_exactly_once(ops in proptest::collection::vec(op(), 1..80)) {
        let mut t = Table::default();
        let mut f = feed();
        let mut now = 1_000i64;
        let mut busy_until: BTreeMap<u8, i64> = BTreeMap::new();
        let mut pushed: Vec<(RecipientId, ReceivedAt)> = Vec::new();
        for op in ops {
            match op {
                Op::Write { n, latency_ms } => {
                    if busy_until.get(&n).is_some_and(|u| *u >= now) {
                        continue;
                    }
                    // One microsecond per recipient keeps receive times apart.
                    let at = ReceivedAt::from_unix_us(now * 1_000 + i64::from(n));
                    t.write(n, at, now + latency_ms);
                    busy_until.insert(n, now + latency_ms);
                }
                Op::Advance { by_ms } => now += by_ms,
                Op::Pass => pushed.extend(pass(&mut f, &t, now)),
            }
        }
        now += 1_000;
        pushed.extend(pass(&mut f, &t, now));
        pushed.extend(pass(&mut f, &t, now));
        let mut seen = alloc::collections::BTreeSet::new();
        for p in &pushed {
            prop_assert!(seen.insert(*p), "pushed twice: {:?}", p);
        }
        for (n, versions) in &t.0 {
            let last = versions.last().map(|(at, _)| *at);
            let last_pushed = pushed.iter().rev().find(|(i, _)| *i == id(*n)).map(|(_, at)| *at);
            prop_assert_eq!(last_pushed, last, "recipient {}'s last version", n);
        }
    }
}
