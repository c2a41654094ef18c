//! The listener over real loopback sockets: a slow header is dropped, an
//! idle connection closed while a stream lives on, a slow body answered
//! 408, caps refuse floods per address and in total (and free slots are
//! reused), HTTPS trusts what it should and refuses what it should, and a
//! rotated certificate is served without a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::routing::{get, post};
use http_listener::{ConnInfo, ConnLimits, ConnMetrics, HttpServer, ListenerConfig, TlsFiles};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/info",
            get(
                |axum::Extension(info): axum::Extension<ConnInfo>| async move {
                    format!(
                        "tls={} credentials={}",
                        info.tls,
                        info.may_carry_credentials()
                    )
                },
            ),
        )
        .route(
            "/echo",
            post(
                |body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                    match body {
                        Ok(b) => (StatusCode::OK, b.len().to_string()),
                        Err(e) if http_listener::conn::is_body_timeout(&e) => {
                            (StatusCode::REQUEST_TIMEOUT, "body timeout".into())
                        }
                        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
                    }
                },
            ),
        )
        .route(
            "/stream",
            get(|| async {
                // 12 chunks, 250 ms apart: 3 s, three idle timeouts long.
                let chunks = futures_stream(12, Duration::from_millis(250));
                Body::from_stream(chunks)
            }),
        )
}

fn futures_stream(
    n: usize,
    every: Duration,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(0, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok(Bytes::from(format!("chunk {i}\n"))), i + 1))
    })
}

struct Running {
    server: HttpServer,
    metrics: ConnMetrics,
}

impl Running {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn scrape(&self) -> String {
        let mut registry = Registry::default();
        self.metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    }

    /// A counter's value from the scrape (0 when absent).
    fn counter(&self, series: &str) -> u64 {
        self.scrape()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

async fn start(tweak: impl FnOnce(&mut ListenerConfig)) -> Running {
    let mut cfg = ListenerConfig::plain(SocketAddr::from(([127, 0, 0, 1], 0)));
    tweak(&mut cfg);
    let metrics = ConnMetrics::default();
    let server = HttpServer::start(&cfg, app(), metrics.clone())
        .await
        .expect("server starts");
    Running { server, metrics }
}

fn limits(tweak: impl FnOnce(&mut ConnLimits)) -> ConnLimits {
    let mut l = ConnLimits::default();
    tweak(&mut l);
    l
}

/// A TCP connection from `from` (any address in 127/8 is loopback).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// Everything the server sends until it closes (or resets) the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_ok(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    read_to_close(&mut s).await
}

#[tokio::test]
async fn a_slow_header_is_dropped_after_the_header_timeout_though_bytes_keep_coming() {
    let server = start(|c| c.limits = limits(|l| l.header_read_timeout_secs = 1)).await;
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    let header = b"GET /ok HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut sent = 0;
    // One byte every 100 ms: the whole header would take 8 s.
    let closed = loop {
        if sent == header.len() {
            break false;
        }
        if s.write_all(&header[sent..=sent]).await.is_err() {
            break true;
        }
        sent += 1;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => panic!("answered a header that never finished"),
            Err(_) => {}
        }
    };
    assert!(closed, "the slow header was served to its end");
    assert!(sent < header.len());
    assert_eq!(
        server.counter("http_connections_closed_total{reason=\"header_timeout\"}"),
        1
    );
    assert!(
        get_ok(server.addr()).await.ends_with("ok"),
        "others are served"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_long_stream_is_not() {
    let server = start(|c| c.limits = limits(|l| l.idle_timeout_secs = 1)).await;
    let mut idle = TcpStream::connect(server.addr()).await.expect("connect");
    idle.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        server.counter("http_connections_closed_total{reason=\"idle_timeout\"}"),
        1
    );

    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let streamed = read_to_close(&mut stream).await;
    assert!(
        streamed.contains("chunk 11"),
        "the stream was cut: {streamed}"
    );
    assert_eq!(
        server.counter("http_connections_closed_total{reason=\"idle_timeout\"}"),
        1,
        "the stream was not taken for idle"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let server = start(|c| c.limits = limits(|l| l.body_read_timeout_secs = 1)).await;
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly a little")
        .await
        .expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_flood_from_one_address_is_refused_while_another_client_is_served() {
    let cap = 8;
    let server = start(|c| {
        c.limits = limits(|l| {
            l.max_connections_per_address = cap;
            l.max_connections = 100;
        })
    })
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..2 * cap {
        let mut s = connect_from([127, 0, 0, 2], server.addr()).await;
        // Half a request header, then silence.
        s.write_all(b"GET /ok HTTP/1.1\r\nhost:")
            .await
            .expect("write");
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(n == 0 || text.starts_with("HTTP/1.1 503"), "{text}");
                assert!(n == 0 || text.contains("retry-after: 1"), "{text}");
                refused += 1;
            }
            Ok(Err(_)) => refused += 1,
            Err(_) => held.push(s),
        }
    }
    assert_eq!(held.len(), cap, "the address holds exactly its cap");
    assert_eq!(refused, cap);
    assert_eq!(
        server.counter("http_connections_refused_total{reason=\"address_cap\"}"),
        cap as u64
    );
    let mut other = connect_from([127, 0, 0, 3], server.addr()).await;
    other
        .write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.counter("http_connections_open"), cap as u64);
}

#[tokio::test]
async fn over_the_total_cap_a_connection_is_refused_and_a_freed_slot_is_reused() {
    let server = start(|c| {
        c.limits = limits(|l| {
            l.max_connections = 3;
            l.max_connections_per_address = 3;
        })
    })
    .await;
    assert_eq!(server.server.total_cap(), 3);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("answered");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s); // kept alive, holding its slot
    }
    let refused = get_ok(server.addr()).await;
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 503"),
        "{refused}"
    );
    assert_eq!(
        server.counter("http_connections_refused_total{reason=\"total_cap\"}"),
        1
    );
    drop(held.pop());
    testkit::until("the freed slot to be given back", async || {
        server.counter("http_connections_open") == 2
    })
    .await;
    let served = get_ok(server.addr()).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

// ---- HTTPS ----

struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn pki(name: &str) -> Pki {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name.push(rcgen::DnType::CommonName, name);
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = ca.self_signed(&key).expect("self-signed");
    Pki {
        ca_pem: cert.pem(),
        issuer: rcgen::Issuer::new(ca, key),
    }
}

/// A certificate for `localhost` valid from `from` to `until` seconds from
/// now, written to `dir` as web.crt / web.key; returns its DER.
fn issue(pki: &Pki, dir: &std::path::Path, from: i64, until: i64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
    p.not_before = now + time::Duration::seconds(from);
    p.not_after = now + time::Duration::seconds(until);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &pki.issuer).expect("signed");
    // Key first: a reload that sees a new key with the old certificate
    // refuses the pair and tries again when the certificate lands.
    std::fs::write(dir.join("web.key"), key.serialize_pem()).expect("write key");
    std::fs::write(dir.join("web.crt"), cert.pem()).expect("write cert");
    cert.der().to_vec()
}

fn tls_files(dir: &std::path::Path) -> TlsFiles {
    let mut f = TlsFiles::new(dir.join("web.crt"), dir.join("web.key"));
    f.reload_check_ms = 50;
    f
}

fn client(trusting: &Pki) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(trusting.ca_pem.as_bytes())
        .expect("CA pem");
    roots.add(der).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // A resumed session shows the certificate of the first handshake.
    let mut tls = tls;
    tls.resumption = rustls::client::Resumption::disabled();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .tls_info(true)
        .pool_max_idle_per_host(0) // a new handshake each time: rotation shows
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .expect("client")
}

use rustls::pki_types::pem::PemObject;

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

async fn served_cert(client: &reqwest::Client, addr: SocketAddr) -> Result<Vec<u8>, String> {
    let resp = client
        .get(url(addr, "/ok"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec);
    info.ok_or_else(|| "no peer certificate".into())
}

#[tokio::test]
async fn https_serves_a_trusting_client_and_refuses_the_rest_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = pki("our CA");
    issue(&ours, dir.path(), -60, 3_600);
    let server = start(|c| c.tls = Some(tls_files(dir.path()))).await;
    let addr = server.addr();

    let resp = client(&ours)
        .get(url(addr, "/info"))
        .send()
        .await
        .expect("trusted");
    assert_eq!(resp.status(), 200);
    let hsts = resp.headers().get("strict-transport-security").cloned();
    assert_eq!(
        hsts.as_ref().map(|v| v.to_str().ok()),
        Some(Some("max-age=31536000"))
    );
    assert_eq!(
        resp.text().await.expect("body"),
        "tls=true credentials=true"
    );

    let stranger = pki("someone else's CA");
    let err = client(&stranger)
        .get(url(addr, "/ok"))
        .send()
        .await
        .expect_err("untrusted");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut plain).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("https_required"), "{answer}");
    assert_eq!(
        server.counter("http_connections_closed_total{reason=\"plain_http_on_tls\"}"),
        1
    );
    assert!(server.counter("http_connections_closed_total{reason=\"tls_handshake\"}") >= 1);
    assert_eq!(
        client(&ours)
            .get(url(addr, "/ok"))
            .send()
            .await
            .expect("still serving")
            .status(),
        200
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused_at_start_on_reload_and_by_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = pki("our CA");
    issue(&ours, dir.path(), -7_200, -3_600);
    let mut cfg = ListenerConfig::plain(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.tls = Some(tls_files(dir.path()));
    let err = HttpServer::start(&cfg, app(), ConnMetrics::default())
        .await
        .err()
        .expect("an expired certificate does not start");
    assert!(err.to_string().contains("expired"), "{err}");

    // Valid for two more seconds: served, then expired under the running
    // server, which clients refuse; a rotation to an expired one is refused.
    let first = issue(&ours, dir.path(), -60, 2);
    let server = start(|c| c.tls = Some(tls_files(dir.path()))).await;
    let trusting = client(&ours);
    assert_eq!(
        served_cert(&trusting, server.addr()).await,
        Ok(first.clone())
    );
    issue(&ours, dir.path(), -7_200, -3_600);
    testkit::until(
        "the rotation to an expired certificate to be refused",
        async || server.counter("http_tls_reloads_total{outcome=\"refused\"}") >= 1,
    )
    .await;
    assert_eq!(
        server.counter("http_tls_reloads_total{outcome=\"loaded\"}"),
        0
    );
    testkit::until("the first certificate to expire", async || {
        served_cert(&trusting, server.addr())
            .await
            .is_err_and(|e| e.contains("Expired"))
    })
    .await;
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = pki("our CA");
    let first = issue(&ours, dir.path(), -60, 3_600);
    let server = start(|c| c.tls = Some(tls_files(dir.path()))).await;
    let trusting = client(&ours);
    assert_eq!(
        served_cert(&trusting, server.addr()).await,
        Ok(first.clone())
    );
    let second = issue(&ours, dir.path(), -60, 7_200);
    assert_ne!(first, second);
    testkit::until("the rotated certificate to be served", async || {
        served_cert(&trusting, server.addr()).await == Ok(second.clone())
    })
    .await;
}
