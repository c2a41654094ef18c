//! `pahlawan bench-sync`: how fast one edge's events reach PostgreSQL, and
//! how far behind the hub is while the edge serves a steady load — beside raw
//! PostgreSQL inserts measured in the same run. It lives in the binary
//! because it is the one place where an edge and a hub meet in one process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use cloud_hub::config::TlsFiles;
use cloud_hub::{Hub, HubConfig, certs};
use edge_node::commands::{NewProvider, NewRecipient, NewSurplus};
use edge_node::config::HubLinkConfig;
use edge_node::{Edge, EdgeConfig, StartOptions};
use sync_protocol::{Contact, FoodType, FoodTypeSet, GeoPoint, Mass};

pub struct SyncBenchConfig {
    pub database_url: String,
    /// Surplus posted before the edge first meets the hub (2 events each).
    pub backlog_posts: u64,
    /// Steady load while lag is measured (posts/s, over HTTP).
    pub rate: u32,
    pub duration: Duration,
}

fn contact() -> Contact {
    Contact {
        phone: "+62 21 555 0000".into(),
        email: "bench@example.org".into(),
    }
}

fn point(i: u64) -> GeoPoint {
    GeoPoint::new(
        -6.2 + (i % 101) as f64 * 0.001,
        106.85 + (i % 103) as f64 * 0.001,
    )
    .unwrap_or_else(|_| GeoPoint::new(-6.2, 106.85).expect("a valid point"))
}

fn edge_config(dir: &std::path::Path, hub: Option<HubLinkConfig>) -> EdgeConfig {
    let mut cfg = EdgeConfig {
        edge_id: "bench-edge".into(),
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hub,
        ..EdgeConfig::default()
    };
    pahlawan_cli::bench::unlimited(&mut cfg);
    cfg
}

/// Posts `n` surplus in-process (no hub yet): a backlog to ship.
async fn fill(dir: &std::path::Path, n: u64) -> anyhow::Result<(u64, String)> {
    let edge = Edge::start(edge_config(dir, None), StartOptions::default()).await?;
    let h = edge.writes().clone();
    let provider = h
        .register_provider(
            NewProvider {
                name: "Bench".into(),
                location: point(0),
                contact: contact(),
            },
            None,
        )
        .await?
        .map_err(|r| anyhow::anyhow!("provider refused: {:?}", r.reason))?;
    for i in 0..50 {
        h.register_recipient(
            NewRecipient {
                name: format!("r{i}"),
                location: point(i * 7),
                capacity_per_day: Mass::from_grams(1_000_000_000),
                accepted_food_types: FoodTypeSet::all(),
                is_fallback: false,
                contact: contact(),
            },
            None,
        )
        .await?
        .map_err(|r| anyhow::anyhow!("recipient refused: {:?}", r.reason))?;
    }
    let expires = edge_node::clock::Clock::now(&edge_node::clock::SystemClock)
        + sync_protocol::Duration::from_mins(600);
    let mut i = 0;
    while i < n {
        let chunk = (n - i).min(4_096);
        let posts = (i..i + chunk).map(|k| {
            h.post_surplus(
                NewSurplus {
                    provider_id: provider.id,
                    location: point(k),
                    quantity: Mass::from_grams(5_000),
                    food_type: FoodType::Bakery,
                    expires_at: expires,
                    description: String::new(),
                },
                None,
                None,
                None,
            )
        });
        // Submitted in order, awaited together: the writer group-commits them.
        for r in futures::future::join_all(posts).await {
            r?.map_err(|e| anyhow::anyhow!("post refused: {:?}", e.reason))?;
        }
        i += chunk;
    }
    let committed = edge.committed_seq();
    drop(h);
    edge.shutdown().await;
    Ok((committed, provider.id.to_string()))
}

async fn wait_acked(edge: &Edge, target: u64, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let acked = edge.link_status().acked_seq;
        if acked >= target {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "the hub acknowledged only {acked} of {target} events"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Raw PostgreSQL baselines: single-row autocommit inserts from 8
/// connections, and the same rows in UNNEST batches of 1,000.
async fn pg_baselines(url: &str) -> anyhow::Result<(f64, f64)> {
    let setup = cloud_hub::db::connect(url).await?;
    setup
        .batch_execute("DROP TABLE IF EXISTS bench_rows; CREATE TABLE bench_rows (id BIGSERIAL PRIMARY KEY, edge TEXT, seq BIGINT, payload BYTEA)")
        .await?;
    let window = Duration::from_secs(3);
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let c = cloud_hub::db::connect(&url).await?;
            let stmt = c
                .prepare("INSERT INTO bench_rows (edge, seq, payload) VALUES ($1, $2, $3)")
                .await?;
            let (started, mut n) = (Instant::now(), 0i64);
            while started.elapsed() < window {
                c.execute(&stmt, &[&"e", &(w * 1_000_000 + n), &vec![7u8; 160]])
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut single = 0;
    for t in tasks {
        single += t.await??;
    }
    let c = cloud_hub::db::connect(url).await?;
    let (started, mut batched) = (Instant::now(), 0u64);
    while started.elapsed() < window {
        let seqs: Vec<i64> = (0..1_000).map(|k| batched as i64 + k).collect();
        let payloads: Vec<Vec<u8>> = vec![vec![7u8; 160]; 1_000];
        c.execute(
            "INSERT INTO bench_rows (edge, seq, payload) SELECT 'b', * FROM UNNEST($1::bigint[], $2::bytea[])",
            &[&seqs, &payloads],
        )
        .await?;
        batched += 1_000;
    }
    setup.batch_execute("DROP TABLE bench_rows").await?;
    Ok((
        single as f64 / window.as_secs_f64(),
        batched as f64 / started.elapsed().as_secs_f64(),
    ))
}

/// A hub on loopback over `database_url`, with the certificates in `certs_dir`.
async fn start_hub(database_url: &str, certs_dir: &std::path::Path) -> anyhow::Result<Hub> {
    Ok(Hub::start(HubConfig {
        database_url: database_url.to_string(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: certs_dir.join(certs::CA_CERT),
            cert: certs_dir.join(certs::HUB_CERT),
            key: certs_dir.join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    })
    .await?)
}

/// The bench edge's link to `hub`: big batches, quick reconnects.
fn link_config(hub: &Hub, certs_dir: &std::path::Path) -> HubLinkConfig {
    HubLinkConfig {
        address: hub.quic_addr().to_string(),
        server_name: certs::DEFAULT_HUB_NAME.into(),
        ca_cert: certs_dir.join(certs::CA_CERT),
        cert: certs_dir.join("edge-bench-edge.crt"),
        key: certs_dir.join("edge-bench-edge.key"),
        reconnect_min_ms: 50,
        reconnect_max_ms: 1_000,
        max_batch_events: sync_protocol::session::DEFAULT_MAX_BATCH_EVENTS,
        max_in_flight: sync_protocol::session::DEFAULT_MAX_IN_FLIGHT,
    }
}

pub async fn run(cfg: SyncBenchConfig) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let certs_dir = dir.path().join("certs");
    certs::init(&certs_dir, &[], false)?;
    certs::issue_edge(&certs_dir, &sync_protocol::EdgeId::new("bench-edge")?)?;
    let (single_rows, batched_rows) = pg_baselines(&cfg.database_url)
        .await
        .context("PostgreSQL baselines")?;
    let hub = start_hub(&cfg.database_url, &certs_dir).await?;
    let data = dir.path().join("edge");
    let (backlog, provider) = fill(&data, cfg.backlog_posts).await?;

    // 1. Ingest: the whole backlog, as fast as the link and PostgreSQL go.
    let link = link_config(&hub, &certs_dir);
    let config = edge_config(&data, Some(link));
    let edge = Edge::start(config.clone(), StartOptions::default()).await?;
    let ingest = wait_acked(&edge, backlog, Duration::from_secs(600)).await?;
    let (apply_p50, apply_p99, batches) = {
        let a = hub.stats().apply_ns.lock();
        (
            a.value_at_quantile(0.5) as f64 / 1e6,
            a.value_at_quantile(0.99) as f64 / 1e6,
            a.len(),
        )
    };

    // 2. Lag under a steady load over HTTP.
    hub.stats().lag_ms.lock().reset();
    let addr = edge
        .local_addr()
        .ok_or_else(|| anyhow::anyhow!("the edge is not serving HTTP"))?;
    let load_cfg = pahlawan_cli::bench::BenchConfig {
        duration: cfg.duration,
        warmup: Duration::from_secs(1),
        concurrency: 32,
        rate: Some(cfg.rate),
        recipients: 0,
    };
    let as_provider =
        pahlawan_cli::bench::token(&config, edge_node::auth::Role::Provider, &provider)?;
    let load = pahlawan_cli::bench::post_load(&load_cfg, addr, &provider, &as_provider).await?;
    let target = edge.committed_seq();
    wait_acked(&edge, target, Duration::from_secs(120)).await?;
    let lag = hub.stats().lag_ms.lock().clone();
    edge.shutdown().await;
    hub.shutdown().await;

    let q = |p: f64| lag.value_at_quantile(p) as f64;
    Ok(format!(
        "### `pahlawan bench-sync`\n\n\
         Machine: {}\n\n\
         | measurement | result |\n|---|---|\n\
         | backlog shipped edge → hub → PostgreSQL | {backlog} events in {:.2} s = **{:.0} events/s** |\n\
         | hub apply per batch (one transaction) | p50 {apply_p50:.2} ms, p99 {apply_p99:.2} ms over {batches} batches |\n\
         | steady load served by the edge (HTTP) | {:.0} posts/s, p99 {:.2} ms, {} errors |\n\
         | replication lag per event (commit on edge → commit at hub) | p50 {:.0} ms, p95 {:.0} ms, p99 **{:.0} ms**, max {:.0} ms over {} events |\n\
         | baseline: PostgreSQL single-row autocommit inserts, 8 connections | {single_rows:.0} rows/s |\n\
         | baseline: PostgreSQL `UNNEST` inserts, 1,000 rows per statement | {batched_rows:.0} rows/s |\n",
        pahlawan_cli::bench::machine(),
        ingest.as_secs_f64(),
        backlog as f64 / ingest.as_secs_f64().max(1e-9),
        load.per_sec(),
        load.latency_us.value_at_quantile(0.99) as f64 / 1e3,
        load.errors,
        q(0.5),
        q(0.95),
        q(0.99),
        lag.max() as f64,
        lag.len(),
    ))
}
