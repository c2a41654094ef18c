//! Golden bytes pin every kiosk message and the sealing; the handshake and
//! its attacks run both ends in memory; random and mutated bytes prove every
//! decoder is total and no altered sealed frame opens.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::frame::{decode_plain, encode_plain};
use super::seal::{MAX_FRAMES_PER_DIRECTION, TAG_BYTES};
use super::*;
use crate::domain::{FoodType, Mass};
use crate::golden_check::{assert_golden, hex};
use crate::ids::{DeviceId, SurplusId};
use crate::time::Timestamp;

const DEVICE: DeviceId = DeviceId::from_bytes([0xd1; 16]);
const KEY: LinkKey = LinkKey([0x42; 32]);
const DEVICE_NONCE: [u8; NONCE_BYTES] = [0x0d; NONCE_BYTES];
const EDGE_NONCE: [u8; NONCE_BYTES] = [0x0e; NONCE_BYTES];
const SURPLUS: SurplusId = SurplusId::from_bytes([0x51; 16]);
const ID: ActionId = ActionId {
    boot: 0xb007,
    seq: 3,
};

fn card(stage: Stage) -> Card {
    Card {
        surplus: SURPLUS,
        version: 2,
        stage,
        provider: msg::name("Warung Sari"),
        food_type: FoodType::Bakery,
        quantity: Mass::from_grams(12_500),
        distance_m: 2_300,
        respond_by: Timestamp::from_unix_ms(1_795_539_900_000),
        expires_at: Timestamp::from_unix_ms(1_795_550_400_000),
    }
}

fn time() -> TimeSync {
    TimeSync {
        device_ms: 61_000,
        edge_now: Timestamp::from_unix_ms(1_795_539_600_000),
    }
}

fn refusals() -> Vec<Refusal> {
    vec![
        Refusal::UnknownDevice,
        Refusal::Revoked,
        Refusal::Version,
        Refusal::Protocol,
        Refusal::RateLimited {
            retry_after_ms: 30_000,
        },
    ]
}

fn hello_replies() -> Vec<HelloReply> {
    let mut out = vec![HelloReply::Challenge { nonce: EDGE_NONCE }];
    out.extend(refusals().into_iter().map(HelloReply::Refused));
    out
}

fn ups() -> Vec<Up> {
    let actions = [
        Action::Accept { surplus: SURPLUS },
        Action::Decline { surplus: SURPLUS },
        Action::PickedUp { surplus: SURPLUS },
        Action::Delivered {
            surplus: SURPLUS,
            delivered: Mass::from_grams(12_000),
        },
    ];
    let mut out = vec![Up::Ready {
        firmware: 1,
        device_ms: 60_000,
    }];
    out.extend(actions.into_iter().map(|action| Up::Act { id: ID, action }));
    out.push(Up::Heartbeat { device_ms: 70_000 });
    out
}

fn downs() -> Vec<Down> {
    let mut out = vec![Down::Welcome {
        recipient: msg::name("Bank Pangan"),
        time: time(),
        utc_offset_minutes: 420,
        open: 2,
    }];
    for stage in [Stage::Offered, Stage::Claimed, Stage::PickedUp] {
        out.push(Down::Card(card(stage)));
    }
    for reason in [
        Withdrawal::TimedOut,
        Withdrawal::Expired,
        Withdrawal::ClaimedByAnother,
        Withdrawal::Cancelled,
    ] {
        out.push(Down::Withdrawn {
            surplus: SURPLUS,
            reason,
        });
    }
    for outcome in [
        Outcome::Done,
        Outcome::LostRace,
        Outcome::Expired,
        Outcome::NotYours,
        Outcome::Invalid,
        Outcome::IdReused,
        Outcome::Busy {
            retry_after_ms: 5_000,
        },
    ] {
        out.push(Down::Result { id: ID, outcome });
    }
    out.push(Down::Time(time()));
    out.extend(refusals().into_iter().map(Down::Refused));
    out
}

/// Every message in the clear, in order: Hello, the replies, every `Up`,
/// every `Down`.
fn plain_frames() -> Vec<Frame> {
    let mut out = vec![
        encode_plain(&Hello {
            device: DEVICE,
            nonce: DEVICE_NONCE,
        })
        .expect("fits"),
    ];
    out.extend(
        hello_replies()
            .iter()
            .map(|m| encode_plain(m).expect("fits")),
    );
    out.extend(ups().iter().map(|m| encode_plain(m).expect("fits")));
    out.extend(downs().iter().map(|m| encode_plain(m).expect("fits")));
    out
}

/// The encoding of each message, in the order of `plain_frames`. If one of
/// these changes, the kiosk wire format changed: deployed devices would
/// misread the edge. Append a variant or bump `KIOSK_VERSION`; never edit a
/// line here to make a test pass.
const GOLDEN_PLAIN: &[&str] = &[
    "00320110d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d10d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d",
    "002201000e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e",
    "0003010100",
    "0003010101",
    "0003010102",
    "0003010103",
    "0006010104b0ea01",
    "0006010001e0d403",
    "0018010187e00203001051515151515151515151515151515151",
    "0018010187e00203011051515151515151515151515151515151",
    "0018010187e00203021051515151515151515151515151515151",
    "001a010187e00203031051515151515151515151515151515151e05d",
    "00050102f0a204",
    "001a01000b42616e6b2050616e67616ec8dc03808a80e8c168c80602",
    "00320101105151515151515151515151515151515102000b576172756e67205361726901d461fc11c0d9a4e8c16880b8a6f2c168",
    "00320101105151515151515151515151515151515102010b576172756e67205361726901d461fc11c0d9a4e8c16880b8a6f2c168",
    "00320101105151515151515151515151515151515102020b576172756e67205361726901d461fc11c0d9a4e8c16880b8a6f2c168",
    "00140102105151515151515151515151515151515100",
    "00140102105151515151515151515151515151515101",
    "00140102105151515151515151515151515151515102",
    "00140102105151515151515151515151515151515103",
    "0007010387e0020300",
    "0007010387e0020301",
    "0007010387e0020302",
    "0007010387e0020303",
    "0007010387e0020304",
    "0007010387e0020305",
    "0009010387e00203068827",
    "000b0104c8dc03808a80e8c168",
    "0003010500",
    "0003010501",
    "0003010502",
    "0003010503",
    "0006010504b0ea01",
];

#[test]
fn golden_bytes_pin_every_kiosk_message() {
    let actual: Vec<String> = plain_frames().iter().map(|f| hex(f)).collect();
    assert_golden(&actual, GOLDEN_PLAIN, "kiosk frame");
}

/// A device and an edge with the handshake done (Ready and Welcome opened).
fn open_pair() -> (DeviceLink, EdgeLink) {
    open_pair_with(&KEY, &KEY).expect("same key")
}

/// The handshake with the device and the edge holding keys `dk` and `ek`;
/// the first error either end reports.
fn open_pair_with(dk: &LinkKey, ek: &LinkKey) -> Result<(DeviceLink, EdgeLink), KioskError> {
    let (mut device, hello) = DeviceLink::start(DEVICE, dk.clone(), DEVICE_NONCE);
    let mut edge = EdgeLink::new();
    assert_eq!(
        deliver_edge(&mut edge, &hello),
        vec![Ok(EdgeEvent::Hello { device: DEVICE })]
    );
    let challenge = edge.challenge(ek, EDGE_NONCE)?;
    assert_eq!(
        deliver_device(&mut device, &challenge),
        vec![Ok(DeviceEvent::Opened)]
    );
    let ready = device.seal(&ups()[0])?;
    for event in deliver_edge(&mut edge, &ready) {
        event?;
    }
    let welcome = edge.seal(&downs()[0])?;
    for event in deliver_device(&mut device, &welcome) {
        event?;
    }
    Ok((device, edge))
}

/// Either end of a link, as a test feeds it.
trait End {
    type Event;
    fn push(&mut self, bytes: &[u8]) -> usize;
    fn poll_event(&mut self) -> Option<Result<Self::Event, KioskError>>;
}

impl End for EdgeLink {
    type Event = EdgeEvent;
    fn push(&mut self, bytes: &[u8]) -> usize {
        EdgeLink::push(self, bytes)
    }
    fn poll_event(&mut self) -> Option<Result<EdgeEvent, KioskError>> {
        EdgeLink::poll_event(self)
    }
}

impl End for DeviceLink {
    type Event = DeviceEvent;
    fn push(&mut self, bytes: &[u8]) -> usize {
        DeviceLink::push(self, bytes)
    }
    fn poll_event(&mut self) -> Option<Result<DeviceEvent, KioskError>> {
        DeviceLink::poll_event(self)
    }
}

/// Pushes `bytes` into an end and collects every event, until the bytes
/// are taken or the end takes no more.
fn deliver<E: End>(end: &mut E, mut bytes: &[u8]) -> Vec<Result<E::Event, KioskError>> {
    let mut out = Vec::new();
    loop {
        let n = end.push(bytes);
        bytes = &bytes[n..];
        let before = out.len();
        while let Some(e) = end.poll_event() {
            out.push(e);
        }
        if bytes.is_empty() || (n == 0 && out.len() == before) {
            return out;
        }
    }
}

fn deliver_edge(edge: &mut EdgeLink, bytes: &[u8]) -> Vec<Result<EdgeEvent, KioskError>> {
    deliver(edge, bytes)
}

fn deliver_device(device: &mut DeviceLink, bytes: &[u8]) -> Vec<Result<DeviceEvent, KioskError>> {
    deliver(device, bytes)
}

/// The first three frames each way after the handshake, sealed: pins the
/// key derivation, the AEAD and the counter nonce. Same rule as above.
const GOLDEN_SEALED: &[&str] = &[
    "00160115c225fa81098fa07e57da74f4fe82cb5f54a925b1",
    "00280146950db6f1a9bd3d85ea6c4cfe19b0349f8c321227353db96558b4ebaa86ae1cc397f946d68ea9",
    "00280138345be39a6f0826d6c10a350e2a01926564b286d9921e74109f3914140adc40d251bc94351204",
    "0028017f1eb489ef4bed35cdb2c4bace0efcfb4c56acba9fcc05b34dc337a5ff41aaf07dee0a6872514a",
    "002a0115d0f2f0f3de07b910a9bbd045a4a45eced8c1a20d475b6c387da0fc71488903f611969cb6ef50dcba",
    "0042014ce83443fc33fc609e8989415a0afb0b837d1bb30d6f73457b2e56c025201b9018d8231fdff131bbd5bd5b8b8826f4d2e96039839c9c156d3a02d6c5d67a048bdb",
    "0042015cef4e642b63994d338af77c4a5363b0fb52e9858137651869d685be2286cbb26cb0e0b74ac048a8efb452e56e575146b26b13fe331017b9655c5aa2199adc1845",
    "004201825e890cd57d49124380a6fd8c3da4148e2b3f086fdcfe55b3b05040d13c23f2edd0666e3c0935ac0495c5ca026def8a426c9ce06dbdcfb1f4ed8883cb0ddd5335",
];

fn sealed_frames() -> Vec<Frame> {
    let (mut device, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
    let mut edge = EdgeLink::new();
    deliver_edge(&mut edge, &hello);
    let challenge = edge.challenge(&KEY, EDGE_NONCE).expect("awaiting key");
    deliver_device(&mut device, &challenge);
    let up = ups();
    let down = downs();
    let mut out = Vec::new();
    for m in &up[..4] {
        out.push(device.seal(m).expect("open"));
    }
    for f in &out.clone() {
        deliver_edge(&mut edge, f);
    }
    for m in &down[..4] {
        out.push(edge.seal(m).expect("open"));
    }
    out
}

#[test]
fn golden_bytes_pin_the_sealing() {
    let actual: Vec<String> = sealed_frames().iter().map(|f| hex(f)).collect();
    assert_golden(&actual, GOLDEN_SEALED, "sealed kiosk frame");
}

#[test]
fn every_message_round_trips_in_the_clear_and_sealed() {
    for m in hello_replies() {
        let f = encode_plain(&m).expect("fits");
        assert_eq!(decode_plain::<HelloReply>(&f[2..]), Ok(m));
    }
    let (mut device, mut edge) = open_pair();
    for m in ups() {
        let f = encode_plain(&m).expect("fits");
        assert_eq!(decode_plain::<Up>(&f[2..]), Ok(m));
        let sealed = device.seal(&m).expect("open");
        assert_eq!(deliver_edge(&mut edge, &sealed), vec![Ok(EdgeEvent::Up(m))]);
    }
    for m in downs() {
        let f = encode_plain(&m).expect("fits");
        assert_eq!(decode_plain::<Down>(&f[2..]), Ok(m.clone()));
        let sealed = edge.seal(&m).expect("open");
        assert_eq!(
            deliver_device(&mut device, &sealed),
            vec![Ok(DeviceEvent::Down(m))]
        );
    }
}

/// Every message at its largest: longest names, largest numbers. Sealed, it
/// must still fit a frame, or the limit is wrong.
#[test]
fn the_largest_of_every_message_fits_a_frame() {
    let long = msg::name(&"é".repeat(40));
    let far = Timestamp::from_unix_ms(i64::MIN);
    let id = ActionId {
        boot: u32::MAX,
        seq: u32::MAX,
    };
    let big = Card {
        version: u64::MAX,
        provider: long.clone(),
        quantity: Mass::from_grams(u64::MAX),
        distance_m: u32::MAX,
        respond_by: far,
        expires_at: far,
        ..card(Stage::PickedUp)
    };
    let time = TimeSync {
        device_ms: u64::MAX,
        edge_now: far,
    };
    let downs = [
        Down::Welcome {
            recipient: long,
            time,
            utc_offset_minutes: i16::MIN,
            open: u8::MAX,
        },
        Down::Card(big),
        Down::Result {
            id,
            outcome: Outcome::Busy {
                retry_after_ms: u32::MAX,
            },
        },
        Down::Refused(Refusal::RateLimited {
            retry_after_ms: u32::MAX,
        }),
    ];
    let ups = [
        Up::Ready {
            firmware: u16::MAX,
            device_ms: u64::MAX,
        },
        Up::Act {
            id,
            action: Action::Delivered {
                surplus: SURPLUS,
                delivered: Mass::from_grams(u64::MAX),
            },
        },
    ];
    let (mut device, mut edge) = open_pair();
    let mut largest = 0;
    for m in &downs {
        let f = edge.seal(m).expect("the largest Down fits a frame");
        largest = largest.max(f.len());
    }
    for m in &ups {
        let f = device.seal(m).expect("the largest Up fits a frame");
        largest = largest.max(f.len());
    }
    assert!(largest <= MAX_FRAME_BYTES, "{largest}");
    assert!(largest > 120, "the samples are not the largest: {largest}");
}

#[test]
fn names_are_cut_at_a_character_boundary() {
    let forty = "a".repeat(40);
    let table: [(&str, &str); 4] = [
        ("Warung", "Warung"),
        (&"a".repeat(41), &forty),
        // 39 ASCII then a two-byte 'é': the 'é' would end at byte 41.
        (&alloc::format!("{}é", "a".repeat(39)), &"a".repeat(39)),
        ("", ""),
    ];
    for (input, want) in table {
        assert_eq!(msg::name(input).as_str(), want, "{input:?}");
    }
}

#[test]
fn the_frame_reader_refuses_bad_headers_before_the_body() {
    let mut at_limit = vec![0x01, 0x00];
    at_limit.extend(core::iter::repeat_n(KIOSK_VERSION, MAX_FRAME_BODY_BYTES));
    // (bytes pushed, bytes taken, what `next_frame` gives: the body's length)
    type Row = (Vec<u8>, usize, Option<Result<usize, KioskError>>);
    let table: [Row; 4] = [
        // 257 announced: refused after the two header bytes.
        (
            vec![0x01, 0x01, 1, 2, 3],
            2,
            Some(Err(KioskError::TooLarge(257))),
        ),
        (
            vec![0xff, 0xff, 0],
            2,
            Some(Err(KioskError::TooLarge(65_535))),
        ),
        (vec![0x00, 0x00, 1], 2, Some(Err(KioskError::Empty))),
        (
            at_limit,
            2 + MAX_FRAME_BODY_BYTES,
            Some(Ok(MAX_FRAME_BODY_BYTES)),
        ),
    ];
    for (bytes, taken, want) in table {
        let mut r = FrameReader::new();
        assert_eq!(r.push(&bytes), taken, "{:02x?}", &bytes[..2]);
        assert_eq!(r.next_frame().map(|f| f.map(|b| b.len())), want);
        if let Some(Err(_)) = want {
            assert_eq!(r.push(&bytes), 0, "a broken stream takes nothing more");
        }
    }
}

#[test]
fn the_frame_reader_holds_one_frame_at_a_time() {
    let a = encode_plain(&ups()[0]).expect("fits");
    let b = encode_plain(&ups()[5]).expect("fits");
    let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
    let mut r = FrameReader::new();
    assert_eq!(
        r.push(&stream),
        a.len(),
        "stops at the end of the first frame"
    );
    assert_eq!(r.push(&stream[a.len()..]), 0, "until it is taken");
    assert_eq!(
        r.next_frame(),
        Some(Ok(Frame::from_slice(&a[2..]).expect("fits")))
    );
    assert_eq!(r.next_frame(), None);
    assert_eq!(r.push(&stream[a.len()..]), b.len());
    assert_eq!(
        r.next_frame(),
        Some(Ok(Frame::from_slice(&b[2..]).expect("fits")))
    );
}

#[test]
fn the_handshake_authenticates_both_ends() {
    let (mut device, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
    let mut edge = EdgeLink::new();
    assert!(
        hex(&hello).contains(&hex(DEVICE.as_bytes())),
        "Hello names the device"
    );
    assert!(!hex(&hello).contains(&hex(&KEY.0)), "the key never travels");
    assert_eq!(
        deliver_edge(&mut edge, &hello),
        vec![Ok(EdgeEvent::Hello { device: DEVICE })]
    );
    assert_eq!(edge.device(), None, "not authenticated by a Hello");
    assert_eq!(edge.seal(&downs()[0]), Err(KioskError::Protocol));
    let challenge = edge.challenge(&KEY, EDGE_NONCE).expect("awaiting key");
    assert_eq!(
        deliver_device(&mut device, &challenge),
        vec![Ok(DeviceEvent::Opened)]
    );
    assert_eq!(
        edge.device(),
        None,
        "not before the device's first sealed frame"
    );
    let ready = device.seal(&ups()[0]).expect("open");
    assert_eq!(
        deliver_edge(&mut edge, &ready),
        vec![
            Ok(EdgeEvent::Authenticated { device: DEVICE }),
            Ok(EdgeEvent::Up(ups()[0]))
        ]
    );
    assert_eq!(edge.device(), Some(DEVICE));
}

#[test]
fn a_refused_device_hears_why_and_both_ends_close() {
    for reason in refusals() {
        let (mut device, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
        let mut edge = EdgeLink::new();
        deliver_edge(&mut edge, &hello);
        let refusal = edge.refuse(reason).expect("before the keys");
        assert_eq!(edge.challenge(&KEY, EDGE_NONCE), Err(KioskError::Protocol));
        assert_eq!(
            deliver_device(&mut device, &refusal),
            vec![Ok(DeviceEvent::Refused(reason))]
        );
        assert!(!device.is_open());
        assert_eq!(device.seal(&ups()[0]), Err(KioskError::Protocol));
    }
    let (_, mut edge) = open_pair();
    assert_eq!(
        edge.refuse(Refusal::Revoked),
        Err(KioskError::Protocol),
        "sealed by then"
    );
}

/// One named attack, and the error the attacked end must report.
fn attack(name: &str) -> Vec<Result<EdgeEvent, KioskError>> {
    let other = LinkKey([0x99; 32]);
    match name {
        "device holds another key" => match open_pair_with(&other, &KEY) {
            Err(e) => vec![Err(e)],
            Ok(_) => vec![],
        },
        "replayed frame" | "reordered frames" | "dropped frame" | "truncated frame" => {
            let (mut device, mut edge) = open_pair();
            let f1 = device.seal(&ups()[1]).expect("open");
            let f2 = device.seal(&ups()[2]).expect("open");
            let stream: Vec<u8> = match name {
                "replayed frame" => f1.iter().chain(f1.iter()).copied().collect(),
                "reordered frames" => f2.iter().chain(f1.iter()).copied().collect(),
                "dropped frame" => f2.to_vec(),
                _ => {
                    let mut t = f1[..f1.len() - 1].to_vec();
                    t[1] -= 1;
                    t
                }
            };
            deliver_edge(&mut edge, &stream)
                .into_iter()
                .filter(Result::is_err)
                .collect()
        }
        "recorded session replayed with a fresh edge nonce" => {
            let (mut device, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
            let mut first = EdgeLink::new();
            deliver_edge(&mut first, &hello);
            let challenge = first.challenge(&KEY, EDGE_NONCE).expect("awaiting key");
            deliver_device(&mut device, &challenge);
            let ready = device.seal(&ups()[0]).expect("open");
            let mut second = EdgeLink::new();
            deliver_edge(&mut second, &hello);
            second
                .challenge(&KEY, [0x77; NONCE_BYTES])
                .expect("awaiting key");
            deliver_edge(&mut second, &ready)
        }
        "action before Ready" => {
            let (mut device, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
            let mut edge = EdgeLink::new();
            deliver_edge(&mut edge, &hello);
            let challenge = edge.challenge(&KEY, EDGE_NONCE).expect("awaiting key");
            deliver_device(&mut device, &challenge);
            deliver_edge(&mut edge, &device.seal(&ups()[1]).expect("open"))
        }
        "bytes while the edge looks the key up" => {
            let (_, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
            let mut edge = EdgeLink::new();
            deliver_edge(&mut edge, &hello);
            deliver_edge(&mut edge, &hello)
        }
        "another version" => {
            let (_, mut hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
            hello[2] = KIOSK_VERSION + 1;
            deliver_edge(&mut EdgeLink::new(), &hello)
        }
        _ => unreachable!("unknown attack {name}"),
    }
}

#[test]
fn attacks_on_the_link_are_refused() {
    let table: [(&str, KioskError); 9] = [
        ("device holds another key", KioskError::Unauthentic),
        ("replayed frame", KioskError::Unauthentic),
        ("reordered frames", KioskError::Unauthentic),
        ("dropped frame", KioskError::Unauthentic),
        ("truncated frame", KioskError::Unauthentic),
        (
            "recorded session replayed with a fresh edge nonce",
            KioskError::Unauthentic,
        ),
        ("action before Ready", KioskError::Protocol),
        (
            "bytes while the edge looks the key up",
            KioskError::Protocol,
        ),
        ("another version", KioskError::Version(KIOSK_VERSION + 1)),
    ];
    for (name, want) in table {
        let got = attack(name);
        assert_eq!(got.last(), Some(&Err(want)), "{name}: {got:?}");
    }
}

#[test]
fn the_device_refuses_an_edge_without_its_key_and_its_own_frames() {
    // Someone on the LAN answers the Hello and seals a Welcome with a guess.
    let (mut device, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
    let mut impostor = EdgeLink::new();
    deliver_edge(&mut impostor, &hello);
    let challenge = impostor
        .challenge(&LinkKey([0x99; 32]), EDGE_NONCE)
        .expect("awaiting key");
    deliver_device(&mut device, &challenge);
    let ready = device.seal(&ups()[0]).expect("open");
    assert_eq!(
        deliver_device(&mut device, &ready),
        vec![Err(KioskError::Unauthentic)],
        "reflected"
    );

    let (mut device, hello) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
    let mut impostor = EdgeLink::new();
    deliver_edge(&mut impostor, &hello);
    let challenge = impostor
        .challenge(&LinkKey([0x99; 32]), EDGE_NONCE)
        .expect("awaiting key");
    deliver_device(&mut device, &challenge);
    // The impostor cannot open Ready either, so it seals blind.
    let forged = crate::kiosk::seal::SessionKeys::derive(
        &LinkKey([0x99; 32]),
        &DEVICE,
        &DEVICE_NONCE,
        &EDGE_NONCE,
    )
    .down
    .seal(&downs()[0])
    .expect("fits");
    assert_eq!(
        deliver_device(&mut device, &forged),
        vec![Err(KioskError::Unauthentic)]
    );
    assert_eq!(device.poll_event(), None, "closed");
}

#[test]
fn a_direction_stops_at_its_frame_limit() {
    let mut keys = seal::SessionKeys::derive(&KEY, &DEVICE, &DEVICE_NONCE, &EDGE_NONCE);
    keys.up.skip_to(MAX_FRAMES_PER_DIRECTION - 1);
    assert!(keys.up.seal(&ups()[5]).is_ok(), "the last frame");
    assert_eq!(keys.up.seal(&ups()[5]), Err(KioskError::Exhausted));
    keys.down.skip_to(MAX_FRAMES_PER_DIRECTION);
    let mut body = [KIOSK_VERSION; 1 + TAG_BYTES + 4];
    assert_eq!(
        keys.down.open::<Down>(&mut body),
        Err(KioskError::Exhausted)
    );
}

fn all_events(device: &mut DeviceLink, edge: &mut EdgeLink, bytes: &[u8]) -> usize {
    let ok_edge = deliver_edge(edge, bytes)
        .into_iter()
        .filter(Result::is_ok)
        .count();
    ok_edge
        + deliver_device(device, bytes)
            .into_iter()
            .filter(Result::is_ok)
            .count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic_and_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_plain::<Hello>(&bytes);
        let _ = decode_plain::<HelloReply>(&bytes);
        let _ = decode_plain::<Up>(&bytes);
        let _ = decode_plain::<Down>(&bytes);
        let _ = deliver_edge(&mut EdgeLink::new(), &bytes);
        let (mut device, _) = DeviceLink::start(DEVICE, KEY, DEVICE_NONCE);
        let _ = deliver_device(&mut device, &bytes);
        let (mut device, mut edge) = open_pair();
        prop_assert_eq!(all_events(&mut device, &mut edge, &bytes), 0, "random bytes opened");
    }

    #[test]
    fn mutated_clear_frames_never_panic(
        which in 0usize..34,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut frame = plain_frames().swap_remove(which).to_vec();
        for (pos, val) in flips {
            let i = pos % frame.len();
            frame[i] = val;
        }
        let body = &frame[2.min(frame.len())..];
        if let Ok(m) = decode_plain::<Up>(body) {
            prop_assert_eq!(decode_plain::<Up>(&encode_plain(&m).expect("fits")[2..]), Ok(m));
        }
        if let Ok(m) = decode_plain::<Down>(body) {
            prop_assert_eq!(decode_plain::<Down>(&encode_plain(&m).expect("fits")[2..]), Ok(m.clone()));
        }
        let _ = decode_plain::<Hello>(body);
        let _ = decode_plain::<HelloReply>(body);
        let _ = deliver_edge(&mut EdgeLink::new(), &frame);
    }

    #[test]
    fn no_altered_sealed_frame_opens(
        which in 0usize..6,
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..8),
    ) {
        let (mut device, mut edge) = open_pair();
        let mut frame = device.seal(&ups()[which]).expect("open").to_vec();
        for (pos, x) in flips {
            let i = pos % frame.len();
            frame[i] ^= x;
        }
        let got = deliver_edge(&mut edge, &frame);
        prop_assert!(got.iter().all(Result::is_err), "{:?}", got);
    }

    #[test]
    fn a_stream_cut_anywhere_gives_the_same_messages(cuts in proptest::collection::vec(1usize..80, 1..40)) {
        let (mut device, mut edge) = open_pair();
        let frames: Vec<Frame> = downs().iter().map(|m| edge.seal(m).expect("open")).collect();
        let stream: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
            got.extend(deliver_device(&mut device, chunk));
            rest = tail;
        }
        let want: Vec<_> = downs().into_iter().map(|m| Ok(DeviceEvent::Down(m))).collect();
        prop_assert_eq!(got, want);
    }
}
