//! Shared by the hub's integration tests: an edge's log of events built by
//! hand, a few events, and a migrated database with edges registered.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use cloud_hub::db::{self, queries};
use s2::cellid::CellID;
use s2::latlng::LatLng;
use sync_protocol::session::hub::Apply;
use sync_protocol::{
    ClaimVia, Duration, EdgeId, Envelope, Event, FoodType, GeoPoint, Mass, ProviderId, RecipientId,
    SurplusId, SurplusPosted, Timestamp,
};
use testkit::pg;

pub const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

pub fn cell(lat: f64, lon: f64) -> u64 {
    CellID::from(LatLng::from_degrees(lat, lon)).parent(9).0
}

/// An edge's outbox, written by hand: `push` stamps dense seqs.
pub struct Log {
    pub edge: EdgeId,
    pub seq: u64,
    pub epoch: u64,
    pub pending: Vec<(u64, Envelope)>,
    /// Events happen at `base` + their seq in seconds.
    pub base: Timestamp,
}

impl Log {
    pub fn push(&mut self, cell: u64, event: Event) {
        self.seq += 1;
        let env = Envelope {
            edge_id: self.edge.clone(),
            seq: self.seq,
            lease_epoch: self.epoch,
            at: self.base + Duration::from_secs(self.seq as i64),
            trace_context: None,
            event,
        };
        self.pending.push((cell, env));
    }

    pub fn batch(&mut self) -> Apply {
        let events = std::mem::take(&mut self.pending);
        Apply {
            first_seq: events[0].1.seq,
            last_seq: events[events.len() - 1].1.seq,
            events,
        }
    }
}

pub fn sid(n: u8) -> SurplusId {
    SurplusId::from_bytes([n; 16])
}
pub fn rid(n: u8) -> RecipientId {
    RecipientId::from_bytes([n; 16])
}

pub fn posted(n: u8, c: u64) -> Event {
    Event::SurplusPosted(SurplusPosted {
        id: sid(n),
        provider_id: ProviderId::from_bytes([9; 16]),
        location: GeoPoint::new(-6.2, 106.8).unwrap(),
        cell: c,
        quantity: Mass::from_grams(10_000),
        food_type: FoodType::Bakery,
        expires_at: T0 + Duration::from_mins(120),
        description: "roti".into(),
    })
}

/// Surplus `n` posted at a place of its own (its cell made from it).
pub fn posted_at(n: u8, lat: f64, lon: f64) -> (u64, Event) {
    let c = cell(lat, lon);
    let Event::SurplusPosted(mut p) = posted(n, c) else {
        unreachable!("posted makes a posting")
    };
    p.location = GeoPoint::new(lat, lon).unwrap();
    (c, Event::SurplusPosted(p))
}

pub fn offer(s: u8, r: u8, version: u64) -> Event {
    Event::OfferMade {
        surplus_id: sid(s),
        recipient_id: rid(r),
        ack_deadline: T0 + Duration::from_mins(5),
        attempt: 1,
        fallback: false,
        version,
    }
}

/// A migrated database with `edges` registered on cell `x`; the home region.
pub async fn setup(edges: &[&EdgeId], x: u64) -> (pg::TestDb, tokio_postgres::Client, i64) {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate(&mut c).await.unwrap();
    let mut home = 0;
    for e in edges {
        home = queries::register(&c, e, &[x]).await.unwrap().home_region;
    }
    (tdb, c, home)
}

pub fn log_of(edge: &EdgeId) -> Log {
    Log {
        edge: edge.clone(),
        seq: 0,
        epoch: 0,
        pending: vec![],
        base: T0,
    }
}

/// Surplus `n` of `grams` in cell `x`: posted, offered to recipient 1,
/// accepted, picked up and delivered in full.
pub fn delivered_story(log: &mut Log, x: u64, n: u8, grams: u64) {
    let Event::SurplusPosted(mut p) = posted(n, x) else {
        unreachable!("posted makes a posting")
    };
    p.quantity = Mass::from_grams(grams);
    log.push(x, Event::SurplusPosted(p));
    log.push(x, offer(n, 1, 2));
    log.push(
        x,
        Event::Claimed {
            surplus_id: sid(n),
            recipient_id: rid(1),
            via: ClaimVia::OfferAccepted,
            version: 3,
        },
    );
    log.push(
        x,
        Event::PickedUp {
            surplus_id: sid(n),
            recipient_id: rid(1),
            version: 4,
        },
    );
    log.push(
        x,
        Event::Delivered {
            surplus_id: sid(n),
            recipient_id: rid(1),
            delivered: Mass::from_grams(grams),
            version: 5,
        },
    );
}
