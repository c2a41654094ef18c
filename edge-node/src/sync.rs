//! The edge's link to the hub: QUIC with mutual TLS (quinn + rustls), driving
//! the I/O-free `EdgeSession` core. It runs beside the edge and never sits on
//! the path of a post or a claim: it reads committed outbox rows through the
//! read-only pool; what it hands the writer (acknowledged marks, the lease
//! epoch, neighbouring recipients in slices) waits for room in the queue
//! rather than failing. When the hub is gone it retries with jittered
//! exponential backoff ([`sync_protocol::backoff::Backoff`]: back to the
//! shortest wait after each established session), for as long as it takes,
//! and catches up from the hub's high-water mark. Backlog and lag stay
//! current while disconnected. Everything it reaches goes through its port,
//! [`LinkPort`]; its status goes out on the port's `watch`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;
use tracing::Instrument;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sync_protocol::Timestamp;
use sync_protocol::backoff::Backoff;
use sync_protocol::session::edge::{EdgeSession, EdgeSessionConfig, SessionError};
use sync_protocol::session::io::{FrameError, read_frame, write_frame};
use sync_protocol::session::{ALPN, HubMsg};
use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, SystemClock};
use crate::config::HubLinkConfig;
use crate::ports::{EdgeError, LinkPort};

#[derive(Debug, thiserror::Error)]
pub enum SyncSetupError {
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("binding the QUIC client socket: {0}")]
    Bind(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("resolving {0}: no address")]
    Resolve(String),
    #[error("resolving the hub: {0}")]
    Lookup(std::io::Error),
    #[error("connecting: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("handshake timed out")]
    Timeout,
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("session: {0}")]
    Session(#[from] SessionError),
    #[error("the hub closed the stream")]
    Closed,
    #[error("edge: {0}")]
    Edge(#[from] EdgeError),
    #[error("the session task failed: {0}")]
    Panicked(String),
}

fn read_file_err(path: &std::path::Path, e: impl std::fmt::Display) -> SyncSetupError {
    SyncSetupError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// TLS 1.3 client config: trust only the hub's CA, present this edge's cert.
pub fn client_config(link: &HubLinkConfig) -> Result<quinn::ClientConfig, SyncSetupError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for ca in
        CertificateDer::pem_file_iter(&link.ca_cert).map_err(|e| read_file_err(&link.ca_cert, e))?
    {
        roots
            .add(ca.map_err(|e| read_file_err(&link.ca_cert, e))?)
            .map_err(|e| SyncSetupError::Tls(e.to_string()))?;
    }
    let certs = CertificateDer::pem_file_iter(&link.cert)
        .map_err(|e| read_file_err(&link.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_file_err(&link.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&link.key).map_err(|e| read_file_err(&link.key, e))?;
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| SyncSetupError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| SyncSetupError::Tls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            60_000,
        ))))
        .keep_alive_interval(Some(StdDuration::from_secs(5)));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// Starts the link in the background; it runs until `stop` flips.
/// `published` is the hub's high-water mark as last stored: the backlog
/// counts from there, from the first request on.
pub fn spawn(
    edge: LinkPort,
    link: HubLinkConfig,
    published: u64,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SyncSetupError> {
    let client = client_config(&link)?;
    let bind: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut endpoint = quinn::Endpoint::client(bind).map_err(SyncSetupError::Bind)?;
    endpoint.set_default_client_config(client);
    edge.update_status(|s| {
        s.enabled = true;
        s.acked_seq = published;
    });
    Ok(tokio::spawn(run(endpoint, edge, link, stop)))
}

fn now() -> Timestamp {
    SystemClock.now()
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run(
    endpoint: quinn::Endpoint,
    edge: LinkPort,
    link: HubLinkConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(link.reconnect_min_ms, link.reconnect_max_ms);
    let mut rng = SmallRng::from_os_rng();
    let status = AbortOnDrop(tokio::spawn(track_lag(edge.clone())));
    loop {
        // Set once the session got as far as Welcome: that proves the hub
        // is back, and the backoff starts from the shortest wait again.
        let established = Arc::new(AtomicBool::new(false));
        // Each session runs in its own task: a bug that panics one is logged
        // and the link retried, instead of silently ending sync for good.
        let task = tokio::spawn({
            let (endpoint, edge, link, stop, established) = (
                endpoint.clone(),
                edge.clone(),
                link.clone(),
                stop.clone(),
                established.clone(),
            );
            async move { session(&endpoint, &edge, &link, stop, &established).await }
        });
        let abort = task.abort_handle();
        let result = tokio::select! {
            r = task => r.unwrap_or_else(|e| Err(LinkError::Panicked(e.to_string()))),
            () = stopped(&mut stop) => {
                abort.abort();
                break;
            }
        };
        edge.update_status(|s| {
            s.connected = false;
            if let Err(e) = &result {
                s.last_error = Some(e.to_string());
            }
        });
        let wait = backoff.after_session(established.load(Ordering::Relaxed), rng.random());
        let wait = StdDuration::from_millis(u64::try_from(wait.as_ms()).unwrap_or(0));
        if let Err(e) = &result {
            tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "hub link down");
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => break,
        }
    }
    drop(status);
    endpoint.close(0u32.into(), b"edge stopping");
}

/// Keeps `lag_seconds` current whether or not the hub is reachable: the age
/// of the oldest committed event the hub has not acknowledged.
async fn track_lag(edge: LinkPort) {
    let mut tick = tokio::time::interval(StdDuration::from_secs(1));
    loop {
        tick.tick().await;
        let acked = edge.status().acked_seq;
        let oldest = if edge.committed_seq() > acked {
            edge.event_time(acked + 1).await.ok().flatten()
        } else {
            None
        };
        let lag = oldest.map_or(0.0, |t| (now() - t).as_secs_f64().max(0.0));
        edge.update_status(|s| s.lag_seconds = lag);
    }
}

/// Connects to the hub and opens the session's stream.
async fn connect(
    endpoint: &quinn::Endpoint,
    link: &HubLinkConfig,
) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), LinkError> {
    let addr = tokio::net::lookup_host(&link.address)
        .await
        .map_err(LinkError::Lookup)?
        .next()
        .ok_or_else(|| LinkError::Resolve(link.address.clone()))?;
    tracing::debug!(%addr, "connecting to the hub");
    let connecting = endpoint.connect(addr, &link.server_name)?;
    let conn = tokio::time::timeout(StdDuration::from_secs(10), connecting)
        .await
        .map_err(|_| LinkError::Timeout)??;
    let (send, recv) = conn.open_bi().await?;
    tracing::debug!(%addr, "connected; saying hello");
    Ok((conn, send, recv))
}

type Frames = mpsc::Receiver<Result<Option<HubMsg>, FrameError>>;

/// Reads the hub's frames in a task of its own (aborted with the session).
fn read_frames(mut recv: quinn::RecvStream) -> (Frames, AbortOnDrop) {
    let (tx, rx) = mpsc::channel(8);
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_frame::<HubMsg, _>(&mut recv).await;
            let end = !matches!(frame, Ok(Some(_)));
            if tx.send(frame).await.is_err() || end {
                break;
            }
        }
    });
    (rx, AbortOnDrop(reader))
}

async fn session(
    endpoint: &quinn::Endpoint,
    edge: &LinkPort,
    link: &HubLinkConfig,
    mut stop: watch::Receiver<bool>,
    established: &AtomicBool,
) -> Result<(), LinkError> {
    let (conn, mut send, recv) = connect(endpoint, link).await?;
    let (published, epoch) = edge.sync_state().await?;
    let mut committed = edge.subscribe_committed();
    let mut cfg = EdgeSessionConfig::new(edge.edge_id().clone(), edge.cells().to_vec());
    cfg.max_batch_events = link.max_batch_events;
    cfg.max_in_flight = link.max_in_flight;
    let mut core = EdgeSession::new(cfg, now(), *committed.borrow_and_update(), epoch);
    let (mut frames, _reader) = read_frames(recv);
    let mut marked = published;
    loop {
        core.set_committed(*committed.borrow_and_update());
        ship(edge, &mut core, &mut send).await?;
        if core.acked() > marked {
            edge.mark_published(core.acked()).await?;
            marked = core.acked();
            edge.update_status(|s| s.acked_seq = marked);
        }
        let wake = core.poll_timeout().map_or(StdDuration::from_secs(1), |t| {
            StdDuration::from_millis((t - now()).as_ms().clamp(1, 1_000) as u64)
        });
        tokio::select! {
            frame = frames.recv() => {
                let msg = match frame {
                    Some(Ok(Some(m))) => m,
                    Some(Ok(None)) | None => return Err(LinkError::Closed),
                    Some(Err(e)) => return Err(e.into()),
                };
                received(edge, &mut core, msg, epoch, established).await?;
            }
            _ = committed.changed() => {}
            () = tokio::time::sleep(wake) => core.handle_timeout(now())?,
            () = stopped(&mut stop) => {
                let _ = send.finish();
                conn.close(0u32.into(), b"edge stopping");
                return Ok(());
            }
        }
    }
}

/// Reads the committed outbox rows the session wants and sends them, with
/// whatever else the core has to say.
async fn ship(
    edge: &LinkPort,
    core: &mut EdgeSession,
    send: &mut quinn::SendStream,
) -> Result<(), LinkError> {
    while let Some(want) = core.wants() {
        // A batch carries events of many traces: its span is a root of
        // its own (each event's trace continues at the hub from the
        // context in its envelope).
        let publish = tracing::info_span!(
            parent: None,
            "outbox.publish",
            first_seq = want.after + 1,
            events = tracing::field::Empty
        );
        let events = edge
            .outbox_batch(want.after, want.max_events)
            .instrument(publish.clone())
            .await?;
        if events.is_empty() {
            break;
        }
        publish.record("events", events.len());
        let _publish = publish.entered();
        // Rows read are committed, even if committed after we last looked.
        core.set_committed(want.after + events.len() as u64);
        core.send_events(now(), want.after + 1, events);
    }
    while let Some(msg) = core.poll_transmit(now()) {
        write_frame(send, &msg).await?;
    }
    Ok(())
}

/// One message from the hub: into the core, then what it changed here.
async fn received(
    edge: &LinkPort,
    core: &mut EdgeSession,
    msg: HubMsg,
    stored_epoch: u64,
    established: &AtomicBool,
) -> Result<(), LinkError> {
    let was_streaming = core.is_streaming();
    core.handle(now(), msg)?;
    if !was_streaming && core.is_streaming() {
        welcomed(edge, core, stored_epoch).await?;
        established.store(true, Ordering::Relaxed);
    }
    if let Some(entries) = core.take_registry() {
        let n = edge.import_recipients(entries).await?;
        edge.update_status(|s| s.neighbours_imported += n as u64);
    }
    Ok(())
}

async fn welcomed(edge: &LinkPort, core: &EdgeSession, stored_epoch: u64) -> Result<(), LinkError> {
    if core.lease_epoch() != stored_epoch {
        edge.set_lease_epoch(core.lease_epoch()).await?;
    }
    if !core.conflicts().is_empty() {
        tracing::warn!(cells = ?core.conflicts(), "another edge holds the lease of some of our cells; the hub fences our events there");
    }
    edge.update_status(|s| {
        s.connected = true;
        s.lease_epoch = core.lease_epoch();
        s.conflicts = core.conflicts().to_vec();
        s.acked_seq = core.acked();
        s.last_error = None;
        s.sessions += 1;
    });
    tracing::info!(
        acked = core.acked(),
        lease_epoch = core.lease_epoch(),
        "hub link up"
    );
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
