//! `pahlawan bench-sync`: how fast edges' events reach PostgreSQL — one
//! edge's backlog, then the same number of events from several edges in
//! different cities at once — and how far behind the hub is while one edge
//! serves a steady load, beside raw PostgreSQL inserts measured in the same
//! run. `scripts/bench-sync` runs it against a plain PostgreSQL and a Citus
//! cluster. It lives in the binary because it is the one place where edges
//! and a hub meet in one process.

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
    /// What the database is, for the report's title.
    pub label: String,
    /// Surplus posted before the edges first meet the hub (2 events each),
    /// shared among the edges of each ingest scenario.
    pub backlog_posts: u64,
    /// Ingest scenarios: this many edges at once (cities of their own).
    pub edges: Vec<usize>,
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

/// Where the edges are: a city each (the first is Jakarta, the edges'
/// default), most of them regions of their own, so under Citus their logs
/// spread over the shards and workers.
pub const CITIES: [(f64, f64); 10] = [
    (-6.2, 106.85),  // Jakarta
    (-7.25, 112.75), // Surabaya
    (3.59, 98.67),   // Medan
    (-5.14, 119.42), // Makassar
    (-8.65, 115.22), // Denpasar
    (-0.95, 100.35), // Padang
    (-3.0, 104.75),  // Palembang
    (1.47, 124.84),  // Manado
    (-2.53, 140.72), // Jayapura
    (-10.17, 123.6), // Kupang
];

/// Most edges one scenario starts.
pub const MAX_EDGES: usize = CITIES.len();

fn point(city: usize, i: u64) -> GeoPoint {
    let (lat, lon) = CITIES[city % CITIES.len()];
    GeoPoint::new(
        lat + (i % 101) as f64 * 0.001,
        lon + (i % 103) as f64 * 0.001,
    )
    .unwrap_or_else(|_| GeoPoint::new(-6.2, 106.85).expect("a valid point"))
}

/// The edge of `city` in the scenario with `n` edges (each scenario's edges
/// are new to the hub).
fn edge_id(n: usize, city: usize) -> String {
    format!("bench-{n}-{city}")
}

fn edge_config(
    dir: &std::path::Path,
    id: &str,
    city: usize,
    hub: Option<HubLinkConfig>,
) -> EdgeConfig {
    let (lat, lon) = CITIES[city % CITIES.len()];
    let mut cfg = EdgeConfig {
        edge_id: id.to_string(),
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hub,
        ..EdgeConfig::default()
    };
    // Covers both the backlog's spot (centre + 0..0.1°) and the HTTP load's
    // bodies (centre ± 0.15°): a post outside the edge's cells is refused.
    cfg.cells.bbox = [lat - 0.2, lon - 0.2, lat + 0.3, lon + 0.3];
    pahlawan_cli::bench::unlimited(&mut cfg);
    cfg
}

/// Posts `n` surplus in-process (no hub yet) in `city`: a backlog to ship.
async fn fill(
    dir: &std::path::Path,
    id: &str,
    city: usize,
    n: u64,
) -> anyhow::Result<(u64, String)> {
    let edge = Edge::start(edge_config(dir, id, city, None), StartOptions::default()).await?;
    let h = edge.writes().clone();
    let provider = h
        .register_provider(
            NewProvider {
                name: "Bench".into(),
                location: point(city, 0),
                address: String::new(),
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
                location: point(city, i * 7),
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
                    location: point(city, k),
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

fn link(hub: &Hub, certs_dir: &std::path::Path, id: &str) -> HubLinkConfig {
    HubLinkConfig {
        address: hub.quic_addr().to_string(),
        server_name: certs::DEFAULT_HUB_NAME.into(),
        ca_cert: certs_dir.join(certs::CA_CERT),
        cert: certs_dir.join(format!("edge-{id}.crt")),
        key: certs_dir.join(format!("edge-{id}.key")),
        reconnect_min_ms: 50,
        reconnect_max_ms: 1_000,
        max_batch_events: sync_protocol::session::DEFAULT_MAX_BATCH_EVENTS,
        max_in_flight: sync_protocol::session::DEFAULT_MAX_IN_FLIGHT,
    }
}

/// One ingest scenario's figures.
struct Ingest {
    edges: usize,
    events: u64,
    took: Duration,
    apply_p50_ms: f64,
    apply_p99_ms: f64,
    batches: u64,
}

/// `n` edges, each with its share of `posts` committed while the hub was
/// away, connect at once; the time until the hub has acknowledged them all.
/// The first edge (Jakarta) is handed back, still running, with its
/// provider's id.
async fn ingest(
    hub: &Hub,
    certs_dir: &std::path::Path,
    base: &std::path::Path,
    n: usize,
    posts: u64,
) -> anyhow::Result<(Ingest, Edge, String)> {
    let mut filled = Vec::with_capacity(n);
    for city in 0..n {
        let id = edge_id(n, city);
        certs::issue_edge(certs_dir, &sync_protocol::EdgeId::new(&id)?)?;
        let data = base.join(&id);
        let (committed, provider) = fill(&data, &id, city, posts / n as u64).await?;
        filled.push((data, committed, provider));
    }
    hub.stats().apply_ns.lock().reset();
    let started = Instant::now();
    let mut edges = Vec::with_capacity(n);
    for (city, (data, _, _)) in filled.iter().enumerate() {
        let id = edge_id(n, city);
        let cfg = edge_config(data, &id, city, Some(link(hub, certs_dir, &id)));
        edges.push(Edge::start(cfg, StartOptions::default()).await?);
    }
    for (edge, (_, committed, _)) in edges.iter().zip(&filled) {
        wait_acked(edge, *committed, Duration::from_secs(900)).await?;
    }
    let took = started.elapsed();
    let a = hub.stats().apply_ns.lock().clone();
    let mut edges = edges.into_iter();
    let first = edges
        .next()
        .ok_or_else(|| anyhow::anyhow!("no edge in the scenario"))?;
    for e in edges {
        e.shutdown().await;
    }
    let figures = Ingest {
        edges: n,
        events: filled.iter().map(|f| f.1).sum(),
        took,
        apply_p50_ms: a.value_at_quantile(0.5) as f64 / 1e6,
        apply_p99_ms: a.value_at_quantile(0.99) as f64 / 1e6,
        batches: a.len(),
    };
    let provider = filled.swap_remove(0).2;
    Ok((figures, first, provider))
}

fn start_hub_config(database_url: &str, certs_dir: &std::path::Path) -> HubConfig {
    HubConfig {
        database_url: database_url.to_string(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: certs_dir.join(certs::CA_CERT),
            cert: certs_dir.join(certs::HUB_CERT),
            key: certs_dir.join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    }
}

pub async fn run(cfg: SyncBenchConfig) -> anyhow::Result<String> {
    anyhow::ensure!(
        cfg.edges.iter().all(|n| (1..=MAX_EDGES).contains(n)),
        "--edges: each scenario has 1 to {MAX_EDGES} edges"
    );
    let dir = tempfile::tempdir()?;
    let certs_dir = dir.path().join("certs");
    certs::init(&certs_dir, &[], false)?;
    let (single_rows, batched_rows) = pg_baselines(&cfg.database_url)
        .await
        .context("PostgreSQL baselines")?;
    let hub = Hub::start(start_hub_config(&cfg.database_url, &certs_dir)).await?;

    // 1. Ingest: each scenario's backlogs, as fast as the links and the
    //    database go. The last scenario's Jakarta edge serves the load below.
    let mut scenarios = Vec::new();
    let mut kept: Option<(Edge, String)> = None;
    for n in &cfg.edges {
        let (figures, edge, provider) =
            ingest(&hub, &certs_dir, dir.path(), *n, cfg.backlog_posts).await?;
        scenarios.push(figures);
        if let Some((old, _)) = kept.replace((edge, provider)) {
            old.shutdown().await;
        }
    }
    let (edge, provider) = kept.ok_or_else(|| anyhow::anyhow!("no ingest scenario"))?;
    let lag = steady_lag(&hub, &edge, &provider, &cfg).await?;
    edge.shutdown().await;
    hub.shutdown().await;
    Ok(report(&cfg, &scenarios, &lag, single_rows, batched_rows))
}

/// Lag under a steady load over HTTP, from one edge.
async fn steady_lag(
    hub: &Hub,
    edge: &Edge,
    provider: &str,
    cfg: &SyncBenchConfig,
) -> anyhow::Result<(
    pahlawan_cli::bench::LoadResult,
    hdrhistogram::Histogram<u64>,
)> {
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
    let config = edge.config().clone();
    let as_provider =
        pahlawan_cli::bench::token(&config, edge_node::auth::Role::Provider, provider)?;
    let load = pahlawan_cli::bench::post_load(&load_cfg, addr, provider, &as_provider).await?;
    let target = edge.committed_seq();
    wait_acked(edge, target, Duration::from_secs(120)).await?;
    let lag = hub.stats().lag_ms.lock().clone();
    Ok((load, lag))
}

fn report(
    cfg: &SyncBenchConfig,
    scenarios: &[Ingest],
    (load, lag): &(
        pahlawan_cli::bench::LoadResult,
        hdrhistogram::Histogram<u64>,
    ),
    single_rows: f64,
    batched_rows: f64,
) -> String {
    let mut out = format!(
        "### `pahlawan bench-sync` — {}\n\nMachine: {}\n\n\
         | ingest (backlogs committed while the hub was away) | events | seconds | events/s | apply p50 / p99 ms | batches |\n\
         |---|---|---|---|---|---|\n",
        cfg.label,
        pahlawan_cli::bench::machine()
    );
    for s in scenarios {
        let who = if s.edges == 1 {
            "1 edge".to_string()
        } else {
            format!("{} edges at once (a city each)", s.edges)
        };
        out.push_str(&format!(
            "| {who} | {} | {:.2} | **{:.0}** | {:.2} / {:.2} | {} |\n",
            s.events,
            s.took.as_secs_f64(),
            s.events as f64 / s.took.as_secs_f64().max(1e-9),
            s.apply_p50_ms,
            s.apply_p99_ms,
            s.batches
        ));
    }
    let q = |p: f64| lag.value_at_quantile(p) as f64;
    out.push_str(&format!(
        "\n| steady load on one edge | result |\n|---|---|\n\
         | posts served by the edge (HTTP, open loop) | {:.0} posts/s, p99 {:.2} ms, {} errors |\n\
         | replication lag per event (commit on edge → commit at hub) | p50 {:.0} ms, p95 {:.0} ms, p99 **{:.0} ms**, max {:.0} ms over {} events |\n\
         | baseline: single-row autocommit inserts, 8 connections | {single_rows:.0} rows/s |\n\
         | baseline: `UNNEST` inserts, 1,000 rows per statement | {batched_rows:.0} rows/s |\n",
        load.per_sec(),
        load.latency_us.value_at_quantile(0.99) as f64 / 1e3,
        load.errors,
        q(0.5),
        q(0.95),
        q(0.99),
        lag.max() as f64,
        lag.len(),
    ));
    out
}
