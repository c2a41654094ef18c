//! Personal data on the edge: sealed at rest (raw file bytes), key rotation,
//! the audit log, GDPR export and erasure, retention — over real HTTP on a
//! real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use edge_node::auth::Role;
use edge_node::clock::{Clock, ManualClock};
use edge_node::commands::{NewProvider, NewRecipient, NewSurplus, SurplusAction};
use edge_node::pii::PiiKeys;
use edge_node::{Edge, StartOptions};
use reqwest::StatusCode;
use serde_json::json;
use sync_protocol::wire::decode_envelope;
use sync_protocol::{
    Contact, Duration, Event, FoodType, FoodTypeSet, GeoPoint, Mass, Subject, Timestamp,
};

const PHONES: [&str; 3] = [
    "+62 811 7000 1111",
    "+62 811 7000 2222",
    "+62 811 7000 3333",
];
const EMAILS: [&str; 3] = [
    "sari.rahma@warung-sari.example",
    "budi.santoso@panti.example",
    "dewi.lestari@bank-pangan.example",
];

/// Every file of the database (main file, WAL, shared memory), as bytes.
fn raw_database(t: &TestEdge) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(t.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(edge_node::store::DB_FILE) {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(all.len() > 4096, "the database files were read");
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Registers a provider and two recipients with known contacts; returns ids.
async fn register_known(t: &TestEdge) -> (String, String, String) {
    let (s, p) = t
        .post(
            "/providers",
            json!({"name": "Warung Sari", "lat": -6.2, "lon": 106.816,
                   "contact_phone": PHONES[0], "contact_email": EMAILS[0]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["contact_phone"], PHONES[0], "the admin sees what it sent");
    let mut ids = Vec::new();
    for i in 1..3 {
        let mut body = recipient_body();
        merge(
            &mut body,
            json!({"name": format!("Panti {i}"), "lat": -6.21 - 0.001 * i as f64,
                   "contact_phone": PHONES[i], "contact_email": EMAILS[i]}),
        );
        let (s, r) = t.post("/recipients", body).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    (
        p["id"].as_str().unwrap().to_string(),
        ids[0].clone(),
        ids[1].clone(),
    )
}

fn sealed_of(t: &TestEdge, table: &str, id: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(t.db_path()).unwrap();
    let id = uuid::Uuid::parse_str(id).unwrap();
    conn.query_row(
        &format!("SELECT contact_sealed FROM {table} WHERE id = ?1"),
        [id.as_bytes().as_slice()],
        |r| r.get(0),
    )
    .unwrap()
}

fn outbox_events(t: &TestEdge) -> Vec<Event> {
    let conn = rusqlite::Connection::open(t.db_path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT envelope FROM outbox ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| decode_envelope(&b.unwrap()).unwrap().event)
        .collect()
}

fn audit_rows(t: &TestEdge) -> Vec<(String, String, String, String, i64)> {
    let conn = rusqlite::Connection::open(t.db_path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT actor, role, action, resource, status FROM audit_log ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

#[tokio::test]
async fn contact_data_never_reaches_the_database_files_in_the_clear() {
    let t = TestEdge::start().await;
    let (p, r1, _) = register_known(&t).await;
    // Admins read it back (opened), the subject itself does not see it.
    let (s, body) = t.get(&format!("/providers/{p}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            body["contact_phone"].as_str(),
            body["contact_email"].as_str()
        ),
        (Some(PHONES[0]), Some(EMAILS[0]))
    );
    let own = t.as_role(Role::Ngo, &r1);
    let body: serde_json::Value = own
        .get(t.url(&format!("/recipients/{r1}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["contact_phone"].is_null(), "{body}");
    // The sealed blob names key 1 and opens only for its own subject.
    let sealed = sealed_of(&t, "providers", &p);
    assert_eq!(PiiKeys::key_of(&sealed), Some(1));
    let keys = PiiKeys::load(t.dir.path()).unwrap();
    let pid = uuid::Uuid::parse_str(&p).unwrap();
    assert_eq!(
        keys.open(&sealed, pid.as_bytes()),
        Ok(Contact {
            phone: PHONES[0].into(),
            email: EMAILS[0].into()
        })
    );
    assert!(keys.open(&sealed, &[0u8; 16]).is_err());
    // Raw bytes: before and after a checkpoint, in the file and the WAL.
    for checkpoint in [false, true] {
        if checkpoint {
            let conn = rusqlite::Connection::open(t.db_path()).unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        let raw = raw_database(&t);
        assert!(
            contains(&raw, "Warung Sari"),
            "the search finds what is there"
        );
        for needle in PHONES.iter().chain(EMAILS.iter()) {
            assert!(!contains(&raw, needle), "{needle} found in the clear");
            // Nor a distinctive fragment of it.
            assert!(!contains(&raw, &needle[needle.len() - 9..]), "{needle}");
        }
    }
}

#[tokio::test]
async fn rotation_reseals_every_contact_while_running_and_at_start() {
    let t = TestEdge::start().await;
    let (p, r1, r2) = register_known(&t).await;
    // A notification channel is sealed the same way (its URL and secret).
    let (s, ch) = t
        .post(
            &format!("/recipients/{r1}/channels"),
            json!({"kind": "webhook", "url": "https://hooks.example.org/pahlawan"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ch}");
    let channel_key = || {
        let conn = rusqlite::Connection::open(t.db_path()).unwrap();
        let sealed: Vec<u8> = conn
            .query_row("SELECT sealed FROM notify_channels", [], |r| r.get(0))
            .unwrap();
        PiiKeys::key_of(&sealed)
    };
    assert_eq!(channel_key(), Some(1));
    let before = sealed_of(&t, "providers", &p);
    // While running: the edge notices the key file and re-seals.
    let id = PiiKeys::rotate_file(t.dir.path()).unwrap();
    assert_eq!(id, 2);
    eventually(
        "every contact and channel re-sealed under key 2",
        || async {
            let all = [
                sealed_of(&t, "providers", &p),
                sealed_of(&t, "recipients", &r1),
                sealed_of(&t, "recipients", &r2),
            ];
            (all.iter().all(|s| PiiKeys::key_of(s) == Some(2)) && channel_key() == Some(2))
                .then_some(())
        },
    )
    .await;
    let (_, list) = t.get(&format!("/recipients/{r1}/channels")).await;
    assert_eq!(
        list["items"][0]["url"], "https://hooks.example.org/pahlawan",
        "the channel still opens: {list}"
    );
    assert_ne!(sealed_of(&t, "providers", &p), before);
    let (_, body) = t.get(&format!("/providers/{p}")).await;
    assert_eq!(body["contact_email"], EMAILS[0], "still opens");
    let resealed = outbox_events(&t)
        .into_iter()
        .filter(|e| matches!(e, Event::ContactResealed { .. }))
        .count();
    assert_eq!(resealed, 3, "each re-seal is an event for the hub");
    // And no stored event still needs key 1.
    for e in outbox_events(&t) {
        let sealed = match &e {
            Event::ProviderRegistered(p) => &p.contact,
            Event::RecipientRegistered(r) => &r.contact,
            Event::ContactResealed { contact, .. } => contact,
            _ => continue,
        };
        assert_eq!(PiiKeys::key_of(sealed.as_bytes()), Some(2), "{e:?}");
    }
    // Stopped: a rotation is applied before the edge serves again.
    let dir = t.stop().await;
    assert_eq!(PiiKeys::rotate_file(dir.path()).unwrap(), 3);
    let edge = Edge::start(config(dir.path()), StartOptions::default())
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(edge_node::store::DB_FILE)).unwrap();
    let keys: Vec<Vec<u8>> = conn
        .prepare(
            "SELECT contact_sealed FROM providers UNION ALL SELECT contact_sealed FROM recipients",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| PiiKeys::key_of(k) == Some(3)));
    edge.shutdown().await;
}

#[tokio::test]
async fn a_second_edge_cannot_open_a_running_edges_data_dir() {
    let t = TestEdge::start().await;
    let err = Edge::start(config(t.dir.path()), StartOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, edge_node::StartError::Locked(_)), "{err}");
}

#[tokio::test]
async fn every_mutating_call_refusal_and_contact_read_is_audited() {
    let t = TestEdge::start().await;
    let (p, r1, _) = register_known(&t).await;
    let s = t.surplus(&p, json!({})).await;
    let id = s["id"].as_str().unwrap();
    // A refusal inside the store (409: wrong version), as the recipient.
    let ngo = t.as_role(Role::Ngo, &r1);
    let resp = ngo
        .post(t.url(&format!("/surplus/{id}/claim")))
        .header("user-agent", "kiosk/1.0")
        .json(&json!({"recipient_id": r1, "version": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    // A 403: the provider tries to claim.
    let provider = t.as_role(Role::Provider, &p);
    let resp = provider
        .post(t.url(&format!("/surplus/{id}/claim")))
        .json(&json!({"recipient_id": r1, "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A read of personal data by an admin.
    let (st, _) = t.get(&format!("/recipients/{r1}")).await;
    assert_eq!(st, StatusCode::OK);
    let rows = audit_rows(&t);
    let tail: Vec<_> = rows[rows.len() - 3..].to_vec();
    assert_eq!(
        tail,
        vec![
            (
                r1.clone(),
                "ngo".into(),
                "surplus.claim".into(),
                format!("surplus/{id}"),
                409
            ),
            (
                p.clone(),
                "provider".into(),
                "forbidden".into(),
                format!("POST /api/v1/surplus/{id}/claim"),
                403
            ),
            (
                "test-admin".into(),
                "admin".into(),
                "contact.read".into(),
                format!("recipient/{r1}"),
                200
            ),
        ]
    );
    // A mutating call refused before the store (bad input) is audited by the
    // middleware; one refused by the store is audited once, not twice.
    let resp = provider
        .post(t.url("/surplus"))
        .json(
            &json!({"provider_id": p, "lat": -6.2, "lon": 106.816, "quantity_kg": -1.0,
                      "food_type": "bakery", "expires_at": in_minutes(60)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let after = audit_rows(&t);
    assert_eq!(
        after.last().unwrap(),
        &(
            p.clone(),
            "provider".into(),
            "refused".into(),
            "POST /api/v1/surplus".into(),
            422
        )
    );
    assert_eq!(
        after.iter().filter(|r| r.4 == 409).count(),
        1,
        "the store's refusal is audited once"
    );
    let rows = after;
    // IP and user agent are recorded.
    let conn = rusqlite::Connection::open(t.db_path()).unwrap();
    let (ip, ua): (String, String) = conn
        .query_row(
            "SELECT ip, user_agent FROM audit_log WHERE status = 409",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ip.as_str(), ua.as_str()), ("127.0.0.1", "kiosk/1.0"));
    // Each audit row is an event for the hub too.
    let audited = outbox_events(&t)
        .into_iter()
        .filter(|e| matches!(e, Event::Audited(_)))
        .count();
    assert_eq!(audited, rows.len());
    // Append-only, even for a connection that can write.
    for sql in ["UPDATE audit_log SET status = 200", "DELETE FROM audit_log"] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(audit_rows(&t), rows);
}

#[tokio::test]
async fn export_holds_everything_on_the_subject_and_only_for_it() {
    let t = TestEdge::start().await;
    let (p, r1, r2) = register_known(&t).await;
    let resp = t
        .as_role(Role::Provider, &p)
        .post(t.url("/surplus"))
        .json(&surplus_body(&p))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let s: serde_json::Value = resp.json().await.unwrap();
    let id = s["id"].as_str().unwrap().to_string();
    let offered_to = s["offer"]["recipient_id"].as_str().unwrap().to_string();
    let ngo = t.as_role(Role::Ngo, &offered_to);
    let resp = ngo
        .post(t.url(&format!("/offers/{id}/accept")))
        .json(&json!({"recipient_id": offered_to}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // The provider exports its own data: profile with contact, its surplus.
    let own = t.as_role(Role::Provider, &p);
    let resp = own
        .get(t.url(&format!("/subjects/{p}/export")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let export: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(export["kind"], "provider");
    assert_eq!(export["provider"]["contact_phone"], PHONES[0]);
    assert_eq!(export["surplus"][0]["id"], id.as_str());
    assert!(
        export["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "surplus.post" && a["actor"] == p.as_str()),
        "what the provider did: {export}"
    );
    assert!(
        export["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "provider.register"
                && a["resource"] == format!("provider/{p}")
                && a["actor"] == ""
                && a["ip"].is_null()),
        "what was done to its data, without who (the admin) and from where: {export}"
    );

    // The recipient's export, by an admin: its offer and its claim.
    let (st, export) = t.get(&format!("/subjects/{offered_to}/export")).await;
    assert_eq!(st, StatusCode::OK, "{export}");
    assert_eq!(export["kind"], "recipient");
    assert_eq!(export["offers"][0]["surplus_id"], id.as_str());
    assert_eq!(export["offers"][0]["outcome"], "accepted");
    assert_eq!(export["surplus"][0]["status"], "claimed");
    assert!(export["recipient"]["contact_email"].is_string());

    // Nobody else: another recipient, the provider for a recipient.
    let other = if offered_to == r1 { &r2 } else { &r1 };
    for (client, target) in [
        (t.as_role(Role::Ngo, other), offered_to.as_str()),
        (t.as_role(Role::Provider, &p), offered_to.as_str()),
        (t.as_role(Role::Ngo, other), p.as_str()),
    ] {
        let resp = client
            .get(t.url(&format!("/subjects/{target}/export")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"]["code"].is_string());
    }
    let unknown = uuid::Uuid::now_v7();
    let (st, body) = t.get(&format!("/subjects/{unknown}/export")).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, _) = t.get("/subjects/not-a-uuid/export").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let exports = audit_rows(&t)
        .into_iter()
        .filter(|r| r.2 == "subject.export")
        .count();
    assert_eq!(exports, 2, "each export is audited");
}

#[tokio::test]
async fn erasure_removes_name_and_contact_everywhere_and_keeps_the_impact() {
    let t = TestEdge::start().await;
    let (p, r1, r2) = register_known(&t).await;
    // A delivery of 2.5 kg, so there is impact to keep.
    let s = t.surplus(&p, json!({"quantity_kg": 2.5})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let to = s["offer"]["recipient_id"].as_str().unwrap().to_string();
    for (path, body) in [
        (format!("/offers/{id}/accept"), json!({"recipient_id": to})),
        (format!("/surplus/{id}/pickup"), json!({"recipient_id": to})),
        (
            format!("/surplus/{id}/deliver"),
            json!({"recipient_id": to, "delivered_kg": 2.5}),
        ),
    ] {
        let (st, b) = t.post(&path, body).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    // A second surplus, offered to the other recipient when `to` is erased;
    // its description is the provider's free text with a phone number in it.
    let pending = t
        .surplus(
            &p,
            json!({"description": "call Ibu Sari +62 812 7777 0000"}),
        )
        .await;
    let pending_id = pending["id"].as_str().unwrap().to_string();
    let delivered_before: i64 = rusqlite::Connection::open(t.db_path())
        .unwrap()
        .query_row("SELECT sum(delivered_g) FROM surplus", [], |r| r.get(0))
        .unwrap();
    assert_eq!(delivered_before, 2_500);

    // Only admins erase.
    let ngo = t.as_role(Role::Ngo, &to);
    let resp = ngo
        .post(t.url(&format!("/subjects/{to}/erase")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    for subject in [&p, &r1, &r2] {
        let (st, body) = t
            .post(&format!("/subjects/{subject}/erase"), json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["erased"], true);
    }
    // Gone from the API; erasing again finds nothing.
    for (path, id) in [("providers", &p), ("recipients", &r1)] {
        let (st, _) = t.get(&format!("/{path}/{id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, _) = t.post(&format!("/subjects/{id}/erase"), json!({})).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    // Rows anonymised, impact kept.
    let conn = rusqlite::Connection::open(t.db_path()).unwrap();
    let names: Vec<(String, Vec<u8>)> = conn
        .prepare("SELECT name, contact_sealed FROM providers UNION ALL SELECT name, contact_sealed FROM recipients")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        names.iter().all(|(n, c)| n == "[erased]" && c.is_empty()),
        "{names:?}"
    );
    let delivered_after: i64 = conn
        .query_row("SELECT sum(delivered_g) FROM surplus", [], |r| r.get(0))
        .unwrap();
    assert_eq!(delivered_after, delivered_before);
    // No envelope in the outbox carries a name or a contact any more.
    let events = outbox_events(&t);
    for e in &events {
        match e {
            Event::ProviderRegistered(x) => {
                assert_eq!(x.name, "[erased]");
                assert!(x.contact.is_empty());
            }
            Event::RecipientRegistered(x) => {
                assert_eq!(x.name, "[erased]");
                assert!(x.contact.is_empty());
            }
            Event::ContactResealed { contact, .. } => assert!(contact.is_empty()),
            _ => {}
        }
    }
    let erased: Vec<Subject> = events
        .iter()
        .filter_map(|e| match e {
            Event::SubjectErased { subject } => Some(*subject),
            _ => None,
        })
        .collect();
    assert_eq!(erased.len(), 3, "one event per erasure, for the hub");
    let (_, v) = t.get(&format!("/surplus/{pending_id}")).await;
    assert_eq!(
        v["description"], "",
        "the description went with its provider"
    );
    let raw = raw_database(&t);
    for name in ["Warung Sari", "Panti 1", "Panti 2", "7777 0000"] {
        assert!(!contains(&raw, name), "{name} still in the database files");
    }
    // The erased provider posts no more; the erased recipients get no offers.
    let provider = t.as_role(Role::Provider, &p);
    let resp = provider
        .post(t.url("/surplus"))
        .json(&surplus_body(&p))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, v) = t.get(&format!("/surplus/{pending_id}")).await;
    assert!(
        v["offer"].is_null(),
        "the pending offer to an erased recipient was withdrawn: {v}"
    );
}

/// An edge on `dir` (no HTTP) whose time is `clock`, keeping 90 days.
async fn start_on_clock(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Edge {
    let mut cfg = config(dir);
    cfg.retention_days = 90;
    Edge::start(
        cfg,
        StartOptions {
            clock: clock.clone(),
            serve_http: false,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn retention_deletes_old_operational_data_and_keeps_totals_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_790_000_000_000)));
    let edge = start_on_clock(dir.path(), &clock).await;
    let h = edge.writes().clone();
    let actor = edge_node::commands::Actor {
        sub: "ops".into(),
        role: "admin".into(),
        ip: None,
        user_agent: None,
    };
    let here = GeoPoint::new(-6.2, 106.816).unwrap();
    let contact = Contact {
        phone: "+62 1".into(),
        email: "a@b.example".into(),
    };
    let provider = h
        .register_provider(
            NewProvider {
                name: "P".into(),
                location: here,
                address: String::new(),
                contact: contact.clone(),
            },
            Some(actor.clone()),
        )
        .await
        .unwrap()
        .unwrap();
    let recipient = h
        .register_recipient(
            NewRecipient {
                name: "R".into(),
                location: here,
                capacity_per_day: Mass::from_grams(1_000_000),
                accepted_food_types: FoodTypeSet::all(),
                is_fallback: false,
                contact,
            },
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let post = |kg: u64| NewSurplus {
        provider_id: provider.id,
        location: here,
        quantity: Mass::from_grams(kg * 1_000),
        food_type: FoodType::Bakery,
        expires_at: clock.now() + Duration::from_mins(120),
        description: String::new(),
    };
    // One delivered, one left to expire, one idempotency key.
    let delivered = h
        .post_surplus(post(3), Some("k1".into()), None, Some(actor.clone()))
        .await
        .unwrap()
        .unwrap()
        .surplus;
    let expiring = h
        .post_surplus(post(4), None, None, None)
        .await
        .unwrap()
        .unwrap()
        .surplus;
    let r = recipient.id;
    for action in [
        SurplusAction::Accept { recipient_id: r },
        SurplusAction::PickUp { recipient_id: r },
        SurplusAction::Deliver {
            recipient_id: r,
            delivered: Mass::from_grams(2_500),
        },
    ] {
        h.act(delivered.id, action, None, None)
            .await
            .unwrap()
            .unwrap();
    }
    clock.advance(Duration::from_mins(180));
    h.tick().await.unwrap();
    let gone = edge.reads().surplus(expiring.id).await.unwrap().unwrap();
    assert_eq!(gone.status, sync_protocol::SurplusStatus::Expired);
    // Pretend the hub acknowledged everything so far.
    let acked = edge.committed_seq();
    h.mark_published(acked).await.unwrap();

    let db = dir.path().join(edge_node::store::DB_FILE);
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    let audit_before = count("SELECT count(*) FROM audit_log");
    assert!(audit_before >= 2);
    // Not yet old: nothing is deleted.
    clock.advance(Duration::from_mins(60 * 24 * 89));
    assert_eq!(edge.retain().await.unwrap(), 0);
    assert_eq!(count("SELECT count(*) FROM surplus"), 2);

    clock.advance(Duration::from_mins(60 * 24 * 2));
    let deleted = edge.retain().await.unwrap();
    assert!(deleted > 0);
    assert_eq!(count("SELECT count(*) FROM surplus"), 0);
    assert_eq!(count("SELECT count(*) FROM offers"), 0);
    assert_eq!(count("SELECT count(*) FROM idempotency_keys"), 0);
    assert_eq!(
        count("SELECT count(*) FROM outbox"),
        0,
        "acknowledged events older than the window are gone"
    );
    assert_eq!(
        count("SELECT sum(delivered_g) FROM impact_daily"),
        2_500,
        "delivered kilograms survive as daily totals"
    );
    assert_eq!(count("SELECT sum(delivered_n) FROM impact_daily"), 1);
    assert_eq!(count("SELECT sum(expired_n) FROM impact_daily"), 1);
    assert_eq!(
        count("SELECT count(*) FROM audit_log"),
        audit_before,
        "kept"
    );
    assert_eq!(
        count("SELECT count(*) FROM providers"),
        1,
        "registries kept"
    );
    // New events still number on from where they were — also after a
    // restart with an empty outbox (the hub would refuse a restarted seq).
    edge.shutdown().await;
    let edge = start_on_clock(dir.path(), &clock).await;
    let h = edge.writes().clone();
    assert_eq!(
        edge.committed_seq(),
        acked,
        "numbering survives the empty outbox"
    );
    h.post_surplus(post(1), None, None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(edge.committed_seq() > acked);
    assert_eq!(count("SELECT min(seq) FROM outbox"), acked as i64 + 1);
    assert_eq!(edge.retain().await.unwrap(), 0, "idempotent");
    edge.shutdown().await;
}
