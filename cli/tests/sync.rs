//! Every committed edge event reaches PostgreSQL exactly once, in order,
//! across hub restarts, a partition, a lossy link and an edge killed with
//! SIGKILL — over real UDP, a real hub process and a real database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloud_hub::testing::pg;
use cloud_hub::testing::udp_proxy::{Faults, UdpProxy};
use common::*;

const LOSSY: Faults = Faults {
    drop: 0.02,
    delay_ms: (0, 3),
    reorder: 0.05,
    partitioned: false,
};

fn certs_for(edge: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cloud_hub::certs::init(dir.path(), &[], false).unwrap();
    cloud_hub::certs::issue_edge(dir.path(), &sync_protocol::EdgeId::new(edge).unwrap()).unwrap();
    dir
}

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

async fn until(done: &AtomicU64, n: u64) {
    while done.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the hub has acknowledged more than `seq`: the link is up and
/// streaming. Returns the new acknowledged mark.
async fn until_acked_above(c: &reqwest::Client, base: &str, seq: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let acked = sync_status(c, base)
            .await
            .and_then(|s| s["acked_seq"].as_u64())
            .unwrap_or(0);
        if acked > seq {
            return acked;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never streamed past {seq}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_posts_survive_hub_restarts_a_partition_and_a_lossy_link() {
    let db = pg::fresh_database().await;
    let certs = certs_for("jkt-1");
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
    until(&done, 1_500).await;
    let acked = until_acked_above(&c, &edge.base, 0).await;
    hub.terminate();
    gate.store(4_000, Ordering::Relaxed);
    hub = start_hub(&db.url, port, certs.path());
    // 2. A four-second partition.
    until(&done, 4_000).await;
    let acked = until_acked_above(&c, &edge.base, acked).await;
    proxy.partition(true);
    gate.store(6_500, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set(LOSSY);
    // 3. The hub killed with SIGKILL.
    until(&done, 6_500).await;
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
    let certs = certs_for("jkt-1");
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
        until(&done, 400).await;
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
    let certs = certs_for("jkt-1");
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
    let hub = start_hub(&db.url, port, certs.path());
    wait_caught_up(&c, &edge.base, "once the hub appears").await;
    let events = assert_hub_mirrors_edge(&db.url, "jkt-1", &data.join("edge.sqlite3")).await;
    assert!(events >= 602);
    drop(hub);
}
