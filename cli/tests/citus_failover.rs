//! The hub on a Citus cluster of its own (a coordinator and two workers,
//! each a real PostgreSQL) while an edge streams: a worker SIGKILLed → the
//! hub answers 503 from readiness, the edge keeps serving and buffers,
//! nothing is acknowledged that was not committed; the worker restarted →
//! the backlog drains exactly once. Then the same for the coordinator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use testkit::citus::CitusCluster;

/// Posts until `stop`, every answer a 201 (posting never waits on the hub).
fn keep_posting(
    c: reqwest::Client,
    base: String,
    provider: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let (s, v) = post(
                &c,
                format!("{base}/api/v1/surplus"),
                surplus_body(&provider, i),
            )
            .await
            .unwrap();
            assert_eq!(s, 201, "the edge serves whatever the database does: {v}");
            i += 1;
            done.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Polls `f` until it holds; a generous bound, so only a hang fails.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The hub's readiness: (status, error message if any).
async fn readiness(http: &str) -> (u16, String) {
    let Ok(r) = reqwest::get(format!("{http}/readyz")).await else {
        return (0, "no answer".into());
    };
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (
        status,
        body["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

async fn sync_field(c: &reqwest::Client, base: &str, field: &str) -> u64 {
    sync_status(c, base)
        .await
        .and_then(|s| s[field].as_u64())
        .unwrap_or(0)
}

/// Kills node `i` while posts keep coming; checks what the hub and the edge
/// do meanwhile; restarts it and waits until what the edge buffered has
/// been acknowledged. Returns the highest seq the edge saw acknowledged
/// while the node was down.
async fn outage(
    cluster: &CitusCluster,
    i: usize,
    http: &str,
    c: &reqwest::Client,
    base: &str,
    done: &AtomicU64,
    expect_message: &str,
) -> u64 {
    let node = cluster.server(i).unwrap();
    node.kill9().unwrap();
    eventually("readiness to fail", async || {
        let (s, m) = readiness(http).await;
        s == 503 && m.contains(expect_message)
    })
    .await;
    // The edge keeps answering posts; they wait in its outbox.
    let posted = done.load(Ordering::Relaxed);
    let committed = sync_field(c, base, "committed_seq").await;
    eventually("posts to go on and the backlog to grow", async || {
        done.load(Ordering::Relaxed) > posted + 100
            && sync_field(c, base, "committed_seq").await > committed + 100
            && sync_field(c, base, "backlog").await > 100
    })
    .await;
    let acked_while_down = sync_field(c, base, "acked_seq").await;
    let buffered = sync_field(c, base, "committed_seq").await;
    node.restart().unwrap();
    eventually("readiness to come back", async || {
        readiness(http).await.0 == 200
    })
    .await;
    eventually("what was buffered during the outage to drain", async || {
        sync_field(c, base, "acked_seq").await >= buffered
    })
    .await;
    acked_while_down
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_and_then_the_coordinator_killed_mid_stream_lose_nothing_and_apply_once() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(CitusCluster::start)
            .await
            .unwrap()
            .unwrap(),
    );
    let db = cluster.fresh_database().await;
    let certs = certs_for_edges(&["jkt-1"]);
    let hub = start_hub(&db.url, free_udp_port(), certs.path());
    let http = hub.banner.split("http on ").nth(1).unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let quic = hub.banner.split_whitespace().nth(2).unwrap().to_string();
    let cfg = edge_config(work.path(), &data, certs.path(), "jkt-1", &quic);
    let edge = start_edge(&cfg);
    let c = admin_client(&data);
    let provider = seed(&c, &edge.base, 3).await;
    assert_eq!(readiness(&http).await.0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let posting = keep_posting(
        c.clone(),
        edge.base.clone(),
        provider,
        stop.clone(),
        done.clone(),
    );
    eventually("the link to stream", async || {
        sync_field(&c, &edge.base, "acked_seq").await > 200
    })
    .await;

    // The worker holding the edge's log and progress.
    let hub_db = cloud_hub::db::connect(&db.url).await.unwrap();
    let home_port: i32 = hub_db
        .query_one(
            "SELECT s.nodeport FROM edges e, LATERAL (
                 SELECT nodeport FROM citus_shards
                 WHERE shardid = get_shard_id_for_distribution_column('edge_progress', e.home_region)) s
             WHERE e.edge_id = 'jkt-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(hub_db);
    let worker = (1..=2)
        .find(|i| i32::from(cluster.server(*i).unwrap().port()) == home_port)
        .unwrap();
    let acked = outage(
        &cluster,
        worker,
        &http,
        &c,
        &edge.base,
        &done,
        &format!("Citus workers do not answer: 127.0.0.1:{home_port}"),
    )
    .await;
    let high_water = |url: String| async move {
        let hub_db = cloud_hub::db::connect(&url).await.unwrap();
        let hw: i64 = hub_db
            .query_one(
                "SELECT high_water FROM edge_progress WHERE edge_id = 'jkt-1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        hw as u64
    };
    assert!(
        high_water(db.url.clone()).await >= acked,
        "every seq acknowledged during the outage was committed"
    );

    let acked = outage(
        &cluster,
        0,
        &http,
        &c,
        &edge.base,
        &done,
        "PostgreSQL is unreachable",
    )
    .await;
    assert!(high_water(db.url.clone()).await >= acked);

    stop.store(true, Ordering::Relaxed);
    posting.await.unwrap();
    let status = wait_caught_up(&c, &edge.base, "after both outages").await;
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
    assert_eq!(
        posted as u64,
        done.load(Ordering::Relaxed),
        "every 201 reached the hub once"
    );
    eprintln!("{events} events mirrored exactly once through both outages; {status}");
    drop(edge);
    drop(hub);
}
