//! Engine tests: scenarios with a fake clock, and a property test that drives
//! random command sequences and checks the lifecycle's invariants on every
//! event the engine emits.

use std::collections::HashMap;

use proptest::prelude::*;
use sync_protocol::{
    ClaimVia, DeadLetterReason, Duration, Event, FoodType, FoodTypeSet, GeoPoint, Mass, Provider,
    ProviderId, Recipient, RecipientId, SealedContact, SurplusId, SurplusPosted, SurplusStatus,
    Timestamp,
};

use super::*;
use crate::lifecycle::{LiveSurplus, allowed};

const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);
const CELL: u64 = 42;

fn mins(m: i64) -> Timestamp {
    T0 + Duration::from_mins(m)
}

fn contact() -> SealedContact {
    SealedContact(vec![1, 0, 0, 0, 1])
}

fn rid(n: u8) -> RecipientId {
    RecipientId::from_bytes([n; 16])
}

fn recipient(n: u8, km_south: f64, capacity_kg: u64, fallback: bool) -> Recipient {
    Recipient {
        id: rid(n),
        name: format!("r{n}"),
        location: GeoPoint::new(-6.2 - km_south / 111.2, 106.8).expect("valid"),
        capacity_per_day: Mass::from_grams(capacity_kg * 1_000),
        accepted_food_types: FoodTypeSet::all(),
        is_fallback: fallback,
        contact: contact(),
    }
}

const PROVIDER: ProviderId = ProviderId::from_bytes([0xaa; 16]);

fn engine_with(recipients: &[Recipient]) -> Engine {
    let mut e = Engine::new(EngineConfig::default());
    e.register_provider(Provider {
        id: PROVIDER,
        name: "p".into(),
        location: GeoPoint::new(-6.2, 106.8).expect("valid"),
        contact: contact(),
    })
    .expect("room");
    for r in recipients {
        e.register_recipient(r.clone(), CELL).expect("room");
    }
    e.drain();
    e
}

fn posted(n: u8, kg: u64, expires_in_mins: i64) -> SurplusPosted {
    SurplusPosted {
        id: SurplusId::from_bytes([n; 16]),
        provider_id: PROVIDER,
        location: GeoPoint::new(-6.2, 106.8).expect("valid"),
        cell: CELL,
        quantity: Mass::from_grams(kg * 1_000),
        food_type: FoodType::PreparedMeals,
        expires_at: mins(expires_in_mins),
        description: String::new(),
    }
}

fn sid(n: u8) -> SurplusId {
    SurplusId::from_bytes([n; 16])
}

fn offered_to(e: &Engine, s: SurplusId) -> Option<RecipientId> {
    e.surplus(&s).and_then(|s| s.offer.map(|o| o.recipient_id))
}

fn kinds(out: &Output) -> Vec<&'static str> {
    out.events.iter().map(Event::kind).collect()
}

#[test]
fn post_offers_to_the_nearest_and_decline_rematches() {
    let mut e = engine_with(&[recipient(1, 1.0, 100, false), recipient(2, 2.0, 100, false)]);
    let s = e.post(T0, posted(1, 10, 120)).expect("posted");
    assert_eq!((s.status, s.version), (SurplusStatus::Offered, 2));
    assert_eq!(offered_to(&e, sid(1)), Some(rid(1)));
    assert_eq!(kinds(&e.drain()), ["surplus_posted", "offer_made"]);

    e.decline(mins(1), sid(1), rid(1)).expect("declined");
    assert_eq!(offered_to(&e, sid(1)), Some(rid(2)));
    let out = e.drain();
    assert_eq!(kinds(&out), ["offer_declined", "offer_made"]);
    assert_eq!(out.surplus.len(), 1, "one row per touched surplus");
    assert_eq!(out.surplus[0].version, 4);
}

#[test]
fn ack_timeout_rematches_and_releases_capacity() {
    let mut e = engine_with(&[recipient(1, 1.0, 10, false), recipient(2, 2.0, 10, false)]);
    e.post(T0, posted(1, 10, 120)).expect("posted");
    assert_eq!(offered_to(&e, sid(1)), Some(rid(1)));
    // r1's whole capacity is reserved by the pending offer.
    assert_eq!(
        e.recipients()
            .get(&rid(1))
            .map(|r| r.remaining(T0.local_day(420))),
        Some(Mass::ZERO)
    );
    assert_eq!(e.tick(mins(4)), 0);
    assert_eq!(e.next_deadline(), Some(mins(5)));
    assert_eq!(e.tick(mins(5)), 1);
    assert_eq!(offered_to(&e, sid(1)), Some(rid(2)));
    assert_eq!(
        e.recipients()
            .get(&rid(1))
            .map(|r| r.remaining(T0.local_day(420))),
        Some(Mass::from_grams(10_000))
    );
    assert_eq!(kinds(&e.drain())[2..], ["offer_timed_out", "offer_made"]);
}

#[test]
fn the_dlq_backs_off_exponentially_then_falls_back_with_an_alert() {
    // Only the fallback recipient exists, 40 km away: outside the radius.
    let mut fb = recipient(9, 40.0, 1_000, true);
    fb.accepted_food_types = FoodTypeSet::all();
    let mut e = engine_with(&[fb]);
    e.post(T0, posted(1, 10, 240)).expect("posted");
    let s = e.surplus(&sid(1)).expect("live");
    assert_eq!(
        (s.status, s.dlq_retry_at),
        (SurplusStatus::DeadLettered, Some(mins(1)))
    );
    // Retries at +1, then +2 (t=3), then +4 (t=7); then the fallback.
    for (at, next) in [(1, Some(mins(3))), (3, Some(mins(7)))] {
        assert_eq!(e.tick(mins(at)), 1);
        assert_eq!(
            e.surplus(&sid(1)).expect("live").dlq_retry_at,
            next,
            "after retry at {at}"
        );
    }
    assert_eq!(e.tick(mins(7)), 1);
    let s = e.surplus(&sid(1)).expect("live");
    assert_eq!((s.status, s.dlq_attempts), (SurplusStatus::Offered, 3));
    assert_eq!(offered_to(&e, sid(1)), Some(rid(9)));
    let out = e.drain();
    assert_eq!(
        out.alerts,
        [Alert::FallbackOffered {
            surplus_id: sid(1),
            recipient_id: rid(9)
        }]
    );
    assert!(
        out.events
            .iter()
            .any(|ev| matches!(ev, Event::OfferMade { fallback: true, .. }))
    );
    // The fallback ignores its offer: the DLQ is done, only expiry remains.
    e.tick(mins(12));
    let s = e.surplus(&sid(1)).expect("live");
    assert_eq!(
        (s.status, s.dlq_retry_at),
        (SurplusStatus::DeadLettered, None)
    );
    assert_eq!(e.drain().alerts, [Alert::NoFallback { surplus_id: sid(1) }]);
    e.tick(mins(240));
    assert!(e.surplus(&sid(1)).is_none());
    let out = e.drain();
    assert_eq!(kinds(&out), ["expired"]);
    assert_eq!(out.surplus[0].status, SurplusStatus::Expired);
}

#[test]
fn three_failed_offers_dead_letter_even_with_candidates_left() {
    let rs: Vec<_> = (1..=5)
        .map(|n| recipient(n, f64::from(n), 100, false))
        .collect();
    let mut e = engine_with(&rs);
    e.post(T0, posted(1, 10, 600)).expect("posted");
    for n in 1..=3 {
        e.decline(mins(1), sid(1), rid(n)).expect("declined");
    }
    let s = e.surplus(&sid(1)).expect("live");
    assert_eq!(s.status, SurplusStatus::DeadLettered);
    assert_eq!(s.dlq_retry_at, Some(mins(2)));
    let out = e.drain();
    assert!(out.events.iter().any(|ev| matches!(
        ev,
        Event::DeadLettered {
            reason: DeadLetterReason::OffersExhausted,
            ..
        }
    )));
    // The retry offers to the next recipient nobody has offered it to.
    e.tick(mins(2));
    assert_eq!(offered_to(&e, sid(1)), Some(rid(4)));
}

#[test]
fn a_retry_due_after_expiry_goes_straight_to_the_fallback() {
    // The fallback is 200 m away but too small for a normal offer (1 kg/day):
    // the DLQ's first retry would come after expiry, so it goes straight to
    // the fallback, which ignores capacity and can arrive in time.
    let mut e = engine_with(&[recipient(9, 0.2, 1, true)]);
    e.post(T0, posted(1, 10, 1)).expect("posted");
    assert_eq!(offered_to(&e, sid(1)), Some(rid(9)));
}

#[test]
fn expiry_cancels_the_pending_offer_and_nothing_expired_is_offered() {
    let mut e = engine_with(&[recipient(1, 1.0, 10, false)]);
    e.post(T0, posted(1, 10, 30)).expect("posted");
    e.tick(mins(30)); // the ACK deadline (5) fired first in real life; jump past both
    assert!(e.surplus(&sid(1)).is_none());
    let out = e.drain();
    assert_eq!(
        out.surplus.last().map(|s| s.status),
        Some(SurplusStatus::Expired)
    );
    assert_eq!(
        e.recipients()
            .get(&rid(1))
            .map(|r| r.remaining(T0.local_day(420))),
        Some(Mass::from_grams(10_000))
    );
    assert_eq!(
        e.claim(mins(31), sid(1), rid(1), 99).map(drop),
        Err(CommandRefusal::NotLive)
    );
}

#[test]
fn first_claim_wins_and_supersedes_the_offer() {
    let mut e = engine_with(&[recipient(1, 1.0, 100, false), recipient(2, 2.0, 100, false)]);
    let v = e.post(T0, posted(1, 10, 120)).expect("posted").version;
    e.claim(mins(1), sid(1), rid(2), v).expect("first claim");
    assert_eq!(
        e.claim(mins(1), sid(1), rid(1), v).map(drop),
        Err(CommandRefusal::Lifecycle(Refusal::AlreadyClaimed))
    );
    assert_eq!(
        e.accept(mins(1), sid(1), rid(1)).map(drop),
        Err(CommandRefusal::Lifecycle(Refusal::NoPendingOffer))
    );
    let day = T0.local_day(420);
    assert_eq!(
        e.recipients().get(&rid(1)).map(|r| r.remaining(day)),
        Some(Mass::from_grams(100_000))
    );
    assert_eq!(
        e.recipients().get(&rid(2)).map(|r| r.remaining(day)),
        Some(Mass::from_grams(90_000))
    );
    let out = e.drain();
    assert!(matches!(
        out.events.last(),
        Some(Event::Claimed {
            via: ClaimVia::Direct,
            ..
        })
    ));
}

#[test]
fn refused_commands_emit_nothing() {
    let mut e = engine_with(&[recipient(1, 1.0, 100, false)]);
    e.post(T0, posted(1, 10, 120)).expect("posted");
    e.drain();
    let table: Vec<(&str, CommandRefusal)> = vec![
        (
            "unknown surplus",
            e.claim(T0, sid(7), rid(1), 1).map(drop).unwrap_err(),
        ),
        (
            "unknown recipient",
            e.claim(T0, sid(1), rid(8), 2).map(drop).unwrap_err(),
        ),
        (
            "stale version",
            e.claim(T0, sid(1), rid(1), 1).map(drop).unwrap_err(),
        ),
        (
            "decline by other",
            e.decline(T0, sid(1), rid(8)).map(drop).unwrap_err(),
        ),
        (
            "pick up unclaimed",
            e.pick_up(T0, sid(1), rid(1)).map(drop).unwrap_err(),
        ),
    ];
    let expected = [
        CommandRefusal::NotLive,
        CommandRefusal::UnknownRecipient,
        CommandRefusal::Lifecycle(Refusal::StaleVersion),
        CommandRefusal::Lifecycle(Refusal::NoPendingOffer),
        CommandRefusal::Lifecycle(Refusal::InvalidTransition),
    ];
    for ((name, got), want) in table.into_iter().zip(expected) {
        assert_eq!(got, want, "{name}");
    }
    let out = e.drain();
    assert!(
        out.events.is_empty() && out.surplus.is_empty(),
        "{:?}",
        kinds(&out)
    );
    e.check_invariants().expect("invariants");
}

#[test]
fn a_command_after_expiry_sees_the_expiry_even_before_the_timer_ran() {
    let mut e = engine_with(&[recipient(1, 1.0, 100, false)]);
    e.post(T0, posted(1, 10, 120)).expect("posted");
    e.drain();
    // No tick at 120: the claim itself fires the due expiry, then is refused.
    assert_eq!(
        e.claim(mins(120), sid(1), rid(1), 2).map(drop),
        Err(CommandRefusal::Lifecycle(Refusal::Expired))
    );
    let out = e.drain();
    assert_eq!(
        kinds(&out),
        ["expired"],
        "the timer's event stands; the claim adds nothing"
    );
    assert_eq!(out.surplus[0].status, SurplusStatus::Expired);
    assert!(e.surplus(&sid(1)).is_none());
    e.check_invariants().expect("invariants");
}

#[test]
fn an_uncollected_claim_expires_and_gives_its_capacity_back() {
    let mut e = engine_with(&[recipient(1, 1.0, 20, false)]);
    let v = e.post(T0, posted(1, 10, 60)).expect("posted").version;
    e.claim(mins(1), sid(1), rid(1), v).expect("claimed");
    let day = T0.local_day(420);
    assert_eq!(
        e.recipients().get(&rid(1)).map(|r| r.remaining(day)),
        Some(Mass::from_grams(10_000))
    );
    e.tick(mins(60));
    assert!(e.surplus(&sid(1)).is_none(), "it leaves memory");
    let out = e.drain();
    assert!(
        out.events
            .iter()
            .any(|ev| matches!(ev, Event::Expired { .. }))
    );
    assert_eq!(
        e.recipients().get(&rid(1)).map(|r| r.remaining(day)),
        Some(Mass::from_grams(20_000))
    );
    assert_eq!(
        e.pick_up(mins(61), sid(1), rid(1)).map(drop),
        Err(CommandRefusal::NotLive),
        "the store answers 410 for it"
    );
}

#[test]
fn a_picked_up_surplus_leaves_memory_and_comes_back_to_be_delivered() {
    let mut e = engine_with(&[recipient(1, 1.0, 100, false)]);
    let v = e.post(T0, posted(1, 10, 60)).expect("posted").version;
    e.claim(mins(1), sid(1), rid(1), v).expect("claimed");
    e.pick_up(mins(2), sid(1), rid(1)).expect("picked up");
    assert!(e.surplus(&sid(1)).is_none());
    let out = e.drain();
    let stored = out.surplus.last().cloned().expect("its row is written");
    assert_eq!(stored.status, SurplusStatus::PickedUp);
    assert_eq!(
        e.deliver(mins(3), sid(1), rid(1), Mass::from_grams(1))
            .map(drop),
        Err(CommandRefusal::NotLive)
    );
    // The store brings it back for the delivery report.
    assert!(e.rehydrate(stored.clone()));
    assert_eq!(
        e.deliver(mins(3), sid(2), rid(1), Mass::from_grams(1))
            .map(drop),
        Err(CommandRefusal::NotLive)
    );
    assert_eq!(
        e.deliver(mins(3), sid(1), rid(9), Mass::from_grams(1))
            .map(drop),
        Err(CommandRefusal::Lifecycle(Refusal::NotClaimant))
    );
    assert!(
        e.surplus(&sid(1)).is_none(),
        "a refused report does not keep it in memory"
    );
    assert!(e.rehydrate(stored));
    e.deliver(mins(3), sid(1), rid(1), Mass::from_grams(9_000))
        .expect("delivered");
    assert!(e.surplus(&sid(1)).is_none());
    assert_eq!(
        e.drain().surplus.last().map(|s| s.status),
        Some(SurplusStatus::Delivered)
    );
    e.check_invariants().expect("invariants");
}

#[test]
fn a_post_that_expired_before_the_writer_saw_it_is_refused() {
    let mut fb = recipient(9, 0.2, 1, true);
    fb.accepted_food_types = FoodTypeSet::all();
    let mut e = engine_with(&[fb]);
    let mut p = posted(1, 10, 0);
    p.expires_at = T0;
    assert_eq!(e.post(T0, p).map(drop), Err(CommandRefusal::ExpiryInPast));
    assert!(e.drain().events.is_empty());
}

#[test]
fn a_fallback_that_cannot_arrive_in_time_is_not_offered() {
    // The fallback is 40 km away; the food expires in a minute.
    let mut e = engine_with(&[recipient(9, 40.0, 1_000, true)]);
    e.post(T0, posted(1, 10, 1)).expect("posted");
    assert_eq!(offered_to(&e, sid(1)), None);
    let out = e.drain();
    assert_eq!(out.alerts, [Alert::NoFallback { surplus_id: sid(1) }]);
}

#[test]
fn unknown_provider_and_saturation_are_refused() {
    let mut e = engine_with(&[]);
    let mut p = posted(1, 10, 60);
    p.provider_id = ProviderId::from_bytes([1; 16]);
    assert_eq!(
        e.post(T0, p).map(drop),
        Err(CommandRefusal::UnknownProvider)
    );
    let mut e = Engine::new(EngineConfig {
        max_live_surplus: 1,
        ..EngineConfig::default()
    });
    e.register_provider(Provider {
        id: PROVIDER,
        name: "p".into(),
        location: GeoPoint::new(0.0, 0.0).expect("valid"),
        contact: contact(),
    })
    .expect("room");
    e.post(T0, posted(1, 10, 60)).expect("first fits");
    assert_eq!(
        e.post(T0, posted(2, 10, 60)).map(drop),
        Err(CommandRefusal::Saturated)
    );
}

// ---- property test -------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Post {
        kg: u64,
        expires_in_mins: i64,
        food: usize,
    },
    Claim {
        s: usize,
        r: u8,
        stale: bool,
    },
    Accept {
        s: usize,
        as_offered: bool,
        r: u8,
    },
    Decline {
        s: usize,
        as_offered: bool,
        r: u8,
    },
    PickUp {
        s: usize,
        r: u8,
    },
    Deliver {
        s: usize,
        r: u8,
        kg: u64,
    },
    Advance {
        mins: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..80, -3i64..240, 0usize..7).prop_map(|(kg, e, food)| Op::Post { kg, expires_in_mins: e, food }),
        2 => (0usize..16, 1u8..=8, any::<bool>()).prop_map(|(s, r, stale)| Op::Claim { s, r, stale }),
        3 => (0usize..16, any::<bool>(), 1u8..=8).prop_map(|(s, a, r)| Op::Accept { s, as_offered: a, r }),
        3 => (0usize..16, any::<bool>(), 1u8..=8).prop_map(|(s, a, r)| Op::Decline { s, as_offered: a, r }),
        2 => (0usize..16, 1u8..=8).prop_map(|(s, r)| Op::PickUp { s, r }),
        2 => (0usize..16, 1u8..=8, 0u64..90).prop_map(|(s, r, kg)| Op::Deliver { s, r, kg }),
        3 => (0i64..20).prop_map(|mins| Op::Advance { mins }),
    ]
}

/// What the event stream says about one surplus; checked as events arrive.
#[derive(Debug, Default)]
struct Seen {
    status: Option<SurplusStatus>,
    version: u64,
    expires_at: Option<Timestamp>,
    offered: Vec<RecipientId>,
    claimant: Option<RecipientId>,
}

fn check_event(
    seen: &mut HashMap<SurplusId, Seen>,
    at: Timestamp,
    ev: &Event,
) -> Result<(), String> {
    let Some(id) = ev.surplus_id() else {
        return Ok(());
    };
    let s = seen.entry(id).or_default();
    let (to, version) = match ev {
        Event::SurplusPosted(p) => {
            s.expires_at = Some(p.expires_at);
            (SurplusStatus::Available, 1)
        }
        Event::OfferMade {
            recipient_id,
            version,
            ..
        } => {
            if s.offered.contains(recipient_id) {
                return Err(format!("{id}: offered twice to {recipient_id}"));
            }
            if s.expires_at.is_some_and(|e| at >= e) {
                return Err(format!("{id}: offered after expiry"));
            }
            s.offered.push(*recipient_id);
            (SurplusStatus::Offered, *version)
        }
        Event::OfferDeclined { version, .. } | Event::OfferTimedOut { version, .. } => {
            (SurplusStatus::Available, *version)
        }
        Event::Claimed {
            recipient_id,
            version,
            ..
        } => {
            if let Some(c) = s.claimant {
                return Err(format!("{id}: second claimant {recipient_id} after {c}"));
            }
            s.claimant = Some(*recipient_id);
            (SurplusStatus::Claimed, *version)
        }
        Event::PickedUp { version, .. } => (SurplusStatus::PickedUp, *version),
        Event::Delivered { version, .. } => (SurplusStatus::Delivered, *version),
        Event::Expired { version, .. } => (SurplusStatus::Expired, *version),
        Event::DeadLettered { version, .. } => (SurplusStatus::DeadLettered, *version),
        Event::ProviderRegistered(_)
        | Event::RecipientRegistered(_)
        | Event::ContactResealed { .. }
        | Event::SubjectErased { .. }
        | Event::Audited(_) => return Ok(()),
    };
    if let Some(from) = s.status
        && !allowed(from, to)
    {
        return Err(format!("{id}: forbidden transition {from:?} → {to:?}"));
    }
    if version != s.version + 1 {
        return Err(format!("{id}: version {version} after {}", s.version));
    }
    s.status = Some(to);
    s.version = version;
    Ok(())
}

fn run_ops(ops: &[Op]) -> Result<(), String> {
    let mut rs: Vec<_> = (1..=7)
        .map(|n| recipient(n, f64::from(n) * 1.5, 60 + u64::from(n) * 10, false))
        .collect();
    rs.push(recipient(8, 30.0, 500, true));
    for (i, r) in rs.iter_mut().enumerate() {
        if i % 3 == 1 {
            r.accepted_food_types = [FoodType::PreparedMeals, FoodType::Bakery]
                .into_iter()
                .collect();
        }
    }
    let mut e = engine_with(&rs);
    let mut now = T0;
    let mut ids: Vec<SurplusId> = Vec::new();
    let mut seen: HashMap<SurplusId, Seen> = HashMap::new();
    // What "the store" holds of surplus that left memory: picked-up ones come
    // back for their delivery report, as the writer does.
    let mut stored: HashMap<SurplusId, LiveSurplus> = HashMap::new();
    let pick = |ids: &[SurplusId], i: usize| ids.get(i % ids.len().max(1)).copied();
    for op in ops {
        match *op {
            Op::Post {
                kg,
                expires_in_mins,
                food,
            } => {
                let n = ids.len() as u8;
                let mut p = posted(n, kg, 0);
                p.id = SurplusId::from_bytes([n.wrapping_add(1); 16]);
                p.food_type = FoodType::ALL[food];
                p.expires_at = now + Duration::from_mins(expires_in_mins);
                match e.post(now, p.clone()) {
                    Ok(_) => ids.push(p.id),
                    Err(CommandRefusal::ExpiryInPast) if expires_in_mins <= 0 => {}
                    Err(r) => return Err(format!("post refused: {r:?}")),
                }
            }
            Op::Claim { s, r, stale } => {
                if let Some(id) = pick(&ids, s) {
                    let v = e.surplus(&id).map_or(1, |s| s.version);
                    let _ = e.claim(now, id, rid(r), if stale { v.saturating_sub(1) } else { v });
                }
            }
            Op::Accept { s, as_offered, r } | Op::Decline { s, as_offered, r } => {
                if let Some(id) = pick(&ids, s) {
                    let who = if as_offered {
                        offered_to(&e, id).unwrap_or(rid(r))
                    } else {
                        rid(r)
                    };
                    let _ = if matches!(op, Op::Accept { .. }) {
                        e.accept(now, id, who).map(drop)
                    } else {
                        e.decline(now, id, who).map(drop)
                    };
                }
            }
            Op::PickUp { s, r } => {
                if let Some(id) = pick(&ids, s) {
                    let who = e
                        .surplus(&id)
                        .and_then(|s| s.claimed_by)
                        .filter(|_| r % 2 == 0)
                        .unwrap_or(rid(r));
                    let _ = e.pick_up(now, id, who);
                }
            }
            Op::Deliver { s, r, kg } => {
                if let Some(id) = pick(&ids, s) {
                    let who = e
                        .surplus(&id)
                        .and_then(|s| s.claimed_by)
                        .filter(|_| r % 2 == 0)
                        .unwrap_or(rid(r));
                    let mut r = e
                        .deliver(now, id, who, Mass::from_grams(kg * 1_000))
                        .map(drop);
                    if r == Err(CommandRefusal::NotLive)
                        && let Some(s) = stored
                            .get(&id)
                            .filter(|s| s.status == SurplusStatus::PickedUp)
                    {
                        let who = if r_even(kg) {
                            s.claimed_by.unwrap_or(who)
                        } else {
                            who
                        };
                        e.rehydrate(s.clone());
                        r = e
                            .deliver(now, id, who, Mass::from_grams(kg * 1_000))
                            .map(drop);
                    }
                    let _ = r;
                }
            }
            Op::Advance { mins } => {
                now = now + Duration::from_mins(mins);
                while e.tick(now) > 0 {}
            }
        }
        let out = e.drain();
        for ev in &out.events {
            check_event(&mut seen, now, ev)?;
        }
        for s in &out.surplus {
            stored.insert(s.posted.id, s.clone());
            let v = seen.get(&s.posted.id).map(|x| (x.status, x.version));
            if v != Some((Some(s.status), s.version)) {
                return Err(format!(
                    "row {:?} v{} disagrees with events {v:?}",
                    s.status, s.version
                ));
            }
        }
        e.check_invariants()?;
        // Capacity never goes negative, and nothing unclaimed is past expiry
        // once the timers have run.
        for id in &ids {
            if let Some(s) = e.surplus(id)
                && matches!(op, Op::Advance { .. })
                && s.status.is_unclaimed()
                && s.is_expired_at(now)
            {
                return Err(format!("{id}: unclaimed past expiry after tick"));
            }
        }
    }
    Ok(())
}

fn r_even(kg: u64) -> bool {
    kg.is_multiple_of(2)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_command_sequences_keep_every_invariant(ops in proptest::collection::vec(op(), 1..120)) {
        if let Err(e) = run_ops(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn a_recipient_cannot_hoard_claims() {
    let mut e = Engine::new(EngineConfig {
        max_open_claims: 2,
        ..EngineConfig::default()
    });
    e.register_provider(Provider {
        id: PROVIDER,
        name: "p".into(),
        location: GeoPoint::new(-6.2, 106.8).expect("valid"),
        contact: contact(),
    })
    .expect("room");
    e.register_recipient(recipient(1, 1.0, 1_000, false), CELL)
        .expect("room");
    for n in 1..=3u8 {
        let v = e.post(T0, posted(n, 1, 120)).expect("posted").version;
        let r = e.claim(mins(1), sid(n), rid(1), v).map(drop);
        if n <= 2 {
            r.expect("within the cap");
        } else {
            assert_eq!(r, Err(CommandRefusal::TooManyOpenClaims));
        }
    }
    e.pick_up(mins(2), sid(1), rid(1))
        .expect("collected: one claim closes");
    let v = e.surplus(&sid(3)).expect("live").version;
    e.claim(mins(3), sid(3), rid(1), v).expect("room again");
    e.check_invariants().expect("invariants");
}

#[test]
fn an_operator_retries_and_resolves_the_dead_letter_queue() {
    // A far recipient (outside the radius): the post is dead-lettered.
    let far = recipient(7, 40.0, 100, false);
    let mut e = engine_with(std::slice::from_ref(&far));
    e.post(T0, posted(1, 10, 240)).expect("posted");
    assert_eq!(
        e.surplus(&sid(1)).expect("live").status,
        SurplusStatus::DeadLettered
    );
    e.drain();
    // Retry with nobody in reach: back into the queue, a retry scheduled.
    let s = e.dlq_retry(mins(0), sid(1)).expect("retried");
    assert_eq!(s.status, SurplusStatus::DeadLettered);
    assert!(s.dlq_retry_at.is_some());
    assert_eq!(kinds(&e.drain()), ["dead_lettered"]);
    // A recipient registered since: the retry offers to it.
    e.register_recipient(recipient(1, 1.0, 100, false), CELL)
        .expect("room");
    e.drain();
    let s = e.dlq_retry(mins(0), sid(1)).expect("retried");
    assert_eq!(
        (s.status, offered_to(&e, sid(1))),
        (SurplusStatus::Offered, Some(rid(1)))
    );
    assert_eq!(kinds(&e.drain()), ["offer_made"]);
    // Only a dead-lettered surplus is retried or resolved; nothing changes otherwise.
    let refusals = [
        e.dlq_retry(mins(0), sid(1)).map(|_| ()),
        e.dlq_resolve(mins(0), sid(1), rid(7)).map(|_| ()),
        e.dlq_resolve(mins(0), sid(9), rid(7)).map(|_| ()),
    ];
    assert_eq!(
        refusals,
        [
            Err(CommandRefusal::Lifecycle(Refusal::InvalidTransition)),
            Err(CommandRefusal::Lifecycle(Refusal::InvalidTransition)),
            Err(CommandRefusal::NotLive),
        ]
    );
    assert!(e.drain().events.is_empty(), "a refusal emits nothing");

    // Resolve: the operator's recipient is offered it, out of reach or not.
    let mut e = engine_with(&[far]);
    e.post(T0, posted(2, 10, 240)).expect("posted");
    e.drain();
    assert_eq!(
        e.dlq_resolve(mins(1), sid(2), rid(8)).map(|_| ()),
        Err(CommandRefusal::UnknownRecipient)
    );
    // Before its scheduled retry (at +1 min), so only the operator's offer is made.
    let s = e.dlq_resolve(mins(0), sid(2), rid(7)).expect("resolved");
    assert_eq!(
        (s.status, offered_to(&e, sid(2))),
        (SurplusStatus::Offered, Some(rid(7)))
    );
    assert_eq!(kinds(&e.drain()), ["offer_made"]);
    e.check_invariants().expect("invariants hold");
    // After expiry neither works.
    e.tick(mins(300));
    e.drain();
    assert_eq!(
        e.dlq_retry(mins(300), sid(2)).map(|_| ()),
        Err(CommandRefusal::NotLive)
    );
}
