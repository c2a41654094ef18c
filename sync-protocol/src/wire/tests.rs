//! Golden bytes pin the wire format; random bytes prove decoding is total.

use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::domain::{FoodType, FoodTypeSet, Mass, Provider, Recipient, SealedContact, Subject};
use crate::event::{AuditRecord, ClaimVia, DeadLetterReason, Event, SurplusPosted};
use crate::geo::GeoPoint;
use crate::golden_check::{assert_golden, hex};
use crate::ids::{EdgeId, ProviderId, RecipientId, SurplusId};
use crate::time::Timestamp;
use crate::trace::TraceContext;

fn point() -> GeoPoint {
    GeoPoint::new(-6.2, 106.816666).expect("valid")
}

fn envelope(seq: u64, event: Event) -> Envelope {
    Envelope {
        edge_id: EdgeId::new("jkt-1").expect("valid"),
        seq,
        lease_epoch: 3,
        at: Timestamp::from_unix_ms(1_795_539_600_000),
        trace_context: Some(TraceContext {
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
            flags: 1,
        }),
        event,
    }
}

fn sample_events() -> Vec<Event> {
    let s = SurplusId::from_bytes([1; 16]);
    let r = RecipientId::from_bytes([2; 16]);
    let p = ProviderId::from_bytes([3; 16]);
    let contact = SealedContact(vec![1, 0, 0, 0, 1, 0xee, 0xee]);
    vec![
        Event::ProviderRegistered(Provider {
            id: p,
            name: "Warung".into(),
            location: point(),
            contact: contact.clone(),
        }),
        Event::RecipientRegistered(Recipient {
            id: r,
            name: "Bank".into(),
            location: point(),
            capacity_per_day: Mass::from_grams(500_000),
            accepted_food_types: [FoodType::Bakery, FoodType::Produce].into_iter().collect(),
            is_fallback: true,
            contact,
        }),
        Event::SurplusPosted(SurplusPosted {
            id: s,
            provider_id: p,
            location: point(),
            cell: 0x2e6a_c000_0000_0000,
            quantity: Mass::from_grams(12_500),
            food_type: FoodType::PreparedMeals,
            expires_at: Timestamp::from_unix_ms(1_795_550_400_000),
            description: "nasi".into(),
        }),
        Event::OfferMade {
            surplus_id: s,
            recipient_id: r,
            ack_deadline: Timestamp::from_unix_ms(1_795_539_900_000),
            attempt: 1,
            fallback: false,
            version: 2,
        },
        Event::OfferDeclined {
            surplus_id: s,
            recipient_id: r,
            version: 3,
        },
        Event::OfferTimedOut {
            surplus_id: s,
            recipient_id: r,
            version: 4,
        },
        Event::Claimed {
            surplus_id: s,
            recipient_id: r,
            via: ClaimVia::Direct,
            version: 5,
        },
        Event::PickedUp {
            surplus_id: s,
            recipient_id: r,
            version: 6,
        },
        Event::Delivered {
            surplus_id: s,
            recipient_id: r,
            delivered: Mass::from_grams(12_000),
            version: 7,
        },
        Event::Expired {
            surplus_id: s,
            version: 8,
        },
        Event::DeadLettered {
            surplus_id: s,
            reason: DeadLetterReason::OffersExhausted,
            dlq_attempts: 1,
            retry_at: Some(Timestamp::from_unix_ms(1_795_539_720_000)),
            version: 9,
        },
        Event::ContactResealed {
            subject: Subject::Recipient(r),
            contact: SealedContact(vec![1, 0, 0, 0, 2, 0xff]),
        },
        Event::SubjectErased {
            subject: Subject::Provider(p),
        },
        Event::Audited(AuditRecord {
            actor: "adm".into(),
            role: "admin".into(),
            action: "surplus.post".into(),
            resource: "surplus".into(),
            status: 201,
            ip: Some("10.0.0.1".into()),
            user_agent: None,
        }),
    ]
}

/// The encoding of each sample event, in order. If one of these changes, the
/// wire format changed: old edges and hubs would misread new bytes. Append a
/// variant or bump `WIRE_VERSION`; never edit a line here to make a test pass.
const GOLDEN: [&str; 14] = [
    "02056a6b742d310103808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd0100100303030303030303030303030303030306576172756e67cdcccccccccc18c05470784144b45a40070100000001eeee",
    "02056a6b742d310203808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010110020202020202020202020202020202020442616e6bcdcccccccccc18c05470784144b45a40a0c21e0601070100000001eeee",
    "02056a6b742d310303808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010210010101010101010101010101010101011003030303030303030303030303030303cdcccccccccc18c05470784144b45a40808080808080b0b52ed4610080b8a6f2c168046e617369",
    "02056a6b742d310403808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010310010101010101010101010101010101011002020202020202020202020202020202c0d9a4e8c168010002",
    "02056a6b742d310503808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd01041001010101010101010101010101010101100202020202020202020202020202020203",
    "02056a6b742d310603808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd01051001010101010101010101010101010101100202020202020202020202020202020204",
    "02056a6b742d310703808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd0106100101010101010101010101010101010110020202020202020202020202020202020105",
    "02056a6b742d310803808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd01071001010101010101010101010101010101100202020202020202020202020202020206",
    "02056a6b742d310903808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010810010101010101010101010101010101011002020202020202020202020202020202e05d07",
    "02056a6b742d310a03808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd0109100101010101010101010101010101010108",
    "02056a6b742d310b03808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010a100101010101010101010101010101010101010180dd8ee8c16809",
    "02056a6b742d310c03808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010b011002020202020202020202020202020202060100000002ff",
    "02056a6b742d310d03808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010c001003030303030303030303030303030303",
    "02056a6b742d310e03808a80e8c16801ababababababababababababababababcdcdcdcdcdcdcdcd010d0361646d0561646d696e0c737572706c75732e706f737407737572706c7573c901010831302e302e302e3100",
];

#[test]
fn golden_bytes_pin_every_event_variant() {
    let mut actual = Vec::new();
    for (i, event) in sample_events().into_iter().enumerate() {
        actual.push(hex(&encode_envelope(&envelope(i as u64 + 1, event))));
    }
    assert_golden(&actual, &GOLDEN, "event");
}

#[test]
fn every_sample_round_trips() {
    for (i, event) in sample_events().into_iter().enumerate() {
        let env = envelope(i as u64 + 1, event);
        let bytes = encode_envelope(&env);
        assert_eq!(decode_envelope(&bytes), Ok(env));
    }
}

#[test]
fn framing_errors_are_typed() {
    let good = encode_envelope(&envelope(1, sample_events().remove(3)));
    assert_eq!(decode_envelope(&[]), Err(WireError::Empty));
    let mut wrong_version = good.clone();
    wrong_version[0] = 1;
    assert_eq!(
        decode_envelope(&wrong_version),
        Err(WireError::UnsupportedVersion(1))
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(decode_envelope(&trailing), Err(WireError::TrailingBytes(1)));
    assert!(matches!(
        decode_envelope(&good[..good.len() - 1]),
        Err(WireError::Malformed(_))
    ));
    let huge = vec![WIRE_VERSION; MAX_FRAME_BYTES + 1];
    assert_eq!(
        decode_envelope(&huge),
        Err(WireError::TooLarge(MAX_FRAME_BYTES + 1))
    );
}

#[test]
fn invalid_points_do_not_decode() {
    // Patch the latitude of a SurplusPosted to 200.0 and expect a refusal.
    let env = envelope(1, sample_events().remove(2));
    let bytes = encode_envelope(&env);
    let lat = (-6.2f64).to_le_bytes();
    let at = bytes
        .windows(8)
        .position(|w| w == lat)
        .expect("latitude present");
    let mut patched = bytes.clone();
    patched[at..at + 8].copy_from_slice(&200.0f64.to_le_bytes());
    assert!(matches!(
        decode_envelope(&patched),
        Err(WireError::Malformed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_envelope(&bytes);
        let mut versioned = bytes.clone();
        versioned.insert(0, WIRE_VERSION);
        let _ = decode_envelope(&versioned);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..11,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode_envelope(&envelope(7, sample_events().swap_remove(which)));
        for (pos, val) in flips {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
        if let Ok(env) = decode_envelope(&bytes) {
            // Whatever decodes must re-encode to something that decodes equal.
            prop_assert_eq!(decode_envelope(&encode_envelope(&env)), Ok(env));
        }
    }

    #[test]
    fn envelopes_round_trip(seq in any::<u64>(), epoch in any::<u64>(), at in any::<i64>(),
                            lat in -90.0f64..=90.0, lon in -180.0f64..=180.0,
                            grams in any::<u64>(), types in any::<u8>(), desc in ".{0,40}") {
        let location = GeoPoint::new(lat, lon).expect("in range");
        let event = Event::SurplusPosted(SurplusPosted {
            id: SurplusId::from_bytes([9; 16]),
            provider_id: ProviderId::from_bytes([8; 16]),
            location,
            cell: seq ^ epoch,
            quantity: Mass::from_grams(grams),
            food_type: FoodTypeSet::from_bits_truncate(types).iter().next().unwrap_or(FoodType::Dairy),
            expires_at: Timestamp::from_unix_ms(at),
            description: desc,
        });
        let env = Envelope { seq, lease_epoch: epoch, at: Timestamp::from_unix_ms(at), ..envelope(0, event) };
        prop_assert_eq!(decode_envelope(&encode_envelope(&env)), Ok(env));
    }
}
