//! The batch apply against a real PostgreSQL: the global views follow the
//! events across batch boundaries, and fenced events are logged but not
//! projected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cloud_hub::db::{self, apply::apply_batch, leases, queries};
use cloud_hub::testing::pg;
use s2::cellid::CellID;
use s2::latlng::LatLng;
use sync_protocol::session::hub::Apply;
use sync_protocol::{
    ClaimVia, Contact, Duration, EdgeId, Envelope, Event, FoodType, FoodTypeSet, GeoPoint, Mass,
    Provider, ProviderId, Recipient, RecipientId, SurplusId, SurplusPosted, Timestamp,
};

const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

fn cell(lat: f64, lon: f64) -> u64 {
    CellID::from(LatLng::from_degrees(lat, lon)).parent(9).0
}

struct Log {
    edge: EdgeId,
    seq: u64,
    epoch: u64,
    pending: Vec<(u64, Envelope)>,
}

impl Log {
    fn push(&mut self, cell: u64, event: Event) {
        self.seq += 1;
        let env = Envelope {
            edge_id: self.edge.clone(),
            seq: self.seq,
            lease_epoch: self.epoch,
            at: T0 + Duration::from_secs(self.seq as i64),
            trace_context: None,
            event,
        };
        self.pending.push((cell, env));
    }

    fn batch(&mut self) -> Apply {
        let events = std::mem::take(&mut self.pending);
        Apply {
            first_seq: events[0].1.seq,
            last_seq: events[events.len() - 1].1.seq,
            events,
        }
    }
}

fn sid(n: u8) -> SurplusId {
    SurplusId::from_bytes([n; 16])
}
fn rid(n: u8) -> RecipientId {
    RecipientId::from_bytes([n; 16])
}

fn posted(n: u8, c: u64) -> Event {
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

fn offer(s: u8, r: u8, version: u64) -> Event {
    Event::OfferMade {
        surplus_id: sid(s),
        recipient_id: rid(r),
        ack_deadline: T0 + Duration::from_mins(5),
        attempt: 1,
        fallback: false,
        version,
    }
}

async fn row(
    c: &tokio_postgres::Client,
    s: u8,
) -> Option<(String, i64, Option<uuid::Uuid>, Option<i64>)> {
    c.query_opt(
        "SELECT status, version, claimed_by, delivered_g FROM surplus WHERE id = $1",
        &[sid(s).as_uuid()],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

async fn outcome(c: &tokio_postgres::Client, s: u8, r: u8) -> Option<String> {
    c.query_opt(
        "SELECT outcome FROM matching_history WHERE surplus_id = $1 AND recipient_id = $2",
        &[sid(s).as_uuid(), rid(r).as_uuid()],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

#[tokio::test]
async fn views_follow_events_across_batches() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate(&mut c).await.unwrap();
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let home = queries::register(&c, &edge, &[x])
        .await
        .unwrap()
        .home_region;
    let mut log = Log {
        edge: edge.clone(),
        seq: 0,
        epoch: 0,
        pending: vec![],
    };

    let contact = Contact {
        phone: "+62".into(),
        email: "a@b.id".into(),
    };
    log.push(
        x,
        Event::ProviderRegistered(Provider {
            id: ProviderId::from_bytes([9; 16]),
            name: "p".into(),
            location: GeoPoint::new(-6.2, 106.8).unwrap(),
            contact: contact.clone(),
        }),
    );
    for r in [1u8, 2, 3] {
        log.push(
            x,
            Event::RecipientRegistered(Recipient {
                id: rid(r),
                name: format!("r{r}"),
                location: GeoPoint::new(-6.21, 106.8).unwrap(),
                capacity_per_day: Mass::from_grams(500_000),
                accepted_food_types: FoodTypeSet::all(),
                is_fallback: false,
                contact: contact.clone(),
            }),
        );
    }
    log.push(x, posted(1, x));
    log.push(x, offer(1, 1, 2));
    log.push(x, posted(2, x));
    log.push(x, offer(2, 1, 2));
    log.push(x, posted(3, x));
    log.push(x, offer(3, 2, 2));
    let b = log.batch();
    let applied = apply_batch(&mut c, &edge, home, &b).await.unwrap();
    assert_eq!((applied.events, applied.fenced), (10, 0));
    assert_eq!(row(&c, 1).await.unwrap().0, "offered");

    // Batch 2: S1 declined by 1, offered to 2, then claimed directly by 3
    // (superseding 2's offer made in this same batch); S2 expires with its
    // offer from batch 1 pending; S3's offer (batch 1) is accepted.
    log.push(
        x,
        Event::OfferDeclined {
            surplus_id: sid(1),
            recipient_id: rid(1),
            version: 3,
        },
    );
    log.push(x, offer(1, 2, 4));
    log.push(
        x,
        Event::Claimed {
            surplus_id: sid(1),
            recipient_id: rid(3),
            via: ClaimVia::Direct,
            version: 5,
        },
    );
    log.push(
        x,
        Event::Expired {
            surplus_id: sid(2),
            version: 3,
        },
    );
    log.push(
        x,
        Event::Claimed {
            surplus_id: sid(3),
            recipient_id: rid(2),
            via: ClaimVia::OfferAccepted,
            version: 3,
        },
    );
    let b = log.batch();
    apply_batch(&mut c, &edge, home, &b).await.unwrap();
    // Batch 3: S1 picked up and delivered.
    log.push(
        x,
        Event::PickedUp {
            surplus_id: sid(1),
            recipient_id: rid(3),
            version: 6,
        },
    );
    log.push(
        x,
        Event::Delivered {
            surplus_id: sid(1),
            recipient_id: rid(3),
            delivered: Mass::from_grams(9_500),
            version: 7,
        },
    );
    let b = log.batch();
    apply_batch(&mut c, &edge, home, &b).await.unwrap();

    assert_eq!(
        row(&c, 1).await,
        Some(("delivered".into(), 7, Some(*rid(3).as_uuid()), Some(9_500)))
    );
    assert_eq!(
        row(&c, 2).await.map(|r| (r.0, r.1)),
        Some(("expired".into(), 3))
    );
    assert_eq!(
        row(&c, 3).await.map(|r| (r.0, r.2)),
        Some(("claimed".into(), Some(*rid(2).as_uuid())))
    );
    assert_eq!(outcome(&c, 1, 1).await.as_deref(), Some("declined"));
    assert_eq!(outcome(&c, 1, 2).await.as_deref(), Some("superseded"));
    assert_eq!(outcome(&c, 2, 1).await.as_deref(), Some("expired"));
    assert_eq!(outcome(&c, 3, 2).await.as_deref(), Some("accepted"));
    let impact = queries::global_impact(&c).await.unwrap();
    assert_eq!(
        (
            impact.surplus_posted,
            impact.surplus_delivered,
            impact.delivered_kg
        ),
        (3, 1, 9.5)
    );
    let hw: i64 = c
        .query_one(
            "SELECT high_water FROM edge_progress WHERE edge_id = 'jkt-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(hw, 17);

    // The same batch again does not continue the log: refused, no effect.
    let err = apply_batch(&mut c, &edge, home, &b).await.unwrap_err();
    assert!(
        matches!(
            err,
            db::DbError::NotContiguous {
                high_water: 17,
                got: 16
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn events_for_a_cell_another_edge_took_over_are_fenced() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate(&mut c).await.unwrap();
    let old = EdgeId::new("jkt-1").unwrap();
    let new = EdgeId::new("jkt-2").unwrap();
    let x = cell(-6.2, 106.8);
    let ttl = Duration::from_secs(60);
    let mut home = 0;
    for e in [&old, &new] {
        home = queries::register(&c, e, &[x]).await.unwrap().home_region;
    }
    let g = leases::grant(&mut c, &old, &[x], 0, T0, ttl).await.unwrap();
    assert!(g.conflicts.is_empty());
    // While jkt-1's lease is live, jkt-2 cannot take the cell.
    let g2 = leases::grant(&mut c, &new, &[x], 0, T0 + Duration::from_secs(10), ttl)
        .await
        .unwrap();
    assert_eq!(g2.conflicts, vec![x]);
    // jkt-1 goes silent; the lease lapses; jkt-2 takes over.
    let later = T0 + Duration::from_secs(120);
    let g3 = leases::grant(&mut c, &new, &[x], 0, later, ttl)
        .await
        .unwrap();
    assert!(g3.conflicts.is_empty() && g3.epoch > g.epoch);

    // The old owner comes back with events it wrote meanwhile: logged, fenced.
    let mut log = Log {
        edge: old.clone(),
        seq: 0,
        epoch: g.epoch,
        pending: vec![],
    };
    log.push(x, posted(1, x));
    log.push(x, offer(1, 1, 2));
    let applied = apply_batch(&mut c, &old, home, &log.batch()).await.unwrap();
    assert_eq!((applied.events, applied.fenced), (2, 2));
    assert_eq!(row(&c, 1).await, None, "fenced events are not projected");
    let fenced: i64 = c
        .query_one("SELECT count(*) FROM event_log WHERE fenced", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(fenced, 2, "but they are in the log, exactly once");

    // The new owner's events, stamped with its new epoch, go through.
    let mut log = Log {
        edge: new.clone(),
        seq: 0,
        epoch: g3.epoch,
        pending: vec![],
    };
    log.push(x, posted(2, x));
    let applied = apply_batch(&mut c, &new, home, &log.batch()).await.unwrap();
    assert_eq!(applied.fenced, 0);
    assert_eq!(row(&c, 2).await.map(|r| r.0), Some("available".into()));
}

#[tokio::test]
async fn applied_reports_every_event_once() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate(&mut c).await.unwrap();
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let home = queries::register(&c, &edge, &[x])
        .await
        .unwrap()
        .home_region;
    let mut log = Log {
        edge: edge.clone(),
        seq: 0,
        epoch: 0,
        pending: vec![],
    };
    for n in 1..=5u8 {
        log.push(x, posted(n, x));
    }
    let applied = apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    assert_eq!(applied.events, 5);
    assert_eq!(applied.ats.len(), 5, "one lag sample per event");
    assert_eq!(applied.newest, applied.ats.iter().copied().max());
}

async fn log_rows(c: &tokio_postgres::Client, edge: &str) -> Vec<(i64, bool)> {
    c.query(
        "SELECT seq, fenced FROM event_log WHERE edge_id = $1 ORDER BY seq",
        &[&edge],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// An edge speaks only for its own rows: whatever cell it ships beside an
/// event, it cannot change another edge's surplus or offers, nor post into a
/// cell another edge holds.
#[tokio::test]
async fn an_edge_cannot_touch_another_edges_rows() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate(&mut c).await.unwrap();
    let (a, b) = (
        EdgeId::new("edge-a").unwrap(),
        EdgeId::new("edge-b").unwrap(),
    );
    let x = cell(-6.2, 106.8);
    // A cell in the same region that nobody leased.
    let spare = cell(-6.9, 107.6);
    assert_eq!(
        cloud_hub::region::region_of(x),
        cloud_hub::region::region_of(spare)
    );
    let home_b = queries::register(&c, &b, &[x]).await.unwrap().home_region;
    let home_a = queries::register(&c, &a, &[spare])
        .await
        .unwrap()
        .home_region;
    let ttl = Duration::from_secs(3_600);
    let gb = leases::grant(&mut c, &b, &[x], 0, T0, ttl).await.unwrap();
    let mut log_b = Log {
        edge: b.clone(),
        seq: 0,
        epoch: gb.epoch,
        pending: vec![],
    };
    log_b.push(x, posted(1, x));
    log_b.push(x, offer(1, 1, 2));
    apply_batch(&mut c, &b, home_b, &log_b.batch())
        .await
        .unwrap();
    let before = row(&c, 1).await;
    assert_eq!(before.as_ref().map(|r| r.1), Some(2));

    let mut log_a = Log {
        edge: a.clone(),
        seq: 0,
        epoch: 0,
        pending: vec![],
    };
    // Updates of b's surplus and offer under every kind of hint.
    for hint in [x, spare, 0] {
        log_a.push(
            hint,
            Event::Expired {
                surplus_id: sid(1),
                version: 100,
            },
        );
        log_a.push(
            hint,
            Event::Claimed {
                surplus_id: sid(1),
                recipient_id: rid(1),
                via: ClaimVia::OfferAccepted,
                version: 101,
            },
        );
    }
    // A posting into b's cell, with a true cell, a lying hint...
    let mut into_b = posted(2, x);
    log_a.push(0, into_b.clone());
    // ...and with a cell that does not contain its location.
    if let Event::SurplusPosted(p) = &mut into_b {
        p.id = sid(3);
        p.cell = spare;
    }
    log_a.push(spare, into_b);
    let applied = apply_batch(&mut c, &a, home_a, &log_a.batch())
        .await
        .unwrap();
    assert_eq!(applied.events, 8, "every event is logged");
    assert_eq!(row(&c, 1).await, before, "b's surplus is untouched");
    assert_eq!(
        outcome(&c, 1, 1).await.as_deref(),
        Some("pending"),
        "b's offer is untouched"
    );
    assert_eq!(row(&c, 2).await, None, "no posting into b's leased cell");
    assert_eq!(row(&c, 3).await, None, "no posting with a false cell");
    let fenced: Vec<bool> = log_rows(&c, "edge-a")
        .await
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert_eq!(&fenced[6..], &[true, true], "both postings fenced");
}

/// An update shipped without a cell (the edge no longer knew it) still
/// finds its row; a registration whose cell does not contain it is logged
/// and not projected.
#[tokio::test]
async fn events_without_a_usable_cell_are_placed_by_the_hub() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate(&mut c).await.unwrap();
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let home = queries::register(&c, &edge, &[x])
        .await
        .unwrap()
        .home_region;
    let mut log = Log {
        edge: edge.clone(),
        seq: 0,
        epoch: 0,
        pending: vec![],
    };
    log.push(x, posted(1, x));
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    log.push(
        0,
        Event::Expired {
            surplus_id: sid(1),
            version: 2,
        },
    );
    let berlin = cell(52.52, 13.405);
    log.push(
        berlin,
        Event::RecipientRegistered(Recipient {
            id: rid(7),
            name: "Far away".into(),
            location: GeoPoint::new(-6.2, 106.8).unwrap(),
            capacity_per_day: Mass::from_grams(1_000),
            accepted_food_types: FoodTypeSet::all(),
            is_fallback: false,
            contact: Contact {
                phone: "+62".into(),
                email: "a@b.id".into(),
            },
        }),
    );
    let applied = apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    assert_eq!(applied.fenced, 1);
    assert_eq!(
        row(&c, 1).await.map(|r| (r.0, r.1)),
        Some(("expired".into(), 2))
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM recipients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a misplaced registration is not projected");
}
