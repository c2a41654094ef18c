//! The server: its listeners' accept loops (caps enforced before anything
//! is read), each admitted connection's task (the TLS handshake, hyper's
//! HTTP/1.1, the connection's deadlines) and shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use axum::http::HeaderValue;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::caps::{self, Caps, Slot};
use crate::config::{ConnLimits, ListenerConfig};
use crate::conn::{ConnInfo, ConnService, ConnState, Tracked};
use crate::metrics::ConnMetrics;
use crate::tls::{self, TlsError};

/// In-flight requests (and streams) get this long after a stop before
/// their connections are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A failed `accept` (out of descriptors, say) is retried after this.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("http: {0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

fn canned(status: &str, extra: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    format!(
        "HTTP/1.1 {status}\r\n{extra}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer to a plain-HTTP connection over a cap.
static OVER_CAP: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        "503 Service Unavailable",
        "retry-after: 1\r\n",
        "too_many_connections",
        "too many open connections; retry later",
    )
});

/// The answer to plain HTTP on the HTTPS port.
static HTTPS_ONLY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        "400 Bad Request",
        "",
        "https_required",
        "this port speaks HTTPS only",
    )
});

/// What every connection of the server shares.
struct Shared {
    app: axum::Router,
    caps: Arc<Caps>,
    metrics: ConnMetrics,
    limits: ConnLimits,
    tls: Option<(TlsAcceptor, HeaderValue)>,
}

/// A running server: one or two listeners, one set of caps.
pub struct HttpServer {
    addrs: Vec<(SocketAddr, bool)>,
    total_cap: usize,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Raises the open-file limit, derives the total cap, loads the
    /// certificate, binds every address and starts serving `app`.
    pub async fn start(
        cfg: &ListenerConfig,
        app: axum::Router,
        metrics: ConnMetrics,
    ) -> Result<HttpServer, ListenError> {
        cfg.check().map_err(ListenError::Config)?;
        let fds = caps::raise_nofile();
        let limits = cfg.limits.clone();
        let total = caps::effective_total(limits.max_connections, fds.soft, limits.reserved_fds);
        tracing::info!(
            soft_limit_before = fds.soft_before,
            soft_limit = fds.soft,
            hard_limit = fds.hard,
            reserved_fds = limits.reserved_fds,
            max_connections = total,
            max_connections_per_address = limits.max_connections_per_address.min(total),
            "open-file limit raised to the hard limit; HTTP connections capped below it"
        );
        metrics.limit.set(i64::try_from(total).unwrap_or(i64::MAX));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let tls = match &cfg.tls {
            None => None,
            Some(files) => {
                let certs = tls::Reloading::new(tls::load(files, SystemTime::now())?);
                let acceptor = TlsAcceptor::from(tls::server_config(certs.clone())?);
                tasks.push(tokio::spawn(tls::watch(
                    files.clone(),
                    certs,
                    metrics.clone(),
                    stopped.clone(),
                )));
                let hsts = HeaderValue::from_str(&format!("max-age={}", files.hsts_max_age_secs))
                    .map_err(|e| ListenError::Config(e.to_string()))?;
                Some((acceptor, hsts))
            }
        };
        let shared = Arc::new(Shared {
            app,
            caps: Caps::new(total, limits.max_connections_per_address.min(total)),
            metrics,
            limits,
            tls,
        });
        let mut addrs = Vec::new();
        for (addr, is_tls) in cfg.addresses() {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ListenError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ListenError::Bind { addr, source })?;
            addrs.push((bound, is_tls));
            tasks.push(tokio::spawn(accept_loop(
                listener,
                is_tls,
                shared.clone(),
                stopped.clone(),
            )));
        }
        Ok(HttpServer {
            addrs,
            total_cap: total,
            stop,
            tasks,
        })
    }

    /// The main address (HTTPS when TLS is configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0].0
    }

    /// The extra plain-HTTP address, when configured.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.addrs.get(1).map(|(a, _)| *a)
    }

    pub fn is_tls(&self) -> bool {
        self.addrs[0].1
    }

    /// The total connection cap in effect.
    pub fn total_cap(&self) -> usize {
        self.total_cap
    }

    /// Stops accepting, lets in-flight requests finish within a grace
    /// period, then cuts what is left (SSE streams).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), t).await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    is_tls: bool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut last_error_log: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => admit(tcp, peer, is_tls, &shared, &mut conns, &stop),
                Err(e) => {
                    if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed");
                        last_error_log = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        conns.abort_all();
    }
}

/// An admitted connection's place and its share of the open gauge.
struct Held {
    _slot: Slot,
    open: Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.dec();
    }
}

fn admit(
    tcp: TcpStream,
    peer: SocketAddr,
    is_tls: bool,
    shared: &Arc<Shared>,
    conns: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
) {
    let slot = match shared.caps.admit(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            shared.metrics.refused(refusal.label());
            if !is_tls {
                refuse_plain(&tcp);
            }
            return;
        }
    };
    shared.metrics.accepted.inc();
    shared.metrics.open.inc();
    let held = Held {
        _slot: slot,
        open: shared.metrics.open.clone(),
    };
    let _ = tcp.set_nodelay(true);
    let Ok(local) = tcp.local_addr() else { return };
    let info = ConnInfo {
        peer,
        local,
        tls: is_tls,
    };
    conns.spawn(connection(tcp, info, shared.clone(), stop.clone(), held));
}

/// Over a cap on plain HTTP: what the client already sent is read (so the
/// close is not a reset that hides the answer), the 503 written if the
/// socket takes it at once, and the connection closed. Never waits.
fn refuse_plain(tcp: &TcpStream) {
    let mut scratch = [0u8; 4096];
    while matches!(tcp.try_read(&mut scratch), Ok(n) if n > 0) {}
    let _ = tcp.try_write(&OVER_CAP);
}

async fn connection(
    tcp: TcpStream,
    info: ConnInfo,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _held: Held,
) {
    let limits = &shared.limits;
    let state = ConnState::new(limits.header_read_timeout(), limits.idle_timeout());
    let tls = match &shared.tls {
        Some((acceptor, hsts)) if info.tls => Some((acceptor, hsts)),
        _ => None,
    };
    let Some((acceptor, hsts)) = tls else {
        let svc = service(&shared, &state, info, None);
        return serve(
            Tracked::new(tcp, state.clone()),
            svc,
            state,
            &shared.metrics,
            stop,
        )
        .await;
    };
    let due = Instant::now() + limits.header_read_timeout();
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(due, tcp.peek(&mut first)).await {
        Err(_) => return shared.metrics.closed("header_timeout"),
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) => {
            shared.metrics.closed("plain_http_on_tls");
            return https_only(tcp, due).await;
        }
        Ok(_) => return,
    }
    match tokio::time::timeout_at(due, acceptor.accept(tcp)).await {
        Err(_) => shared.metrics.closed("header_timeout"),
        Ok(Err(e)) => {
            tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
            shared.metrics.closed("tls_handshake");
        }
        Ok(Ok(stream)) => {
            let svc = service(&shared, &state, info, Some(hsts.clone()));
            serve(
                Tracked::new(stream, state.clone()),
                svc,
                state,
                &shared.metrics,
                stop,
            )
            .await;
        }
    }
}

/// Plain HTTP on the HTTPS port: one 400 naming the problem, then close.
async fn https_only(mut tcp: TcpStream, due: Instant) {
    let mut scratch = [0u8; 4096];
    while matches!(tcp.try_read(&mut scratch), Ok(n) if n > 0) {}
    let _ = tokio::time::timeout_at(due, async {
        let _ = tcp.write_all(&HTTPS_ONLY).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

fn service(
    shared: &Shared,
    state: &Arc<ConnState>,
    info: ConnInfo,
    hsts: Option<HeaderValue>,
) -> ConnService {
    ConnService {
        app: shared.app.clone(),
        state: state.clone(),
        info,
        body_timeout: shared.limits.body_read_timeout(),
        hsts,
    }
}

/// HTTP/1.1 on one connection until it ends, a deadline of its phase
/// passes (closed at once: nothing is in flight then) or the server stops
/// (finished gracefully; the accept loop cuts it after the grace period).
async fn serve<I>(
    io: Tracked<I>,
    svc: ConnService,
    state: Arc<ConnState>,
    metrics: &ConnMetrics,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = state.deadline();
        let expiry = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = expiry => {
                if let Some((at, why)) = state.deadline()
                    && at <= Instant::now()
                {
                    metrics.closed(why.label());
                    return;
                }
            }
            _ = state.moved() => {}
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
