//! Real `pahlawan edge run` processes against connection floods and over
//! HTTPS: an edge started under `ulimit -n 1024` caps itself below the
//! limit and keeps serving a legitimate client through a flood; an HTTPS
//! edge (certificate from `certs issue-web`) serves the CLI that trusts the
//! project's CA, refuses plain HTTP, and plain HTTP off loopback is refused
//! at start.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::NO_RATE_LIMITS_ENV;

const BIN: &str = env!("CARGO_BIN_EXE_pahlawan");

/// An edge started through `sh -c 'ulimit -n 1024; exec pahlawan edge run
/// …'`, its log collected.
struct Limited {
    child: std::process::Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_limited(data_dir: &std::path::Path) -> Limited {
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 1024 && exec \"$0\" edge run --data-dir \"$1\" --listen 127.0.0.1:0",
            BIN,
            data_dir.to_str().expect("utf-8 path"),
        ])
        .envs(NO_RATE_LIMITS_ENV)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().expect("log");
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut banner = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut banner)
        .expect("banner");
    let addr = banner
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("an edge banner, got {banner:?}"))
        .parse()
        .expect("an address");
    Limited { child, addr, log }
}

/// The limit line of `/proc/<pid>/limits`: (soft, hard).
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the open-files line");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// A blocking HTTP/1.1 GET from `from`, the whole answer (empty when the
/// server closed or reset without one).
fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> String {
    let Ok(mut s) = connect_from(from, to) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection from a chosen loopback address (any of 127/8), so one test
/// can be several clients.
fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect(&to.into())?;
    Ok(TcpStream::from(socket))
}

/// Polls `check` until it holds, failing with `what` after testkit's
/// deadline.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + testkit::DEADLINE;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {:?} waiting for {what}",
            testkit::DEADLINE
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A metric's value from the edge's `/metrics` (0 when absent).
fn metric(addr: SocketAddr, series: &str) -> u64 {
    get_from([127, 0, 0, 1], addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `n` connections from `from` that each send half a request header and
/// then wait (the attack in issue 20).
fn half_open(from: [u8; 4], to: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = connect_from(from, to).ok()?;
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost:");
            Some(s)
        })
        .collect()
}

#[test]
fn an_edge_under_ulimit_1024_caps_itself_below_it_and_serves_through_a_flood() {
    // This process holds the flood's client sockets: it needs more than 1,024.
    let own = http_listener::caps::raise_nofile();
    assert!(
        own.soft >= 4_096,
        "the test needs an open-file limit of 4096 for its own sockets, has {own:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let edge = start_limited(dir.path());
    assert_eq!(
        open_files_limit(edge.child.id()),
        (1_024, 1_024),
        "sh's ulimit -n sets both limits: nothing to raise to"
    );
    let cap = metric(edge.addr, "http_connections_limit");
    assert_eq!(cap, 1_024 - 256, "the total cap keeps reserved_fds free");
    assert!(
        edge.log
            .lock()
            .expect("log")
            .contains("max_connections=768"),
        "the cap is logged:\n{}",
        edge.log.lock().expect("log")
    );

    // One address, 1,100 half-open connections: it gets its 256, no more.
    let flood = half_open([127, 0, 0, 2], edge.addr, 1_100);
    let served = get_from([127, 0, 0, 1], edge.addr, "/healthz");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let refused = metric(
        edge.addr,
        "http_connections_refused_total{reason=\"address_cap\"}",
    );
    assert!(refused >= 1_100 - 256, "refused {refused}");

    // Three more addresses, 256 each: 1,024 connections for a cap of 768.
    // Refused at accept, never out of descriptors; once the flood lets go,
    // the freed slots serve the legitimate client again.
    let more: Vec<_> = (3..=5)
        .map(|a| half_open([127, 0, 0, a], edge.addr, 256))
        .collect();
    drop(more);
    drop(flood);
    wait_until("the legitimate client to be served again", || {
        get_from([127, 0, 0, 1], edge.addr, "/healthz").starts_with("HTTP/1.1 200")
    });
    let over_total = metric(
        edge.addr,
        "http_connections_refused_total{reason=\"total_cap\"}",
    );
    assert!(over_total >= 1, "the total cap never refused");
    let log = edge.log.lock().expect("log").clone();
    assert!(
        !log.contains("Too many open files"),
        "the edge ran out of descriptors:\n{log}"
    );
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run pahlawan");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plain_http_off_loopback_is_refused_at_start_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    let (ok, _, err) = cli(&["edge", "run", "--data-dir", d, "--listen", "0.0.0.0:0"]);
    assert!(!ok, "started plain HTTP on every address");
    assert!(err.contains("[http.tls]"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn an_https_edge_serves_a_client_trusting_the_project_ca_and_refuses_plain_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let data = dir.path().join("data");
    let c = certs.to_str().expect("utf-8");
    assert!(cli(&["certs", "init", "--dir", c]).0);
    let (ok, out, err) = cli(&[
        "certs",
        "issue-web",
        "--dir",
        c,
        "--name",
        "localhost",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(ok, "{err}");
    let (cert, key) = cloud_hub::certs::web_cert_paths(&certs, "localhost");
    assert!(out.contains(cert.to_str().expect("utf-8")), "{out}");
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n[http.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            data.display(),
            cert.display(),
            key.display()
        ),
    )
    .expect("config");
    let edge = common::Proc::spawn(&["edge", "run", "--config", config.to_str().expect("utf-8")]);
    let base = edge
        .banner
        .strip_prefix("listening on ")
        .expect("banner")
        .to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let ca = certs.join(cloud_hub::certs::CA_CERT);
    let client = pahlawan_cli::client::http_client(Some(&ca)).expect("client");
    let admin = common::token(&data, edge_node::auth::Role::Admin, "test-operator");
    let resp = client
        .post(format!("{base}/api/v1/providers"))
        .bearer_auth(&admin)
        .json(
            &serde_json::json!({"name": "Toko Roti", "lat": -6.2, "lon": 106.816,
            "contact_phone": "+62 21 555 1234", "contact_email": "roti@example.org"}),
        )
        .send()
        .await
        .expect("HTTPS trusting the project CA");
    assert_eq!(resp.status(), 201);
    assert!(resp.headers().contains_key("strict-transport-security"));
    let provider: serde_json::Value = resp.json().await.expect("json");
    let id = provider["id"].as_str().expect("id");

    let (ok, out, err) = cli(&[
        "subject",
        "export",
        id,
        "--url",
        &base,
        "--ca-cert",
        ca.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Toko Roti"), "{out}");
    let (ok, _, err) = cli(&[
        "subject",
        "export",
        id,
        "--url",
        &base,
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert!(!ok, "trusted a certificate no system root signed");
    assert!(err.contains("invalid peer certificate"), "{err}");

    let addr: SocketAddr = base.trim_start_matches("https://").parse().expect("addr");
    let plain = get_from([127, 0, 0, 1], addr, "/healthz");
    assert!(
        plain.starts_with("HTTP/1.1 400") && plain.contains("https_required"),
        "{plain}"
    );
}
