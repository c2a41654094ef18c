//! The batch apply against a real PostgreSQL: the global views follow the
//! events across batch boundaries, and fenced events are logged but not
//! projected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cloud_hub::db::{self, apply::apply_batch, leases, queries};
use common::{Log, T0, cell, log_of, offer, posted, rid, setup, sid};
use sync_protocol::{
    AuditRecord, ClaimVia, Duration, EdgeId, Event, FoodTypeSet, GeoPoint, Mass, Provider,
    ProviderId, Recipient, RecipientId, SealedContact, Subject,
};
use testkit::pg;

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
        base: T0,
    };

    let contact = SealedContact(vec![1, 0, 0, 0, 1, 0xee]);
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
        base: T0,
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
        base: T0,
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
        base: T0,
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
        base: T0,
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
        base: T0,
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
        base: T0,
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
            contact: SealedContact(vec![1, 0, 0, 0, 1, 0xee]),
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

// ---------------------------------------------------------------------------
// Personal data: sealed contacts, reseal, erasure, the audit log.
// ---------------------------------------------------------------------------

/// A contact as an edge seals it: opaque bytes, zeros and high bytes included.
fn sealed(tag: u8) -> SealedContact {
    SealedContact(vec![1, 0, 0, 0, tag, 0x00, 0xff, 0x7f, 0x80, tag, 0x00])
}

fn pid(n: u8) -> ProviderId {
    ProviderId::from_bytes([n; 16])
}

fn provider(n: u8, name: &str, contact: SealedContact) -> Event {
    Event::ProviderRegistered(Provider {
        id: pid(n),
        name: name.into(),
        location: GeoPoint::new(-6.2, 106.8).unwrap(),
        contact,
    })
}

fn recipient(n: u8, name: &str, contact: SealedContact) -> Event {
    Event::RecipientRegistered(Recipient {
        id: rid(n),
        name: name.into(),
        location: GeoPoint::new(-6.21, 106.8).unwrap(),
        capacity_per_day: Mass::from_grams(500_000),
        accepted_food_types: FoodTypeSet::all(),
        is_fallback: false,
        contact,
    })
}

/// (name, contact_sealed, erased_at) of a provider or recipient row.
async fn subject_row(
    c: &tokio_postgres::Client,
    subject: Subject,
) -> Option<(String, Vec<u8>, Option<time::OffsetDateTime>)> {
    let (sql, id) = match subject {
        Subject::Provider(p) => (
            "SELECT name, contact_sealed, erased_at FROM providers WHERE id = $1",
            *p.as_uuid(),
        ),
        Subject::Recipient(r) => (
            "SELECT name, contact_sealed, erased_at FROM recipients WHERE id = $1",
            *r.as_uuid(),
        ),
    };
    c.query_opt(sql, &[&id])
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Every stored log row of `edge`: (seq, subject_id, envelope).
async fn envelopes(
    c: &tokio_postgres::Client,
    edge: &str,
) -> Vec<(i64, Option<uuid::Uuid>, Vec<u8>)> {
    c.query(
        "SELECT seq, subject_id, envelope FROM event_log WHERE edge_id = $1 ORDER BY seq",
        &[&edge],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The rows erasure must leave alone, as text.
async fn impact_rows(c: &tokio_postgres::Client) -> (Vec<String>, Vec<String>) {
    // Descriptions are the provider's free text: erasure blanks them.
    let surplus = c
        .query(
            "SELECT (to_jsonb(s) - 'description')::text FROM surplus s ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let offers = c
        .query(
            "SELECT m::text FROM matching_history m ORDER BY surplus_id, recipient_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (surplus, offers)
}

/// How many of `edge`'s stored envelopes contain `needle`.
async fn envelopes_containing(c: &tokio_postgres::Client, needle: &[u8]) -> i64 {
    c.query_one(
        "SELECT count(*) FROM event_log WHERE position($1::bytea IN envelope) > 0",
        &[&needle],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn sealed_contacts_are_stored_as_sent_and_no_plaintext_column_remains() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (_tdb, mut c, home) = setup(&[&edge], x).await;
    let mut log = log_of(&edge);
    log.push(x, provider(1, "Warung Bu Sri", sealed(1)));
    log.push(x, recipient(2, "Panti Asuhan", sealed(2)));
    log.push(x, posted(3, x));
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();

    let p = subject_row(&c, Subject::Provider(pid(1))).await.unwrap();
    assert_eq!(p, ("Warung Bu Sri".into(), sealed(1).0, None));
    let r = subject_row(&c, Subject::Recipient(rid(2))).await.unwrap();
    assert_eq!(r, ("Panti Asuhan".into(), sealed(2).0, None));

    let plaintext: Vec<String> = c
        .query(
            "SELECT table_name || '.' || column_name FROM information_schema.columns
             WHERE table_schema = 'public'
               AND (column_name LIKE '%phone%' OR column_name LIKE '%email%')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plaintext.is_empty(),
        "plaintext contact columns: {plaintext:?}"
    );

    // The log names the subject of each registration, and the provider of a
    // posting (its description is the provider's free text).
    let subjects: Vec<Option<uuid::Uuid>> = envelopes(&c, "jkt-1")
        .await
        .into_iter()
        .map(|(_, s, _)| s)
        .collect();
    assert_eq!(
        subjects,
        vec![
            Some(*pid(1).as_uuid()),
            Some(*rid(2).as_uuid()),
            Some(*ProviderId::from_bytes([9; 16]).as_uuid())
        ]
    );
}

#[tokio::test]
async fn a_reseal_replaces_the_sealed_contact() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (_tdb, mut c, home) = setup(&[&edge], x).await;
    let mut log = log_of(&edge);
    log.push(x, provider(1, "Warung", sealed(1)));
    log.push(x, recipient(2, "Panti", sealed(2)));
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    log.push(
        0,
        Event::ContactResealed {
            subject: Subject::Provider(pid(1)),
            contact: sealed(11),
        },
    );
    log.push(
        0,
        Event::ContactResealed {
            subject: Subject::Recipient(rid(2)),
            contact: sealed(12),
        },
    );
    let applied = apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    assert_eq!(applied.fenced, 0);
    let p = subject_row(&c, Subject::Provider(pid(1))).await.unwrap();
    assert_eq!((p.0.as_str(), p.1), ("Warung", sealed(11).0));
    let r = subject_row(&c, Subject::Recipient(rid(2))).await.unwrap();
    assert_eq!((r.0.as_str(), r.1), ("Panti", sealed(12).0));

    // Registered and resealed in one batch: the reseal wins.
    log.push(x, provider(3, "Toko", sealed(3)));
    log.push(
        0,
        Event::ContactResealed {
            subject: Subject::Provider(pid(3)),
            contact: sealed(13),
        },
    );
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    let p = subject_row(&c, Subject::Provider(pid(3))).await.unwrap();
    assert_eq!(p.1, sealed(13).0);

    // No stored event still carries a contact sealed under the old key.
    for old in [sealed(1).0, sealed(2).0, sealed(3).0] {
        assert_eq!(envelopes_containing(&c, &old).await, 0, "{old:?}");
    }
    let registered: Vec<Vec<u8>> = envelopes(&c, "jkt-1")
        .await
        .into_iter()
        .filter_map(|(_, _, bytes)| {
            match sync_protocol::wire::decode_envelope(&bytes).unwrap().event {
                Event::ProviderRegistered(p) if p.id == pid(1) => Some(p.contact.0),
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        registered,
        vec![sealed(11).0],
        "re-sealed in the stored registration"
    );
}

/// Erasure: the subject's row keeps its id but loses name and contact, every
/// stored envelope of the subject loses them too, the rows behind the impact
/// figures are untouched, erased recipients leave the neighbour feed, and
/// erasing again (or replaying) changes nothing.
#[tokio::test]
async fn erasure_anonymises_the_subject_and_its_stored_events_and_keeps_the_impact() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let other = EdgeId::new("bdg-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (_tdb, mut c, home) = setup(&[&edge, &other], x).await;
    let mut log = log_of(&edge);
    log.push(x, provider(9, "Warung Bu Sri", sealed(1)));
    log.push(x, recipient(2, "Panti Kasih", sealed(2)));
    log.push(x, recipient(3, "Dapur Umum", sealed(3)));
    log.push(x, posted(1, x));
    log.push(x, offer(1, 2, 2));
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    log.push(
        x,
        Event::Claimed {
            surplus_id: sid(1),
            recipient_id: rid(2),
            via: ClaimVia::OfferAccepted,
            version: 3,
        },
    );
    log.push(
        x,
        Event::PickedUp {
            surplus_id: sid(1),
            recipient_id: rid(2),
            version: 4,
        },
    );
    log.push(
        x,
        Event::Delivered {
            surplus_id: sid(1),
            recipient_id: rid(2),
            delivered: Mass::from_grams(9_500),
            version: 5,
        },
    );
    log.push(
        0,
        Event::ContactResealed {
            subject: Subject::Provider(pid(9)),
            contact: sealed(21),
        },
    );
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    let impact = queries::global_impact(&c).await.unwrap();
    assert_eq!((impact.surplus_delivered, impact.delivered_kg), (1, 9.5));
    let before = impact_rows(&c).await;
    for needle in [&b"Warung Bu Sri"[..], &sealed(21).0, b"Panti Kasih"] {
        assert!(envelopes_containing(&c, needle).await > 0);
    }
    // The reseal already replaced the first sealing in the stored registration.
    assert_eq!(envelopes_containing(&c, &sealed(1).0).await, 0);

    // Both subjects erased (the provider's reseal and registration are in
    // earlier batches; an erasure in the same batch as the registration is
    // covered below).
    let erased = [Subject::Provider(pid(9)), Subject::Recipient(rid(2))];
    for s in erased {
        log.push(0, Event::SubjectErased { subject: s });
    }
    let erase_batch = log.batch();
    apply_batch(&mut c, &edge, home, &erase_batch)
        .await
        .unwrap();

    for s in erased {
        let (name, contact, at) = subject_row(&c, s).await.unwrap();
        assert_eq!(name, cloud_hub::db::apply::ERASED_NAME);
        assert!(contact.is_empty(), "{s:?}: contact emptied");
        assert!(at.is_some(), "{s:?}: erased_at set");
    }
    let kept = subject_row(&c, Subject::Recipient(rid(3))).await.unwrap();
    assert_eq!((kept.0.as_str(), kept.2), ("Dapur Umum", None));

    // Every stored envelope of the erased subjects decodes and carries
    // neither name nor contact; the others are as they were.
    let mut redacted = 0;
    for (seq, subject, bytes) in envelopes(&c, "jkt-1").await {
        let env = sync_protocol::wire::decode_envelope(&bytes)
            .unwrap_or_else(|e| panic!("seq {seq}: {e}"));
        assert_eq!(env.seq as i64, seq);
        match &env.event {
            Event::ProviderRegistered(p) => {
                assert_eq!(subject, Some(*pid(9).as_uuid()));
                assert_eq!(p.name, cloud_hub::db::apply::ERASED_NAME);
                assert!(p.contact.is_empty());
                assert_eq!(p.location, GeoPoint::new(-6.2, 106.8).unwrap());
                redacted += 1;
            }
            Event::RecipientRegistered(r) if r.id == rid(2) => {
                assert_eq!(r.name, cloud_hub::db::apply::ERASED_NAME);
                assert!(r.contact.is_empty());
                assert_eq!(r.capacity_per_day, Mass::from_grams(500_000));
                redacted += 1;
            }
            Event::RecipientRegistered(r) => {
                assert_eq!((r.name.as_str(), &r.contact), ("Dapur Umum", &sealed(3)));
            }
            Event::ContactResealed {
                subject: s,
                contact,
            } => {
                assert_eq!(*s, Subject::Provider(pid(9)));
                assert!(contact.is_empty());
                redacted += 1;
            }
            _ => {}
        }
    }
    assert_eq!(redacted, 3);
    for needle in [
        &b"Warung Bu Sri"[..],
        &sealed(1).0,
        &sealed(21).0,
        b"Panti Kasih",
        b"roti",
    ] {
        assert_eq!(envelopes_containing(&c, needle).await, 0, "{needle:?}");
    }
    assert!(envelopes_containing(&c, b"Dapur Umum").await > 0);
    // The provider's free text in its surplus is gone too.
    let described: i64 = c
        .query_one("SELECT count(*) FROM surplus WHERE description <> ''", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(described, 0);

    // Surplus, offers, delivered kilograms and the totals are untouched.
    assert_eq!(impact_rows(&c).await, before);
    assert_eq!(queries::global_impact(&c).await.unwrap(), impact);

    // The erased recipient is fed to neighbours once more, as a tombstone
    // without its name (so they forget it), after the other one.
    let feed = queries::registry(
        &c,
        &other,
        &[x],
        sync_protocol::session::feed::Cursor::START,
        100,
    )
    .await
    .unwrap();
    let fed: Vec<(RecipientId, bool, String)> = feed
        .iter()
        .map(|(e, _)| (e.id, e.erased, e.name.clone()))
        .collect();
    assert_eq!(
        fed,
        vec![
            (rid(3), false, "Dapur Umum".to_string()),
            (rid(2), true, String::new())
        ]
    );

    // Idempotent: the same batch again is refused without effect; a second
    // erasure and a later reseal change nothing.
    let after_erase = snapshot(&c, &erased).await;
    assert!(matches!(
        apply_batch(&mut c, &edge, home, &erase_batch).await,
        Err(db::DbError::NotContiguous { .. })
    ));
    assert_eq!(snapshot(&c, &erased).await, after_erase);
    for s in erased {
        log.push(0, Event::SubjectErased { subject: s });
    }
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    let (rows, envs) = snapshot(&c, &erased).await;
    assert_eq!(rows, after_erase.0, "rows unchanged, erased_at kept");
    assert_eq!(
        &envs[..after_erase.1.len()],
        &after_erase.1[..],
        "earlier envelopes unchanged"
    );
    // A reseal after the erasure: the rows stay erased and the log keeps
    // no copy of the new contact.
    for s in erased {
        log.push(
            0,
            Event::ContactResealed {
                subject: s,
                contact: sealed(99),
            },
        );
    }
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    assert_eq!(snapshot(&c, &erased).await.0, after_erase.0);
    assert_eq!(envelopes_containing(&c, &sealed(99).0).await, 0);
    assert_eq!(queries::global_impact(&c).await.unwrap(), impact);
    assert_eq!(impact_rows(&c).await, before);

    // Registered and erased in one batch: nothing personal is kept.
    log.push(x, provider(7, "Kedai Sekejap", sealed(7)));
    log.push(
        0,
        Event::SubjectErased {
            subject: Subject::Provider(pid(7)),
        },
    );
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    let (name, contact, _) = subject_row(&c, Subject::Provider(pid(7))).await.unwrap();
    assert_eq!(
        (name.as_str(), contact.len()),
        (cloud_hub::db::apply::ERASED_NAME, 0)
    );
    assert_eq!(envelopes_containing(&c, b"Kedai Sekejap").await, 0);
    assert_eq!(envelopes_containing(&c, &sealed(7).0).await, 0);
}

type Snapshot = (
    Vec<Option<(String, Vec<u8>, Option<time::OffsetDateTime>)>>,
    Vec<(i64, Option<uuid::Uuid>, Vec<u8>)>,
);

/// The subjects' rows and jkt-1's whole log.
async fn snapshot(c: &tokio_postgres::Client, subjects: &[Subject]) -> Snapshot {
    let mut rows = Vec::new();
    for s in subjects {
        rows.push(subject_row(c, *s).await);
    }
    (rows, envelopes(c, "jkt-1").await)
}

/// An edge speaks only for its own subjects: another edge's reseal or
/// erasure of them changes neither their rows nor their stored events.
#[tokio::test]
async fn an_edge_cannot_reseal_or_erase_another_edges_subject() {
    let (a, b) = (
        EdgeId::new("edge-a").unwrap(),
        EdgeId::new("edge-b").unwrap(),
    );
    let x = cell(-6.2, 106.8);
    let (_tdb, mut c, home) = setup(&[&a, &b], x).await;
    let mut log_a = log_of(&a);
    log_a.push(x, provider(1, "Warung A", sealed(1)));
    log_a.push(x, recipient(2, "Panti A", sealed(2)));
    apply_batch(&mut c, &a, home, &log_a.batch()).await.unwrap();
    let subjects = [Subject::Provider(pid(1)), Subject::Recipient(rid(2))];
    let mut rows = Vec::new();
    for s in subjects {
        rows.push(subject_row(&c, s).await);
    }
    let stored = envelopes(&c, "edge-a").await;

    let mut log_b = log_of(&b);
    for s in subjects {
        log_b.push(
            x,
            Event::ContactResealed {
                subject: s,
                contact: sealed(66),
            },
        );
        log_b.push(x, Event::SubjectErased { subject: s });
    }
    let applied = apply_batch(&mut c, &b, home, &log_b.batch()).await.unwrap();
    assert_eq!(applied.events, 4, "logged");
    let mut after = Vec::new();
    for s in subjects {
        after.push(subject_row(&c, s).await);
    }
    assert_eq!(after, rows, "a's subjects untouched");
    assert_eq!(after[0].as_ref().unwrap().0, "Warung A");
    assert_eq!(envelopes(&c, "edge-a").await, stored, "a's log untouched");
}

fn audit(n: u16, ip: Option<&str>, agent: Option<&str>) -> Event {
    Event::Audited(AuditRecord {
        actor: format!("user-{n}"),
        role: "admin".into(),
        action: "recipient.read_contact".into(),
        resource: format!("recipients/{n}"),
        status: n,
        ip: ip.map(Into::into),
        user_agent: agent.map(Into::into),
    })
}

type AuditRow = (
    i64,
    String,
    i64,
    time::OffsetDateTime,
    String,
    String,
    String,
    String,
    i32,
    Option<String>,
    Option<String>,
);

async fn audit_rows(c: &tokio_postgres::Client) -> Vec<AuditRow> {
    c.query(
        "SELECT geo_region_id, edge_id, seq, at, actor, role, action, resource, status, ip, user_agent
         FROM audit_log ORDER BY seq",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
            r.get(8),
            r.get(9),
            r.get(10),
        )
    })
    .collect()
}

#[tokio::test]
async fn audit_records_land_with_every_field_and_replays_add_nothing() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (_tdb, mut c, home) = setup(&[&edge], x).await;
    let mut log = log_of(&edge);
    log.push(0, audit(200, Some("10.0.0.1"), Some("curl/8.5")));
    log.push(x, posted(1, x));
    log.push(0, audit(403, None, None));
    log.push(0, audit(65_535, Some("2001:db8::1"), Some("bad\0agent")));
    let batch = log.batch();
    let applied = apply_batch(&mut c, &edge, home, &batch).await.unwrap();
    assert_eq!((applied.events, applied.fenced), (4, 0));

    let at = |seq: i64| cloud_hub::db::apply::odt(T0 + Duration::from_secs(seq));
    let row = |seq: i64, status: i32, ip: Option<&str>, agent: Option<&str>| -> AuditRow {
        (
            home,
            "jkt-1".into(),
            seq,
            at(seq),
            format!("user-{status}"),
            "admin".into(),
            "recipient.read_contact".into(),
            format!("recipients/{status}"),
            status,
            ip.map(Into::into),
            agent.map(Into::into),
        )
    };
    let expected = vec![
        row(1, 200, Some("10.0.0.1"), Some("curl/8.5")),
        row(3, 403, None, None),
        // PostgreSQL text holds no NUL: replaced, not a failed batch.
        row(4, 65_535, Some("2001:db8::1"), Some("bad\u{fffd}agent")),
    ];
    assert_eq!(audit_rows(&c).await, expected);

    // The same batch again: refused, nothing added.
    assert!(matches!(
        apply_batch(&mut c, &edge, home, &batch).await,
        Err(db::DbError::NotContiguous { .. })
    ));
    assert_eq!(audit_rows(&c).await, expected);
}

#[tokio::test]
async fn the_audit_log_refuses_update_delete_and_truncate() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (_tdb, mut c, home) = setup(&[&edge], x).await;
    let mut log = log_of(&edge);
    log.push(0, audit(200, Some("10.0.0.1"), None));
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();
    let before = audit_rows(&c).await;
    assert_eq!(before.len(), 1);
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = c.batch_execute(sql).await.unwrap_err();
        let db_err = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(
            db_err.code(),
            &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
            "{sql}: {db_err}"
        );
        assert!(db_err.message().contains("append-only"), "{sql}: {db_err}");
    }
    assert_eq!(audit_rows(&c).await, before);
}

/// The dump helper the end-to-end test relies on: it dumps the test
/// database, text columns and binary ones (as escaped bytes, printable
/// ASCII as is) alike.
#[tokio::test]
async fn pg_dump_returns_the_test_database() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (tdb, mut c, home) = setup(&[&edge], x).await;
    let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
    let binary_marker = format!("bytes-{}", uuid::Uuid::new_v4().simple());
    let mut contact = vec![0u8, 0xff];
    contact.extend_from_slice(binary_marker.as_bytes());
    let mut log = log_of(&edge);
    log.push(x, provider(1, &marker, SealedContact(contact)));
    apply_batch(&mut c, &edge, home, &log.batch())
        .await
        .unwrap();

    let dump = pg::pg_dump(&tdb).await.unwrap();
    let has = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"CREATE TABLE public.audit_log"),
        "the schema is dumped"
    );
    assert!(
        has(marker.as_bytes()),
        "a text column's marker is in the dump"
    );
    assert!(
        has(binary_marker.as_bytes()),
        "a marker inside a bytea column is in the dump as plain bytes"
    );
    assert!(!has(b"no-such-marker-anywhere"));
}
