//! Every committed edge event reaches PostgreSQL exactly once, in order,
//! across hub restarts, a partition, a lossy link and an edge killed with
//! SIGKILL — over real UDP, a real hub process and a real database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::json;
use testkit::pg;
use testkit::udp_proxy::{Faults, UdpProxy};

const LOSSY: Faults = Faults {
    drop: 0.02,
    delay_ms: (0, 3),
    reorder: 0.05,
    partitioned: false,
};

/// Posts `total` surplus from `workers` tasks, never beyond `gate`, pausing
/// `pause` between posts; counts the 201s in `done`.
#[allow(clippy::too_many_arguments)]
async fn post_all(
    c: reqwest::Client,
    base: String,
    provider: String,
    total: u64,
    workers: u64,
    pause: Duration,
    gate: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (c, base, provider, next, gate, done) = (
                c.clone(),
                base.clone(),
                provider.clone(),
                next.clone(),
                gate.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    while i >= gate.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let (s, v) = post(
                        &c,
                        format!("{base}/api/v1/surplus"),
                        surplus_body(&provider, i),
                    )
                    .await
                    .unwrap();
                    assert_eq!(s, 201, "posting never waits on the hub: {v}");
                    done.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn posted(done: &AtomicU64, n: u64) {
    testkit::until(&format!("{n} posts"), async || {
        done.load(Ordering::Relaxed) >= n
    })
    .await
}

/// Waits until the hub has acknowledged more than `seq`: the link is up and
/// streaming. Returns the new acknowledged mark.
async fn until_acked_above(c: &reqwest::Client, base: &str, seq: u64) -> u64 {
    let what = format!("the link to stream past {seq}");
    testkit::eventually(&what, async || {
        let s = sync_status(c, base).await?;
        s["acked_seq"].as_u64().filter(|acked| *acked > seq)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_posts_survive_hub_restarts_a_partition_and_a_lossy_link() {
    let db = pg::fresh_database().await;
    let certs = common::certs_for_edges(&["jkt-1"]);
    let port = free_udp_port();
    let mut hub = start_hub(&db.url, port, certs.path());
    let proxy = UdpProxy::start(format!("127.0.0.1:{port}").parse().unwrap(), 7)
        .await
        .unwrap();
    proxy.set(LOSSY);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let cfg = edge_config(
        work.path(),
        &data,
        certs.path(),
        "jkt-1",
        &proxy.addr().to_string(),
    );
    let edge = start_edge(&cfg);
    let c = admin_client(&data);
    let provider = seed(&c, &edge.base, 3).await;

    // Posting pauses at each checkpoint until the link is seen streaming;
    // each fault is injected as the gate reopens, so posts flow through it.
    let done = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(AtomicU64::new(1_500));
    let posting = tokio::spawn(post_all(
        c.clone(),
        edge.base.clone(),
        provider,
        10_000,
        16,
        Duration::from_millis(5),
        gate.clone(),
        done.clone(),
    ));
    // 1. A clean hub restart.
    posted(&done, 1_500).await;
    let acked = until_acked_above(&c, &edge.base, 0).await;
    hub.terminate();
    gate.store(4_000, Ordering::Relaxed);
    hub = start_hub(&db.url, port, certs.path());
    // 2. A four-second partition.
    posted(&done, 4_000).await;
    let acked = until_acked_above(&c, &edge.base, acked).await;
    proxy.partition(true);
    gate.store(6_500, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set(LOSSY);
    // 3. The hub killed with SIGKILL.
    posted(&done, 6_500).await;
    until_acked_above(&c, &edge.base, acked).await;
    hub.kill9();
    gate.store(10_000, Ordering::Relaxed);
    hub = start_hub(&db.url, port, certs.path());
    posting.await.unwrap();
    assert_eq!(done.load(Ordering::Relaxed), 10_000);

    let status = wait_caught_up(&c, &edge.base, "after the chaos").await;
    assert!(
        status["sessions"].as_u64().unwrap() >= 3,
        "the edge reconnected after each restart: {status}"
    );
    let events = assert_hub_mirrors_edge(&db.url, "jkt-1", &data.join("edge.sqlite3")).await;
    let hub_db = cloud_hub::db::connect(&db.url).await.unwrap();
    let posted: i64 = hub_db
        .query_one(
            "SELECT count(*) FROM event_log WHERE edge_id = 'jkt-1' AND kind = 'surplus_posted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(posted, 10_000, "exactly 10,000 postings at the hub");
    let rows: i64 = hub_db
        .query_one("SELECT count(*) FROM surplus", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 10_000);
    eprintln!("{events} events mirrored exactly once; {status}");
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_killed_mid_batch_still_delivers_exactly_once() {
    let db = pg::fresh_database().await;
    let certs = common::certs_for_edges(&["jkt-1"]);
    let port = free_udp_port();
    let _hub = start_hub(&db.url, port, certs.path());
    // A slow link keeps batches in flight when the edge dies.
    let proxy = UdpProxy::start(format!("127.0.0.1:{port}").parse().unwrap(), 11)
        .await
        .unwrap();
    proxy.set(Faults {
        delay_ms: (15, 40),
        ..Faults::default()
    });
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let cfg = edge_config(
        work.path(),
        &data,
        certs.path(),
        "jkt-1",
        &proxy.addr().to_string(),
    );
    let mut edge = start_edge(&cfg);
    let c = admin_client(&data);
    let provider = seed(&c, &edge.base, 2).await;
    let mut killed_with_backlog = 0;
    for round in 0..3u64 {
        let done = Arc::new(AtomicU64::new(0));
        let base = edge.base.clone();
        let posting = tokio::spawn({
            let (c, provider, done) = (c.clone(), provider.clone(), done.clone());
            async move {
                // Posts until the process dies under it.
                for i in 0.. {
                    match post(
                        &c,
                        format!("{base}/api/v1/surplus"),
                        surplus_body(&provider, round * 100_000 + i),
                    )
                    .await
                    {
                        Ok((201, _)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
            }
        });
        posted(&done, 400).await;
        // The link is up and streaming (this session acknowledged something)...
        let before = sync_status(&c, &edge.base)
            .await
            .and_then(|s| s["acked_seq"].as_u64())
            .unwrap_or(0);
        until_acked_above(&c, &edge.base, before).await;
        // ...and events are still on their way to the hub when the edge dies.
        let backlog = sync_status(&c, &edge.base)
            .await
            .and_then(|s| s["backlog"].as_u64())
            .unwrap_or(0);
        killed_with_backlog += u64::from(backlog > 0);
        edge.proc.kill9();
        let _ = posting.await;
        edge = start_edge(&cfg);
    }
    assert!(
        killed_with_backlog > 0,
        "at least one kill hit events still in flight to the hub"
    );
    wait_caught_up(&c, &edge.base, "after the restarts").await;
    drop(edge);
    let events = assert_hub_mirrors_edge(&db.url, "jkt-1", &data.join("edge.sqlite3")).await;
    eprintln!("{events} events mirrored exactly once across three kill -9s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_that_starts_before_its_hub_serves_alone_then_catches_up() {
    let db = pg::fresh_database().await;
    let certs = common::certs_for_edges(&["jkt-1"]);
    let port = free_udp_port();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let cfg = edge_config(
        work.path(),
        &data,
        certs.path(),
        "jkt-1",
        &format!("127.0.0.1:{port}"),
    );
    let edge = start_edge(&cfg);
    let c = admin_client(&data);
    let provider = seed(&c, &edge.base, 1).await;
    for i in 0..300 {
        let (s, v) = post(
            &c,
            format!("{}/api/v1/surplus", edge.base),
            surplus_body(&provider, i),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "the edge serves its city with no hub: {v}");
    }
    let status = sync_status(&c, &edge.base).await.unwrap();
    assert_eq!(status["connected"], false);
    assert_eq!(status["acked_seq"], 0);
    assert!(status["backlog"].as_u64().unwrap() >= 600, "{status}");
    // The lag keeps growing while the hub is away (it is measured from the
    // oldest unacknowledged event, not from the last session).
    let lag = |s: &serde_json::Value| s["lag_seconds"].as_f64().unwrap_or(0.0);
    let first = poll_status(&c, &edge.base, |s| lag(s) > 0.0).await;
    poll_status(&c, &edge.base, |s| lag(s) > lag(&first) + 1.0).await;

    let mut hub = start_hub(&db.url, port, certs.path());
    let caught_up = wait_caught_up(&c, &edge.base, "once the hub appears").await;
    assert_eq!(lag(&caught_up), 0.0, "{caught_up}");
    let events = assert_hub_mirrors_edge(&db.url, "jkt-1", &data.join("edge.sqlite3")).await;
    assert!(events >= 602);

    // Restarted with the hub gone, the edge remembers what was acknowledged:
    // no phantom backlog.
    hub.kill9();
    let mut edge = edge;
    edge.proc.terminate();
    let edge = start_edge(&cfg);
    let status = sync_status(&c, &edge.base).await.unwrap();
    assert_eq!(status["connected"], false);
    assert_eq!(
        status["acked_seq"].as_u64(),
        Some(events as u64),
        "{status}"
    );
    assert_eq!(status["backlog"], 0, "{status}");
}

/// Polls the edge's sync status until `ok` holds (generous deadline).
async fn poll_status(
    c: &reqwest::Client,
    base: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    testkit::eventually("the sync status to get there", async || {
        sync_status(c, base).await.filter(|s| ok(s))
    })
    .await
}

/// Every kind of lifecycle event — offers accepted and declined, direct
/// claims superseding offers, pickups, deliveries — reaches the hub through
/// the real link and a hub restart, and the hub's views (surplus status,
/// version, claimant, delivered mass; every offer's outcome) equal the edge's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_declines_and_deliveries_reach_the_hub_views() {
    let db = pg::fresh_database().await;
    let certs = common::certs_for_edges(&["jkt-1"]);
    let port = free_udp_port();
    let mut hub = start_hub(&db.url, port, certs.path());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let cfg = edge_config(
        work.path(),
        &data,
        certs.path(),
        "jkt-1",
        &format!("127.0.0.1:{port}"),
    );
    let edge = start_edge(&cfg);
    let c = admin_client(&data);
    let provider = seed(&c, &edge.base, 4).await;
    let base = edge.base.clone();
    let act = |path: String, body: serde_json::Value| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let (s, v) = post(&c, format!("{base}/api/v1{path}"), body)
                .await
                .unwrap();
            assert_eq!(s, 200, "{path}: {v}");
            v
        }
    };
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..60u64 {
        if i == 30 {
            // Half-way, the hub dies and comes back.
            wait_caught_up(&c, &base, "before the hub restart").await;
            hub.kill9();
            hub = start_hub(&db.url, port, certs.path());
        }
        let (s, v) = post(
            &c,
            format!("{base}/api/v1/surplus"),
            surplus_body(&provider, i),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        let offered = v["offer"]["recipient_id"].as_str().unwrap().to_string();
        let status = match i % 5 {
            0 => {
                act(
                    format!("/offers/{id}/accept"),
                    json!({"recipient_id": offered}),
                )
                .await;
                act(
                    format!("/surplus/{id}/pickup"),
                    json!({"recipient_id": offered}),
                )
                .await;
                act(
                    format!("/surplus/{id}/deliver"),
                    json!({"recipient_id": offered, "delivered_kg": 2.25}),
                )
                .await["status"]
                    .clone()
            }
            1 => {
                let next = act(
                    format!("/offers/{id}/decline"),
                    json!({"recipient_id": offered}),
                )
                .await;
                let again = next["offer"]["recipient_id"].as_str().unwrap().to_string();
                assert_ne!(again, offered, "re-offered elsewhere");
                act(
                    format!("/offers/{id}/accept"),
                    json!({"recipient_id": again}),
                )
                .await["status"]
                    .clone()
            }
            2 => {
                // Someone else claims it directly: the pending offer is superseded.
                let rs = c
                    .get(format!("{base}/api/v1/surplus/{id}"))
                    .send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap();
                let (lat, lon) = (rs["lat"].as_f64().unwrap(), rs["lon"].as_f64().unwrap());
                let (s, other) = post(&c, format!("{base}/api/v1/recipients"), json!({"name": format!("Walk-in {i}"),
                    "lat": lat, "lon": lon, "capacity_kg_per_day": 100.0, "accepted_food_types": ["bakery"],
                    "contact_phone": "+62 21 555 0000", "contact_email": "w@example.org"})).await.unwrap();
                assert_eq!(s, 201, "{other}");
                act(
                    format!("/surplus/{id}/claim"),
                    json!({"recipient_id": other["id"], "version": rs["version"]}),
                )
                .await["status"]
                    .clone()
            }
            3 => {
                act(
                    format!("/offers/{id}/accept"),
                    json!({"recipient_id": offered}),
                )
                .await;
                act(
                    format!("/surplus/{id}/pickup"),
                    json!({"recipient_id": offered}),
                )
                .await["status"]
                    .clone()
            }
            _ => v["status"].clone(),
        };
        *kinds
            .entry(status.as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        kinds.keys().cloned().collect::<Vec<_>>(),
        ["claimed", "delivered", "offered", "picked_up"],
        "{kinds:?}"
    );
    wait_caught_up(&c, &base, "after the lifecycle").await;
    let events = assert_hub_mirrors_edge(&db.url, "jkt-1", &data.join("edge.sqlite3")).await;
    let (_, hub_surplus, hub_offers) = hub_state(&db.url, "jkt-1").await;
    let delivered: i64 = hub_surplus.iter().filter_map(|r| r.4).sum();
    assert_eq!(delivered, 12 * 2_250, "12 deliveries of 2.25 kg");
    for outcome in ["accepted", "declined", "superseded", "pending"] {
        assert!(
            hub_offers.iter().any(|o| o.2 == outcome),
            "an offer {outcome} in the hub's history"
        );
    }
    eprintln!("{events} lifecycle events mirrored");
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contacts_reach_postgres_sealed_and_erasure_and_audit_reach_the_hub() {
    let db = pg::fresh_database().await;
    let certs = common::certs_for_edges(&["jkt-1"]);
    let port = free_udp_port();
    let _hub = start_hub(&db.url, port, certs.path());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let cfg = edge_config(
        work.path(),
        &data,
        certs.path(),
        "jkt-1",
        &format!("127.0.0.1:{port}"),
    );
    let edge = start_edge(&cfg);
    let c = admin_client(&data);
    let base = edge.base.clone();
    let phone = "+62 813 9999 4242";
    let email = "ibu.ratna@dapur-ratna.example";
    let (s, p) = post(
        &c,
        format!("{base}/api/v1/providers"),
        json!({"name": "Dapur Ratna", "lat": -6.2, "lon": 106.816,
               "contact_phone": phone, "contact_email": email}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    let provider = seed(&c, &base, 2).await;
    let (s, v) = post(
        &c,
        format!("{base}/api/v1/surplus"),
        surplus_body(&provider, 1),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{v}");
    wait_caught_up(&c, &base, "the registrations").await;

    // The hub holds the sealed bytes the edge holds, and pg_dump finds no
    // plaintext contact anywhere in the database.
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let puuid = uuid::Uuid::parse_str(&pid).unwrap();
    let hub_sealed: Vec<u8> = client
        .query_one(
            "SELECT contact_sealed FROM providers WHERE id = $1",
            &[&puuid],
        )
        .await
        .unwrap()
        .get(0);
    let edge_sealed: Vec<u8> = rusqlite::Connection::open(data.join("edge.sqlite3"))
        .unwrap()
        .query_row(
            "SELECT contact_sealed FROM providers WHERE id = ?1",
            [puuid.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hub_sealed, edge_sealed);
    assert!(!hub_sealed.is_empty());
    let dump = pg::pg_dump(&db).await.expect("pg_dump");
    let has = |needle: &str| dump.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("Dapur Ratna"), "the dump holds the data");
    assert!(!has(phone) && !has(email), "plaintext contact in pg_dump");
    assert!(!has("9999 4242") && !has("dapur-ratna"));

    // Erasure reaches the hub: the row and the stored events lose the name.
    let (s, v) = post(&c, format!("{base}/api/v1/subjects/{pid}/erase"), json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    wait_caught_up(&c, &base, "the erasure").await;
    let row = client
        .query_one(
            "SELECT name, contact_sealed, erased_at IS NOT NULL FROM providers WHERE id = $1",
            &[&puuid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "[erased]");
    assert!(row.get::<_, Vec<u8>>(1).is_empty());
    assert!(row.get::<_, bool>(2));
    let dump = pg::pg_dump(&db).await.expect("pg_dump");
    assert!(
        !dump.windows(11).any(|w| w == b"Dapur Ratna"),
        "the name is gone from every table and stored event"
    );
    // Every audit record the edge wrote is at the hub.
    let edge_audits: i64 = rusqlite::Connection::open(data.join("edge.sqlite3"))
        .unwrap()
        .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    let hub_audits: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE edge_id = 'jkt-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(edge_audits >= 5);
    assert_eq!(hub_audits, edge_audits);
    let erase_at_hub: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'subject.erase' AND status = 200",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(erase_at_hub, 1);
}
