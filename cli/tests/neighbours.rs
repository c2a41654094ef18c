//! The hub sends an edge the recipients of its neighbouring cells, so
//! matching works across the border between two edges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{in_minutes, post, sync_status};
use edge_node::config::HubLinkConfig;
use edge_node::{Edge, EdgeConfig, StartOptions};
use s2::cellid::CellID;
use serde_json::{Value, json};
use testkit::{pg, until};

async fn edge(
    name: &str,
    cells: &[u64],
    data: &std::path::Path,
    hub: HubLinkConfig,
) -> (Edge, String) {
    let mut cfg = EdgeConfig {
        edge_id: name.into(),
        data_dir: data.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hub: Some(hub),
        ..EdgeConfig::default()
    };
    cfg.cells.tokens = cells.iter().map(|c| edge_node::cells::token(*c)).collect();
    cfg.matching.radius_km = 60.0;
    cfg.rate_limits.admin_per_minute = 1_000_000;
    let e = Edge::start(cfg, StartOptions::default()).await.unwrap();
    let base = format!("http://{}", e.local_addr().unwrap());
    (e, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recipients_across_the_border_are_matched() {
    let db = pg::fresh_database().await;
    let dir = common::certs_for_edges(&["edge-a", "edge-b"]);
    let hub = common::hub_in_process(&db.url, dir.path(), |c| c.registry_refresh_secs = 1).await;

    // Edge A owns one level-9 cell over central Jakarta; edge B its neighbours.
    let a_cell = CellID::from(s2::latlng::LatLng::from_degrees(-6.2, 106.82)).parent(9);
    let b_cells: Vec<u64> = a_cell.all_neighbors(9).iter().map(|c| c.0).collect();
    let data = tempfile::tempdir().unwrap();
    let (b, b_base) = edge(
        "edge-b",
        &b_cells,
        &data.path().join("b"),
        common::hub_link(&hub, dir.path(), "edge-b"),
    )
    .await;
    let c = common::admin_client(&data.path().join("b"));
    let b_spot = edge_node::cells::center(b_cells[0]).unwrap();
    let (s, r) = post(&c, format!("{b_base}/api/v1/recipients"), json!({"name": "Across the border",
        "lat": b_spot.lat(), "lon": b_spot.lon(), "capacity_kg_per_day": 500.0, "accepted_food_types": ["bakery"],
        "contact_phone": "+62 21 555 0000", "contact_email": "border@example.org"})).await.unwrap();
    assert_eq!(s, 201, "{r}");
    let foreign = r["id"].as_str().unwrap().to_string();
    until("edge B synced", async || {
        sync_status(&c, &b_base)
            .await
            .is_some_and(|s| s["backlog"] == 0 && s["acked_seq"].as_u64() > Some(0))
    })
    .await;

    let (a, a_base) = edge(
        "edge-a",
        &[a_cell.0],
        &data.path().join("a"),
        common::hub_link(&hub, dir.path(), "edge-a"),
    )
    .await;
    let c = common::admin_client(&data.path().join("a"));
    until("edge A imported its neighbours", async || {
        sync_status(&c, &a_base)
            .await
            .is_some_and(|s| s["neighbours_imported"].as_u64() >= Some(1))
    })
    .await;

    // A's only candidate lives in B's cell: the post is offered across the border.
    let a_spot = edge_node::cells::center(a_cell.0).unwrap();
    let (s, p) = post(
        &c,
        format!("{a_base}/api/v1/providers"),
        json!({"name": "Warung", "lat": a_spot.lat(),
        "lon": a_spot.lon(), "contact_phone": "+62 21 555 1234", "contact_email": "w@example.org"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{p}");
    let (s, surplus) = post(&c, format!("{a_base}/api/v1/surplus"), json!({"provider_id": p["id"], "lat": a_spot.lat(),
        "lon": a_spot.lon(), "quantity_kg": 4.0, "food_type": "bakery", "expires_at": in_minutes(300)})).await.unwrap();
    assert_eq!(s, 201, "{surplus}");
    assert_eq!(
        surplus["offer"]["recipient_id"],
        Value::String(foreign.clone())
    );

    // Importing is not an event of A's: A's outbox holds only its own
    // provider, surplus and offer (and the audit records of the two calls),
    // and the hub has the recipient once.
    until("edge A synced", async || {
        sync_status(&c, &a_base)
            .await
            .is_some_and(|s| s["backlog"] == 0 && s["acked_seq"] == 3 + 2)
    })
    .await;
    let hub_db = cloud_hub::db::connect(&db.url).await.unwrap();
    let owners: Vec<String> = hub_db
        .query(
            "SELECT edge_id FROM recipients WHERE id = $1",
            &[&uuid::Uuid::parse_str(&foreign).unwrap()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec!["edge-b".to_string()]);

    // Erased at its owner (B), the recipient is forgotten by its neighbour
    // (A) too: gone from A's registry and never offered again.
    let cb = common::admin_client(&data.path().join("b"));
    let (s, v) = post(
        &cb,
        format!("{b_base}/api/v1/subjects/{foreign}/erase"),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    until("edge A forgot the erased neighbour", async || {
        c.get(format!("{a_base}/api/v1/recipients/{foreign}"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 404)
    })
    .await;
    let (s, again) = post(&c, format!("{a_base}/api/v1/surplus"), json!({"provider_id": p["id"], "lat": a_spot.lat(),
        "lon": a_spot.lon(), "quantity_kg": 4.0, "food_type": "bakery", "expires_at": in_minutes(300)})).await.unwrap();
    assert_eq!(s, 201, "{again}");
    assert!(
        again["offer"].is_null(),
        "not offered to an erased recipient: {again}"
    );
    let name: String = rusqlite::Connection::open(data.path().join("a").join("edge.sqlite3"))
        .unwrap()
        .query_row(
            "SELECT name FROM recipients WHERE id = ?1",
            [uuid::Uuid::parse_str(&foreign)
                .unwrap()
                .as_bytes()
                .as_slice()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(name, "[erased]", "its name is gone from A's database");
    a.shutdown().await;
    b.shutdown().await;
    hub.shutdown().await;
}
