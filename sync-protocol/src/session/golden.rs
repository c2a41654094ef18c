//! Golden bytes pin the session messages (`EdgeMsg`, `HubMsg`, every
//! `RefusalReason`) as `wire/tests.rs` pins the events: an edge and a hub of
//! different builds must read each other's frames.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::msg::{BatchEvent, EdgeMsg, HubMsg, RefusalReason, RegistryEntry, encode_frame};
use super::{PROTOCOL_VERSION, msg::decode_body};
use crate::domain::{FoodType, FoodTypeSet, Mass};
use crate::geo::GeoPoint;
use crate::golden_check::{assert_golden, hex, unhex};
use crate::ids::{EdgeId, RecipientId};
use crate::time::Timestamp;

fn edge() -> EdgeId {
    EdgeId::new("jkt-1").expect("valid")
}

fn edge_msgs() -> Vec<EdgeMsg> {
    vec![
        EdgeMsg::Hello {
            protocol: PROTOCOL_VERSION,
            edge_id: edge(),
            cells: vec![0x2e6a_c000_0000_0000, 7],
            committed_seq: 300,
            lease_epoch: 4,
        },
        EdgeMsg::Batch {
            first_seq: 129,
            events: vec![
                BatchEvent {
                    cell: 0x2e6a_c000_0000_0000,
                    envelope: vec![2, 0xaa, 0xbb],
                },
                BatchEvent {
                    cell: 0,
                    envelope: vec![2],
                },
            ],
        },
        EdgeMsg::Heartbeat {
            at: Timestamp::from_unix_ms(1_795_539_600_000),
            backlog: 17,
        },
    ]
}

fn registry_entry(erased: bool) -> RegistryEntry {
    RegistryEntry {
        id: RecipientId::from_bytes([2; 16]),
        owner: EdgeId::new("bdg-2").expect("valid"),
        cell: 0x2e6a_c000_0000_0000,
        name: if erased { "".into() } else { "Bank".into() },
        location: GeoPoint::new(-6.2, 106.816666).expect("valid"),
        capacity_per_day: Mass::from_grams(if erased { 0 } else { 500_000 }),
        accepted_food_types: if erased {
            FoodTypeSet::default()
        } else {
            [FoodType::Bakery, FoodType::Produce].into_iter().collect()
        },
        is_fallback: !erased,
        erased,
    }
}

fn refusals() -> Vec<RefusalReason> {
    vec![
        RefusalReason::IdentityMismatch,
        RefusalReason::ForeignEvent,
        RefusalReason::Gap {
            expected: 11,
            got: 300,
        },
        RefusalReason::NotDense,
        RefusalReason::TooLarge,
        RefusalReason::Malformed,
        RefusalReason::Protocol,
        RefusalReason::Version,
        RefusalReason::EdgeBehindHub,
    ]
}

fn hub_msgs() -> Vec<HubMsg> {
    let mut msgs = vec![
        HubMsg::Welcome {
            high_water: 128,
            lease_epoch: 5,
            conflicts: vec![7],
        },
        HubMsg::Ack { high_water: 130 },
        HubMsg::Heartbeat {
            at: Timestamp::from_unix_ms(1_795_539_600_000),
        },
        HubMsg::Registry {
            recipients: vec![registry_entry(false), registry_entry(true)],
        },
    ];
    msgs.extend(
        refusals()
            .into_iter()
            .map(|reason| HubMsg::Refused { reason }),
    );
    msgs
}

/// The encoding (`WIRE_VERSION` + postcard) of each `EdgeMsg` sample. If one
/// changes, the session format changed: append a variant, or bump
/// `WIRE_VERSION` / `PROTOCOL_VERSION`; never edit a line to pass the test.
const EDGE_GOLDEN: [&str; 3] = [
    "020001056a6b742d3102808080808080b0b52e07ac0204",
    "0201810102808080808080b0b52e0302aabb000102",
    "0202808a80e8c16811",
];

/// The same for each `HubMsg` sample, then `Refused` with every reason.
const HUB_GOLDEN: [&str; 13] = [
    "02008001050107",
    "02018201",
    "0202808a80e8c168",
    "0203021002020202020202020202020202020202056264672d32808080808080b0b52e0442616e6bcdcccccccccc18c05470784144b45a40a0c21e0601001002020202020202020202020202020202056264672d32808080808080b0b52e00cdcccccccccc18c05470784144b45a4000000001",
    "020400",
    "020401",
    "0204020bac02",
    "020403",
    "020404",
    "020405",
    "020406",
    "020407",
    "020408",
];

fn check<T: serde::Serialize>(msgs: &[T], golden: &[&str], what: &str) {
    let actual: Vec<String> = msgs.iter().map(|m| hex(&crate::wire::encode(m))).collect();
    assert_golden(&actual, golden, what);
}

#[test]
fn golden_bytes_pin_every_edge_message() {
    check(&edge_msgs(), &EDGE_GOLDEN, "EdgeMsg");
}

#[test]
fn golden_bytes_pin_every_hub_message_and_refusal() {
    check(&hub_msgs(), &HUB_GOLDEN, "HubMsg");
}

#[test]
fn golden_frames_decode_to_the_samples() {
    for (msg, golden) in edge_msgs().into_iter().zip(EDGE_GOLDEN) {
        let bytes = unhex(golden);
        assert_eq!(decode_body::<EdgeMsg>(&bytes), Ok(msg));
    }
    for (msg, golden) in hub_msgs().into_iter().zip(HUB_GOLDEN) {
        let bytes = unhex(golden);
        assert_eq!(decode_body::<HubMsg>(&bytes), Ok(msg));
    }
}

#[test]
fn a_frame_is_a_big_endian_length_then_the_message() {
    let frame = encode_frame(&HubMsg::Ack { high_water: 130 });
    assert_eq!(hex(&frame), "0000000402018201");
}
