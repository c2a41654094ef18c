//! `pahlawan bench`: drives `POST /api/v1/surplus` over real HTTP against an
//! in-process edge on a temporary SQLite file — plain HTTP, then HTTPS to
//! the same edge with the same load generator — and measures two baselines in
//! the same run on the same machine: an empty axum handler behind the same
//! load generator, and raw batched SQLite inserts with `synchronous=FULL`.
//! Figures are throughput and p50/p95/p99; this is a measurement, not a test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use bytes_pool::BodyPool;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_rustls::TlsConnector;

use edge_node::api::dto::rfc3339;
use edge_node::auth::Role;
use edge_node::clock::{Clock, SystemClock};
use edge_node::config::EdgeConfig;
use edge_node::{Edge, StartOptions};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Measured time per scenario (after warm-up).
    pub duration: Duration,
    pub warmup: Duration,
    /// Concurrent keep-alive HTTP/1.1 connections.
    pub concurrency: usize,
    /// Open-loop target rate (requests/s); closed-loop (as fast as possible) when `None`.
    pub rate: Option<u32>,
    /// Recipients registered before the run (matching works among them).
    pub recipients: usize,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            concurrency: 64,
            rate: None,
            recipients: 500,
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds, from the scheduled send (open loop) or the send (closed loop).
    pub latency_us: Histogram<u64>,
}

impl LoadResult {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1_000.0
    }
    pub fn row(&self) -> String {
        format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            self.name,
            self.per_sec(),
            self.ms(0.5),
            self.ms(0.95),
            self.ms(0.99),
            self.requests,
            self.errors
        )
    }
}

#[derive(Debug)]
pub struct BenchReport {
    pub machine: String,
    pub config: BenchConfig,
    pub empty_handler: LoadResult,
    pub edge_post: LoadResult,
    /// The same posts over HTTPS to the same edge, right after.
    pub edge_post_tls: LoadResult,
    pub sqlite_rows_per_sec: f64,
    pub sqlite_batch: usize,
    pub mean_batch: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub group_p99_ms: f64,
    pub group_max_ms: f64,
    /// Post sent → the offer's SSE event received, measured during the load.
    pub sse_latency_us: Histogram<u64>,
}

impl BenchReport {
    pub fn render(&self) -> String {
        let ratio = self.edge_post.per_sec() / self.empty_handler.per_sec().max(1e-9);
        let mode = match self.config.rate {
            Some(r) => format!("open loop at {r} req/s (latency from the scheduled send)"),
            None => "closed loop (as fast as the server answers)".into(),
        };
        format!(
            "### `pahlawan bench`\n\n\
             Machine: {}\n\n\
             Mode: {}, {} connections, {:?} measured after {:?} warm-up, {} recipients.\n\n\
             | scenario | req/s | p50 ms | p95 ms | p99 ms | requests | errors |\n\
             |---|---|---|---|---|---|---|\n{}\n{}\n{}\n\n\
             Edge / empty handler throughput: **{:.2}**. HTTPS / plain HTTP posts/s on the same edge: **{:.2}**.\n\n\
             Raw SQLite baseline (same run): {:.0} rows/s inserting batches of {} rows, one \
             `synchronous=FULL` commit per batch. A post writes 6 rows (surplus, offer, audit record, three outbox events).\n\n\
             Edge writer: mean group commit {:.0} commands; commit (fsync) p50 {:.2} ms, p99 {:.2} ms; \
             whole group (apply, commit, publish, reply) p99 {:.2} ms, max {:.2} ms.\n\n\
             Offer stream (SSE) during the load: post sent → offer event received by the \
             recipient's stream, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} offers.\n",
            self.machine,
            mode,
            self.config.concurrency,
            self.config.duration,
            self.config.warmup,
            self.config.recipients,
            self.empty_handler.row(),
            self.edge_post.row(),
            self.edge_post_tls.row(),
            ratio,
            self.edge_post_tls.per_sec() / self.edge_post.per_sec().max(1e-9),
            self.sqlite_rows_per_sec,
            self.sqlite_batch,
            self.mean_batch,
            self.commit_p50_ms,
            self.commit_p99_ms,
            self.group_p99_ms,
            self.group_max_ms,
            self.sse_latency_us.value_at_quantile(0.5) as f64 / 1e3,
            self.sse_latency_us.value_at_quantile(0.99) as f64 / 1e3,
            self.sse_latency_us.max() as f64 / 1e3,
            self.sse_latency_us.len(),
        )
    }
}

/// CPU model, cores and memory, from /proc (Linux).
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem_gib:.0} GiB RAM, Linux {}",
        kernel.trim()
    )
}

mod bytes_pool {
    use hyper::body::Bytes;

    /// Pre-built request bodies, so the load generator spends no CPU on JSON.
    #[derive(Debug, Clone)]
    pub struct BodyPool(pub std::sync::Arc<Vec<Bytes>>);

    impl BodyPool {
        pub fn get(&self, i: usize) -> Bytes {
            self.0[i % self.0.len()].clone()
        }
    }
}

pub async fn run(cfg: BenchConfig) -> anyhow::Result<BenchReport> {
    let empty = run_empty_handler(&cfg).await?;
    let (sqlite_rows_per_sec, sqlite_batch) =
        tokio::task::spawn_blocking(sqlite_baseline).await??;
    let dir = tempfile::tempdir()?;
    let (mut config, tls) = tls_edge_config(dir.path())?;
    unlimited(&mut config);
    let edge = Edge::start(config.clone(), StartOptions::default()).await?;
    let (Some(tls_addr), Some(addr)) = (edge.local_addr(), edge.plain_addr()) else {
        anyhow::bail!("the edge is not serving HTTPS and plain HTTP");
    };
    let admin = token(&config, Role::Admin, "bench-operator")?;
    let provider = seed_registry(addr, &admin, cfg.recipients).await?;
    let as_provider = token(&config, Role::Provider, &provider)?;
    let bodies = surplus_bodies(&provider, 4_096);
    let probe = tokio::spawn(sse_probe(
        addr,
        Tokens {
            admin: admin.clone(),
            provider: as_provider.clone(),
            config: config.clone(),
        },
        provider.clone(),
        cfg.warmup,
        cfg.warmup + cfg.duration,
    ));
    let edge_post = drive(
        &cfg,
        "edge `POST /surplus` (durable, matched, authenticated)",
        addr,
        bodies.clone(),
        &as_provider,
        None,
    )
    .await?;
    let sse_latency_us = probe.await??;
    let edge_post_tls = drive(
        &cfg,
        "edge `POST /surplus` over HTTPS (same edge, right after)",
        tls_addr,
        bodies,
        &as_provider,
        Some(tls),
    )
    .await?;
    let stats = edge.writer_stats();
    let (mean_batch, commit_p50_ms, commit_p99_ms, group_p99_ms, group_max_ms) = {
        let b = stats.batch_size.lock();
        let c = stats.commit_ns.lock();
        let g = stats.group_ns.lock();
        (
            b.mean(),
            c.value_at_quantile(0.5) as f64 / 1e6,
            c.value_at_quantile(0.99) as f64 / 1e6,
            g.value_at_quantile(0.99) as f64 / 1e6,
            g.max() as f64 / 1e6,
        )
    };
    edge.shutdown().await;
    Ok(BenchReport {
        machine: machine(),
        config: cfg,
        empty_handler: empty,
        edge_post,
        edge_post_tls,
        sqlite_rows_per_sec,
        sqlite_batch,
        mean_batch,
        commit_p50_ms,
        commit_p99_ms,
        group_p99_ms,
        group_max_ms,
        sse_latency_us,
    })
}

async fn run_empty_handler(cfg: &BenchConfig) -> anyhow::Result<LoadResult> {
    let app = axum::Router::new().route(
        "/api/v1/surplus",
        axum::routing::post(|| async {
            (StatusCode::CREATED, Json(serde_json::json!({"ok": true})))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let bodies = surplus_bodies(&uuid::Uuid::nil().to_string(), 16);
    // A header as long as a real RS256 token, so the bytes on the wire match.
    let placeholder = "x".repeat(560);
    let result = drive(
        cfg,
        "empty axum handler (baseline)",
        addr,
        bodies,
        &placeholder,
        None,
    )
    .await;
    let _ = stop.send(());
    let _ = server.await;
    result
}

/// Raw SQLite: batches of rows shaped like a surplus row, one FULL commit each.
fn sqlite_baseline() -> anyhow::Result<(f64, usize)> {
    const BATCH: usize = 256;
    const ROWS: usize = 200_000;
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("baseline.sqlite3"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE t (id BLOB PRIMARY KEY, lat REAL, lon REAL, quantity_g INTEGER,
                         food_type TEXT, status TEXT, version INTEGER, payload BLOB) WITHOUT ROWID;",
    )?;
    let mut rng = SmallRng::seed_from_u64(1);
    let mut ids = edge_node::ids::IdGen::seeded(1);
    let payload = vec![7u8; 160];
    let t = Instant::now();
    for _ in 0..ROWS / BATCH {
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO t VALUES (?1, ?2, ?3, ?4, 'bakery', 'offered', 2, ?5)",
            )?;
            for _ in 0..BATCH {
                let id = ids.next(SystemClock.now());
                stmt.execute(rusqlite::params![
                    id.as_bytes(),
                    rng.random::<f64>(),
                    rng.random::<f64>(),
                    1_000,
                    payload
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok((ROWS as f64 / t.elapsed().as_secs_f64(), BATCH))
}

/// An edge in `dir` serving HTTPS on its main address (a CA and a web
/// certificate for localhost made there) and plain HTTP on a second
/// loopback address, and the connector load workers reach HTTPS with.
fn tls_edge_config(dir: &std::path::Path) -> anyhow::Result<(EdgeConfig, TlsConnector)> {
    let certs = dir.join("certs");
    cloud_hub::certs::init(&certs, &[], false)?;
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let web = cloud_hub::certs::issue_web(&certs, &["localhost".into()], &[ip], 30, false)?;
    let mut config = EdgeConfig {
        data_dir: dir.join("data"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        edge_id: "bench".into(),
        ..EdgeConfig::default()
    };
    config.http.tls = Some(http_listener::TlsFiles::new(
        web.files[0].clone(),
        web.files[1].clone(),
    ));
    config.http.plain_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let roots = crate::client::roots(Some(&certs.join(cloud_hub::certs::CA_CERT)))?;
    let connector = TlsConnector::from(Arc::new(crate::client::tls_config(roots)?));
    Ok((config, connector))
}

/// Rate limits out of the way: the benchmark measures the pipeline, and one
/// provider token posts everything.
pub fn unlimited(config: &mut EdgeConfig) {
    config.rate_limits.provider_per_minute = u32::MAX;
    config.rate_limits.ngo_per_minute = u32::MAX;
    config.rate_limits.admin_per_minute = u32::MAX;
}

/// A bearer token for `role`/`sub`, signed with the key the edge created in
/// its data dir.
pub fn token(config: &EdgeConfig, role: Role, sub: &str) -> anyhow::Result<String> {
    Ok(edge_node::auth::keys::issue(
        &config.data_dir,
        &config.auth.issuer,
        &config.auth.audience,
        role,
        sub,
        config.auth.max_token_lifetime_secs,
        SystemClock.now(),
    )?)
}

/// The tokens the SSE probe needs (it registers its own recipient).
struct Tokens {
    admin: String,
    provider: String,
    config: EdgeConfig,
}

async fn post_json(
    addr: SocketAddr,
    token: &str,
    path: &str,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    let resp = reqwest_like_post(addr, token, path, Bytes::from(body)).await?;
    Ok(serde_json::from_slice(&resp)?)
}

async fn reqwest_like_post(
    addr: SocketAddr,
    token: &str,
    path: &str,
    body: Bytes,
) -> anyhow::Result<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(bytes)
}

/// Registers one provider and `n` high-capacity recipients over HTTP.
async fn seed_registry(addr: SocketAddr, admin: &str, n: usize) -> anyhow::Result<String> {
    let mut rng = SmallRng::seed_from_u64(7);
    for i in 0..n {
        let (lat, lon) = (
            -6.2 + rng.random_range(-0.2..0.2),
            106.85 + rng.random_range(-0.2..0.2),
        );
        let body = serde_json::json!({
            "name": format!("Bench food bank {i}"), "lat": lat, "lon": lon,
            "capacity_kg_per_day": 1_000_000.0,
            "accepted_food_types": ["prepared_meals", "bakery", "produce", "dairy", "meat_fish", "dry_goods", "frozen"],
            "contact_phone": "+62 21 555 0000", "contact_email": "bench@example.org"
        });
        post_json(addr, admin, "/api/v1/recipients", body.to_string()).await?;
    }
    let provider = post_json(
        addr,
        admin,
        "/api/v1/providers",
        serde_json::json!({"name": "Bench restaurant", "lat": -6.2, "lon": 106.85,
            "contact_phone": "+62 21 555 0001", "contact_email": "r@example.org"})
        .to_string(),
    )
    .await?;
    provider["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no provider id in {provider}"))
}

/// Opens `rid`'s offer stream; yields each offer's surplus id with the
/// instant it arrived.
async fn offer_stream(
    addr: SocketAddr,
    tokens: &Tokens,
    rid: &str,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let as_ngo = token(&tokens.config, Role::Ngo, rid)?;
    let req = Request::get(format!("/api/v1/recipients/{rid}/offers/stream"))
        .header("host", "localhost")
        .header("authorization", format!("Bearer {as_ngo}"))
        .body(Full::new(Bytes::new()))?;
    let mut body = sender.send_request(req).await?.into_body();
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) {
                    let _ = seen_tx.send((id.trim().to_string(), Instant::now()));
                }
            }
        }
    });
    Ok(seen_rx)
}

/// A recipient alone at the city's north-east edge listens on its offer
/// stream while surplus are posted next to it every 10 ms (during the load):
/// each offer goes to it, and the time from sending the post to receiving
/// the event is recorded.
async fn sse_probe(
    addr: SocketAddr,
    tokens: Tokens,
    provider: String,
    from: Duration,
    until: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let (lat, lon) = (-6.0, 107.15);
    let recipient = post_json(
        addr,
        &tokens.admin,
        "/api/v1/recipients",
        serde_json::json!({"name": "Probe", "lat": lat, "lon": lon, "capacity_kg_per_day": 1_000_000.0,
            "accepted_food_types": ["bakery"], "contact_phone": "+62 21 555 0002", "contact_email": "p@example.org"})
        .to_string(),
    )
    .await?;
    let rid = recipient["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no recipient id"))?
        .to_string();
    let mut seen_rx = offer_stream(addr, &tokens, &rid).await?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let started = Instant::now();
    tokio::time::sleep(from).await;
    let expires = rfc3339(SystemClock.now() + sync_protocol::Duration::from_mins(240));
    while started.elapsed() < until {
        let body =
            serde_json::json!({"provider_id": provider, "lat": lat, "lon": lon, "quantity_kg": 1.0,
            "food_type": "bakery", "expires_at": expires})
            .to_string();
        let sent = Instant::now();
        let posted = post_json(addr, &tokens.provider, "/api/v1/surplus", body).await?;
        let id = posted["id"].as_str().unwrap_or_default().to_string();
        let deadline = sent + Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await;
            match next {
                Ok(Some((seen, at))) if seen == id => {
                    let _ = hist.record((at - sent).as_micros().max(1) as u64);
                    break;
                }
                Ok(Some(_)) => continue,
                _ => anyhow::bail!("the offer of {id} never reached the stream"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(hist)
}

/// Drives `POST /api/v1/surplus` at `addr` for `provider` with `cfg`'s
/// concurrency, rate and duration (for other benchmarks, e.g. sync).
/// `token` must be the provider's.
pub async fn post_load(
    cfg: &BenchConfig,
    addr: SocketAddr,
    provider: &str,
    token: &str,
) -> anyhow::Result<LoadResult> {
    drive(
        cfg,
        "edge `POST /surplus`",
        addr,
        surplus_bodies(provider, 4_096),
        token,
        None,
    )
    .await
}

/// Registers one provider and `n` roomy recipients at `addr` over HTTP with
/// an admin's `token`.
pub async fn seed(addr: SocketAddr, token: &str, n: usize) -> anyhow::Result<String> {
    seed_registry(addr, token, n).await
}

fn surplus_bodies(provider: &str, n: usize) -> BodyPool {
    let mut rng = SmallRng::seed_from_u64(11);
    let expires = rfc3339(SystemClock.now() + sync_protocol::Duration::from_mins(240));
    let bodies = (0..n)
        .map(|_| {
            let (lat, lon) = (
                -6.2 + rng.random_range(-0.15..0.15),
                106.85 + rng.random_range(-0.15..0.15),
            );
            Bytes::from(
                serde_json::json!({
                    "provider_id": provider, "lat": lat, "lon": lon,
                    "quantity_kg": rng.random_range(1.0..40.0), "food_type": "prepared_meals",
                    "expires_at": expires, "description": "bench"
                })
                .to_string(),
            )
        })
        .collect();
    BodyPool(Arc::new(bodies))
}

/// Runs the load on its own runtime (two threads) so client and server share
/// the machine the way separate processes would.
async fn drive(
    cfg: &BenchConfig,
    name: &str,
    addr: SocketAddr,
    bodies: BodyPool,
    token: &str,
    tls: Option<TlsConnector>,
) -> anyhow::Result<LoadResult> {
    let cfg = cfg.clone();
    let name = name.to_string();
    let auth = Arc::<str>::from(format!("Bearer {token}"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("loadgen".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => rt.block_on(load(cfg, name, addr, bodies, auth, tls)),
                Err(e) => Err(e.into()),
            };
            let _ = tx.send(result);
        })?;
    rx.await?
}

/// One keep-alive connection posting until the plan's stop: closed loop
/// (next request as soon as the last is answered) or open loop (on
/// schedule, latency from the scheduled send).
async fn worker(w: usize, plan: Plan, tally: Tally) -> anyhow::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("static bounds");
    let stream = tokio::net::TcpStream::connect(plan.addr).await?;
    stream.set_nodelay(true)?;
    let mut sender = match &tally.tls {
        None => {
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let stream = tls.connect(name, stream).await?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    let interval = plan.interval;
    // Stagger open-loop workers across one interval.
    let mut next = plan.started
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(w as f64 / plan.concurrency as f64)
        });
    let mut i = w * 7_919;
    loop {
        if interval.is_some() {
            tokio::time::sleep_until(next.into()).await;
        }
        let scheduled = if interval.is_some() {
            next
        } else {
            Instant::now()
        };
        if scheduled >= plan.stop_at {
            break;
        }
        let req = Request::post("/api/v1/surplus")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("authorization", &*tally.auth)
            .body(Full::new(tally.bodies.get(i)))?;
        i += 1;
        let ok = match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                resp.into_body().collect().await.is_ok() && status == StatusCode::CREATED
            }
            Err(_) => false,
        };
        let done = Instant::now();
        if scheduled >= plan.measure_from {
            if ok {
                let _ = hist.record((done - scheduled).as_micros().max(1) as u64);
                tally.counter.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(iv) = interval {
            next += iv;
        }
    }
    Ok(hist)
}

/// One load worker's schedule: when it starts, measures and stops, and
/// (open loop) the interval between its requests.
#[derive(Debug, Clone, Copy)]
struct Plan {
    addr: SocketAddr,
    started: Instant,
    measure_from: Instant,
    stop_at: Instant,
    interval: Option<Duration>,
    concurrency: usize,
}

/// What the workers count together.
#[derive(Clone)]
struct Tally {
    bodies: BodyPool,
    auth: Arc<str>,
    errors: Arc<AtomicU64>,
    counter: Arc<AtomicU64>,
    /// HTTPS to the server, when set.
    tls: Option<TlsConnector>,
}

async fn load(
    cfg: BenchConfig,
    name: String,
    addr: SocketAddr,
    bodies: BodyPool,
    auth: Arc<str>,
    tls: Option<TlsConnector>,
) -> anyhow::Result<LoadResult> {
    let started = Instant::now();
    let measure_from = started + cfg.warmup;
    let plan = Plan {
        addr,
        started,
        measure_from,
        stop_at: measure_from + cfg.duration,
        interval: cfg
            .rate
            .map(|r| Duration::from_secs_f64(cfg.concurrency as f64 / f64::from(r.max(1)))),
        concurrency: cfg.concurrency,
    };
    let tally = Tally {
        bodies,
        auth,
        errors: Arc::new(AtomicU64::new(0)),
        counter: Arc::new(AtomicU64::new(0)),
        tls,
    };
    let workers: Vec<_> = (0..cfg.concurrency)
        .map(|w| tokio::spawn(worker(w, plan, tally.clone())))
        .collect();
    let (errors, counter) = (tally.errors, tally.counter);
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for w in workers {
        latency_us.add(w.await??)?;
    }
    Ok(LoadResult {
        name,
        requests: counter.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: cfg.duration,
        latency_us,
    })
}
