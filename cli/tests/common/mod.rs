//! Harness for end-to-end tests: `pahlawan` child processes (edge, hub),
//! HTTP helpers, and readers of the edge's SQLite file and the hub's database.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edge_node::auth::Role;
use serde_json::{Value, json};

/// Rate limits high enough that tests not about rate limits never meet one
/// (set on every `pahlawan` child).
pub const NO_RATE_LIMITS_ENV: [(&str, &str); 3] = [
    (
        "PAHLAWAN_EDGE_RATE_LIMITS__PROVIDER_PER_MINUTE",
        "100000000",
    ),
    ("PAHLAWAN_EDGE_RATE_LIMITS__NGO_PER_MINUTE", "100000000"),
    ("PAHLAWAN_EDGE_RATE_LIMITS__ADMIN_PER_MINUTE", "100000000"),
];

/// A token signed with the keys the edge in `data_dir` created on first start.
pub fn token(data_dir: &Path, role: Role, sub: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000;
    edge_node::auth::keys::issue(
        data_dir,
        "pahlawan",
        "pahlawan-edge",
        role,
        sub,
        900,
        sync_protocol::Timestamp::from_unix_ms(now),
    )
    .expect("a token")
}

/// A client whose every request carries a token for `role`/`sub`.
pub fn client_as(data_dir: &Path, role: Role, sub: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {}", token(data_dir, role, sub))
        .parse()
        .expect("a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// An operator's client for the edge whose data lives in `data_dir`.
pub fn admin_client(data_dir: &Path) -> reqwest::Client {
    client_as(data_dir, Role::Admin, "test-operator")
}

/// A `pahlawan` child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    /// The first line the process printed (its addresses).
    pub banner: String,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_env(args, &[])
    }

    /// [`Proc::spawn`] with more environment. A child never inherits the
    /// test runner's systemd variables: only a test that sets them gets them.
    pub fn spawn_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Proc {
        Proc::spawn_program(Command::new(env!("CARGO_BIN_EXE_pahlawan")), args, env)
    }

    /// [`Proc::spawn_env`] running `program` — another `pahlawan` binary,
    /// or one behind a runner such as `qemu-aarch64` (its own arguments
    /// already added) — instead of the one cargo built for this test.
    pub fn spawn_program(
        mut program: Command,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Proc {
        let mut child = program
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(NO_RATE_LIMITS_ENV)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn pahlawan");
        let stdout = child.stdout.take().expect("stdout");
        let mut banner = String::new();
        BufReader::new(stdout)
            .read_line(&mut banner)
            .expect("read the banner");
        assert!(
            !banner.is_empty(),
            "pahlawan {args:?} exited before printing its address"
        );
        Proc {
            child,
            banner: banner.trim().to_string(),
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        let status = self.child.wait().expect("reap");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "died of SIGKILL");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("reap");
        assert!(status.success(), "clean exit on SIGTERM, got {status:?}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An edge started with `pahlawan edge run --config FILE`; `base` is its URL.
pub struct EdgeProc {
    pub proc: Proc,
    pub base: String,
}

/// `pahlawan edge run` on its defaults in `data_dir`, on a free port, with
/// `env` added to its environment; the process and its base URL.
pub fn edge_in(data_dir: &Path, env: &[(&str, &std::ffi::OsStr)]) -> (Proc, String) {
    edge_in_program(Command::new(env!("CARGO_BIN_EXE_pahlawan")), data_dir, env)
}

/// [`edge_in`] running `program` (see [`Proc::spawn_program`]).
pub fn edge_in_program(
    program: Command,
    data_dir: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> (Proc, String) {
    let data_dir = data_dir.to_str().expect("a UTF-8 path");
    let args = [
        "edge",
        "run",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
    ];
    let proc = Proc::spawn_program(program, &args, env);
    let base = proc
        .banner
        .strip_prefix("listening on ")
        .expect("a listening line")
        .to_string();
    (proc, base)
}

pub fn start_edge(config: &Path) -> EdgeProc {
    let proc = Proc::spawn(&["edge", "run", "--config", config.to_str().unwrap()]);
    let base = proc
        .banner
        .strip_prefix("listening on ")
        .expect("an edge banner")
        .to_string();
    EdgeProc { proc, base }
}

/// Writes an edge config that syncs with the hub at `hub_addr`.
pub fn edge_config(
    dir: &Path,
    data_dir: &Path,
    certs: &Path,
    edge_id: &str,
    hub_addr: &str,
) -> PathBuf {
    let path = dir.join(format!("{edge_id}.toml"));
    let toml = format!(
        "edge_id = \"{edge_id}\"\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\n[hub]\naddress = \"{hub_addr}\"\n\
         ca_cert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nreconnect_min_ms = 50\nreconnect_max_ms = 1000\n",
        data_dir.display(),
        certs.join("ca.crt").display(),
        certs.join(format!("edge-{edge_id}.crt")).display(),
        certs.join(format!("edge-{edge_id}.key")).display(),
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// `pahlawan hub run` on a fixed QUIC port (so restarts come back there).
pub fn start_hub(db_url: &str, quic_port: u16, certs: &Path) -> Proc {
    let quic = format!("127.0.0.1:{quic_port}");
    let p = Proc::spawn(&[
        "hub",
        "run",
        "--database-url",
        db_url,
        "--listen-quic",
        &quic,
        "--listen-http",
        "127.0.0.1:0",
        "--certs-dir",
        certs.to_str().unwrap(),
    ]);
    assert!(p.banner.starts_with("quic on"), "{}", p.banner);
    p
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn in_minutes(m: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::minutes(m);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub async fn post(c: &reqwest::Client, url: String, body: Value) -> reqwest::Result<(u16, Value)> {
    let r = c.post(url).json(&body).send().await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

/// The value of `series` (name and labels, as the scrape writes them) in the
/// edge's `/metrics` at `base`; -1 when the scrape has no such series.
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(-1.0)
}

/// Registers a provider and `n` roomy recipients as an operator; returns
/// the provider id.
pub async fn seed(c: &reqwest::Client, base: &str, n: usize) -> String {
    let (s, p) = post(
        c,
        format!("{base}/api/v1/providers"),
        json!({"name": "Toko Roti", "lat": -6.2, "lon": 106.816,
        "contact_phone": "+62 21 555 1234", "contact_email": "roti@example.org"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{p}");
    for i in 0..n {
        let (s, r) = post(
            c,
            format!("{base}/api/v1/recipients"),
            json!({"name": format!("Panti {i}"),
            "lat": -6.21 - i as f64 * 0.002, "lon": 106.82, "capacity_kg_per_day": 1_000_000.0,
            "accepted_food_types": ["bakery"], "contact_phone": "+62 21 555 0000",
            "contact_email": "panti@example.org"}),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{r}");
    }
    p["id"].as_str().unwrap().to_string()
}

pub fn surplus_body(provider: &str, i: u64) -> Value {
    json!({"provider_id": provider, "lat": -6.2 + (i % 97) as f64 * 0.0005, "lon": 106.816 + (i % 89) as f64 * 0.0005,
           "quantity_kg": 2.5, "food_type": "bakery", "expires_at": in_minutes(240), "description": format!("#{i}")})
}

/// The edge's `/api/v1/sync`.
pub async fn sync_status(c: &reqwest::Client, base: &str) -> Option<Value> {
    c.get(format!("{base}/api/v1/sync"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until the hub has acknowledged everything the edge committed.
pub async fn wait_caught_up(c: &reqwest::Client, base: &str, what: &str) -> Value {
    let what = format!("{what}: the hub to catch up");
    let caught_up = |s: &Value| s["backlog"] == 0 && s["acked_seq"].as_u64().unwrap_or(0) > 0;
    testkit::eventually_within(&what, Duration::from_secs(180), async || {
        sync_status(c, base).await.filter(caught_up)
    })
    .await
}

/// An event log as (seq, envelope bytes).
pub type Log = Vec<(i64, Vec<u8>)>;
/// Surplus as (id, status, version, claimed by, delivered grams), by id.
pub type SurplusRows = Vec<(uuid::Uuid, String, i64, Option<uuid::Uuid>, Option<i64>)>;
/// Offers as (surplus, recipient, outcome), sorted.
pub type OfferRows = Vec<(uuid::Uuid, uuid::Uuid, String)>;

fn uuid_of(b: Option<Vec<u8>>) -> Option<uuid::Uuid> {
    b.map(|b| uuid::Uuid::from_slice(&b).unwrap())
}

/// The edge's outbox, surplus and offers.
pub fn edge_state(db: &Path) -> (Log, SurplusRows, OfferRows) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let outbox = conn
        .prepare("SELECT seq, envelope FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut surplus: SurplusRows = conn
        .prepare("SELECT id, status, version, claimed_by, delivered_g FROM surplus")
        .unwrap()
        .query_map([], |r| {
            Ok((
                uuid_of(r.get(0)?).unwrap(),
                r.get(1)?,
                r.get(2)?,
                uuid_of(r.get(3)?),
                r.get(4)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    surplus.sort();
    let mut offers: OfferRows = conn
        .prepare("SELECT surplus_id, recipient_id, outcome FROM offers")
        .unwrap()
        .query_map([], |r| {
            Ok((
                uuid_of(r.get(0)?).unwrap(),
                uuid_of(r.get(1)?).unwrap(),
                r.get(2)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    offers.sort();
    (outbox, surplus, offers)
}

/// The hub's log of one edge, its surplus view and its matching history.
pub async fn hub_state(url: &str, edge: &str) -> (Log, SurplusRows, OfferRows) {
    let c = cloud_hub::db::connect(url).await.unwrap();
    let log = c
        .query(
            "SELECT seq, envelope FROM event_log WHERE edge_id = $1 ORDER BY seq",
            &[&edge],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let surplus = c
        .query(
            "SELECT id, status, version, claimed_by, delivered_g FROM surplus WHERE edge_id = $1 ORDER BY id",
            &[&edge],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let offers = c
        .query(
            "SELECT surplus_id, recipient_id, outcome FROM matching_history WHERE edge_id = $1
             ORDER BY surplus_id, recipient_id",
            &[&edge],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    (log, surplus, offers)
}

/// Exactly once: the hub's log is the edge's outbox, byte for byte — so no
/// duplicates and no gaps — and the hub's surplus view is the edge's.
pub async fn assert_hub_mirrors_edge(hub_url: &str, edge: &str, edge_db: &Path) -> usize {
    let (outbox, edge_surplus, edge_offers) = edge_state(edge_db);
    let (log, hub_surplus, hub_offers) = hub_state(hub_url, edge).await;
    assert_eq!(
        log.len(),
        outbox.len(),
        "the hub holds as many events as the edge committed"
    );
    for (i, ((hs, hb), (es, eb))) in log.iter().zip(&outbox).enumerate() {
        assert_eq!(
            (*hs, *es),
            (i as i64 + 1, i as i64 + 1),
            "dense from 1, no gaps, no duplicates"
        );
        assert!(hb == eb, "event {hs} differs between hub and edge");
    }
    assert_eq!(hub_surplus.len(), edge_surplus.len());
    assert!(
        hub_surplus == edge_surplus,
        "the hub's surplus view equals the edge's (status, version, claimant, delivered)"
    );
    assert_eq!(hub_offers.len(), edge_offers.len());
    assert!(
        hub_offers == edge_offers,
        "the hub's matching history equals the edge's offers"
    );
    outbox.len()
}

/// A CA and certificates for `edges` in a fresh directory.
pub fn certs_for_edges(edges: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cloud_hub::certs::init(dir.path(), &[], false).unwrap();
    for e in edges {
        cloud_hub::certs::issue_edge(dir.path(), &sync_protocol::EdgeId::new(e).unwrap()).unwrap();
    }
    dir
}

/// A hub in this process on loopback (any free ports), certificates from
/// `certs`; `tweak` adjusts the rest.
pub async fn hub_in_process(
    db_url: &str,
    certs: &Path,
    tweak: impl FnOnce(&mut cloud_hub::HubConfig),
) -> cloud_hub::Hub {
    use cloud_hub::certs::{CA_CERT, HUB_CERT, HUB_KEY};
    let mut cfg = cloud_hub::HubConfig {
        database_url: db_url.to_string(),
        listen_quic: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: cloud_hub::config::TlsFiles {
            ca_cert: certs.join(CA_CERT),
            cert: certs.join(HUB_CERT),
            key: certs.join(HUB_KEY),
        },
        ..cloud_hub::HubConfig::default()
    };
    tweak(&mut cfg);
    cloud_hub::Hub::start(cfg).await.unwrap()
}

/// A hub token for `role`, signed with the key a hub on `certs` made at
/// its start (`certs/tokens/`), valid for ten minutes.
pub fn hub_token(certs: &Path, role: cloud_hub::auth::HubRole) -> String {
    let cfg = cloud_hub::HubConfig::default();
    let now = edge_node::clock::Clock::now(&edge_node::clock::SystemClock);
    cloud_hub::auth::issue(
        &cfg.auth,
        &certs.join("tokens"),
        role,
        "test-viewer",
        600,
        now,
    )
    .unwrap()
}

/// The `[hub]` section for `edge` syncing with `hub`, reconnecting quickly.
pub fn hub_link(
    hub: &cloud_hub::Hub,
    certs: &Path,
    edge: &str,
) -> edge_node::config::HubLinkConfig {
    edge_node::config::HubLinkConfig {
        address: hub.quic_addr().to_string(),
        server_name: cloud_hub::certs::DEFAULT_HUB_NAME.into(),
        ca_cert: certs.join(cloud_hub::certs::CA_CERT),
        cert: certs.join(format!("edge-{edge}.crt")),
        key: certs.join(format!("edge-{edge}.key")),
        reconnect_min_ms: 50,
        reconnect_max_ms: 500,
        max_batch_events: 1_024,
        max_in_flight: 4,
    }
}
