//! Crash safety: a child process serving the API is killed with SIGKILL in
//! the middle of a stream of posts; after restart every surplus that got a
//! 201 is there, with its outbox events, and the outbox is dense.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Proc, admin_client, in_minutes, post};
use serde_json::json;
use sync_protocol::wire::decode_envelope;
use sync_protocol::{Event, SurplusId};

mod common;

/// An edge on its defaults in `data_dir`, on a free port.
fn start_edge(data_dir: &Path) -> (Proc, String) {
    common::edge_in(data_dir, &[])
}

/// Posts from 16 tasks until the server dies; returns the ids that got a 201.
async fn post_stream(
    c: reqwest::Client,
    base: String,
    provider: String,
    acked: Arc<Mutex<Vec<String>>>,
) -> Vec<String> {
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let (c, base, provider, acked) =
                (c.clone(), base.clone(), provider.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0u32;
                loop {
                    i += 1;
                    let body = json!({"provider_id": provider, "lat": -6.2 + f64::from(w) * 0.001,
                        "lon": 106.816 + f64::from(i % 100) * 0.0005, "quantity_kg": 3.5,
                        "food_type": "bakery", "expires_at": in_minutes(120), "description": format!("w{w} #{i}")});
                    match post(&c, format!("{base}/api/v1/surplus"), body).await {
                        Ok((201, v)) => acked.lock().unwrap().push(v["id"].as_str().unwrap().to_string()),
                        Ok((status, v)) => panic!("unexpected {status}: {v}"),
                        Err(_) => break, // the server died under us: this request is not acknowledged
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    std::mem::take(&mut *acked.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_posts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut edge, mut base) = start_edge(dir.path());
    let c = admin_client(dir.path());
    let (s, p) = post(
        &c,
        format!("{}/api/v1/providers", base),
        json!({"name": "Toko Roti", "lat": -6.2, "lon": 106.816,
        "contact_phone": "+62 21 555 1234", "contact_email": "roti@example.org"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    let provider = p["id"].as_str().unwrap().to_string();
    let (s, _) = post(&c, format!("{}/api/v1/recipients", base), json!({"name": "Panti", "lat": -6.21, "lon": 106.82,
        "capacity_kg_per_day": 100000.0, "accepted_food_types": ["bakery"], "contact_phone": "+62 21 555 0000",
        "contact_email": "panti@example.org"})).await.unwrap();
    assert_eq!(s, 201);

    let mut all_acked = Vec::new();
    for round in 0..3 {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stream = tokio::spawn(post_stream(
            c.clone(),
            base.clone(),
            provider.clone(),
            acked.clone(),
        ));
        // Let a few hundred posts through, then pull the plug mid-stream.
        let target = 300 + round * 200;
        for _ in 0..6_000 {
            if acked.lock().unwrap().len() >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        edge.kill9();
        let acked = stream.await.unwrap();
        assert!(
            !acked.is_empty(),
            "round {round}: some posts were acknowledged before the kill"
        );
        all_acked.extend(acked);
        (edge, base) = start_edge(dir.path());
    }

    // Every acknowledged surplus is served after the restarts...
    for id in &all_acked {
        let r = c
            .get(format!("{}/api/v1/surplus/{id}", base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged surplus {id} was lost");
    }
    drop(edge);
    // ...and the database holds it with its outbox events, densely numbered.
    let conn = rusqlite::Connection::open(dir.path().join("edge.sqlite3")).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, envelope FROM outbox ORDER BY seq")
        .unwrap();
    let mut events: HashMap<SurplusId, Vec<&'static str>> = HashMap::new();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap();
    for (expected_seq, row) in (1u64..).zip(rows) {
        let (seq, bytes) = row.unwrap();
        assert_eq!(seq as u64, expected_seq, "the outbox is dense");
        let env = decode_envelope(&bytes).unwrap();
        assert_eq!(env.seq, seq as u64);
        if let Some(id) = env.event.surplus_id() {
            events.entry(id).or_default().push(env.event.kind());
        }
        if let Event::SurplusPosted(p) = &env.event {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM surplus WHERE id = ?1",
                    [p.id.as_bytes()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "every posted event has its row: no partial writes");
        }
    }
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM surplus", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows as usize,
        events.len(),
        "every surplus row has its events"
    );
    let acked: HashSet<_> = all_acked.iter().collect();
    for id in acked {
        let kinds = &events[&id.parse::<SurplusId>().unwrap()];
        assert_eq!(kinds.first(), Some(&"surplus_posted"), "{id}: {kinds:?}");
        assert!(kinds.contains(&"offer_made"), "{id}: {kinds:?}");
    }
    eprintln!(
        "{} acknowledged posts across 3 kill -9 rounds all survived",
        all_acked.len()
    );
}

/// Issue 18: an offer committed but not yet delivered when the edge is
/// killed with SIGKILL is delivered after the restart — the dispatcher
/// starts after its stored cursor, which never passed the offer — under the
/// same `webhook-id` every attempt carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offer_committed_but_not_sent_is_sent_after_kill_9() {
    use testkit::webhook::{FakeReceiver, Mode};
    let dir = tempfile::tempdir().unwrap();
    let (mut edge, base) = start_edge(dir.path());
    let c = admin_client(dir.path());
    let (s, p) = post(
        &c,
        format!("{base}/api/v1/providers"),
        json!({"name": "Toko Roti", "lat": -6.2, "lon": 106.816,
        "contact_phone": "+62 21 555 1234", "contact_email": "roti@example.org"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    let (s, r) = post(&c, format!("{base}/api/v1/recipients"), json!({"name": "Panti", "lat": -6.21, "lon": 106.82,
        "capacity_kg_per_day": 1000.0, "accepted_food_types": ["bakery"], "contact_phone": "+62 21 555 0000",
        "contact_email": "panti@example.org"})).await.unwrap();
    assert_eq!(s, 201);
    let recipient = r["id"].as_str().unwrap().to_string();
    let mut rx = FakeReceiver::start(Mode::Ok).await;
    let (s, ch) = post(
        &c,
        format!("{base}/api/v1/recipients/{recipient}/channels"),
        json!({"kind": "webhook", "url": rx.url()}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{ch}");
    rx.set_secret(ch["secret"].as_str().unwrap());
    // The receiver is down: the offer commits, its attempts fail.
    rx.stop();
    let (s, surplus) = post(
        &c,
        format!("{base}/api/v1/surplus"),
        json!({"provider_id": p["id"], "lat": -6.2, "lon": 106.816, "quantity_kg": 3.5,
            "food_type": "bakery", "expires_at": in_minutes(120), "description": "roti tawar"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    assert_eq!(surplus["status"], "offered");
    let failed = "notify_attempts_total{channel=\"webhook\",outcome=\"failed\"}";
    testkit::until("an attempt has failed", async || {
        common::metric(&base, failed).await >= 1.0
    })
    .await;
    edge.kill9();
    rx.restart().await;
    let (_edge, _base) = start_edge(dir.path());
    testkit::until("the offer arrives after the restart", async || {
        !rx.received().is_empty()
    })
    .await;
    let got = rx.received();
    assert_eq!(rx.bad_signatures(), 0);
    assert_eq!(got[0].body["data"]["surplus_id"], surplus["id"]);
    assert!(
        got.iter().all(|g| g.id == got[0].id),
        "every attempt carries one webhook-id: {got:?}"
    );
    eprintln!(
        "delivered {} time(s) after kill -9 and restart, id {}",
        got.len(),
        got[0].id
    );
}
