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
use sync_link::task::{AbortOnDrop, stopped};
use sync_link::{End, FrameError, Shell, Work, drive};
use sync_protocol::Timestamp;
use sync_protocol::backoff::Backoff;
use sync_protocol::session::edge::{EdgeSession, EdgeSessionConfig, SessionError};
use tokio::sync::watch;

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

/// TLS 1.3 client config: trust only the hub's CA, present this edge's cert.
pub fn client_config(link: &HubLinkConfig) -> Result<quinn::ClientConfig, SyncSetupError> {
    sync_link::tls::client_config(&link.ca_cert, &link.cert, &link.key).map_err(|e| match e {
        sync_link::tls::TlsError::File { path, reason } => SyncSetupError::File { path, reason },
        e => SyncSetupError::Tls(e.to_string()),
    })
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

async fn session(
    endpoint: &quinn::Endpoint,
    edge: &LinkPort,
    link: &HubLinkConfig,
    stop: watch::Receiver<bool>,
    established: &AtomicBool,
) -> Result<(), LinkError> {
    let (conn, mut send, recv) = connect(endpoint, link).await?;
    let (published, epoch) = edge.sync_state().await?;
    let mut committed = edge.subscribe_committed();
    let mut cfg = EdgeSessionConfig::new(edge.edge_id().clone(), edge.cells().to_vec());
    cfg.max_batch_events = link.max_batch_events;
    cfg.max_in_flight = link.max_in_flight;
    let mut core = EdgeSession::new(cfg, now(), *committed.borrow_and_update(), epoch);
    let mut shell = EdgeShell {
        edge,
        committed,
        marked: published,
        stored_epoch: epoch,
        established,
    };
    let end = drive(&mut core, &mut shell, recv, &mut send, &SystemClock, stop).await?;
    match end {
        End::Stopped => {
            conn.close(0u32.into(), b"edge stopping");
            Ok(())
        }
        End::PeerFinished | End::Closed => Err(LinkError::Closed),
    }
}

/// The edge's side of the shared link driver: the outbox read through the
/// read pool, acknowledgements marked, the lease epoch and neighbouring
/// recipients handed to the writer.
struct EdgeShell<'a> {
    edge: &'a LinkPort,
    committed: watch::Receiver<u64>,
    /// The highest seq marked published in the store.
    marked: u64,
    stored_epoch: u64,
    established: &'a AtomicBool,
}

impl Shell<EdgeSession> for EdgeShell<'_> {
    type Error = LinkError;

    async fn prepare(&mut self, core: &mut EdgeSession, _: &dyn Clock) -> Result<Work, LinkError> {
        core.set_committed(*self.committed.borrow_and_update());
        ship(self.edge, core).await?;
        if core.acked() > self.marked {
            self.edge.mark_published(core.acked()).await?;
            self.marked = core.acked();
            let marked = self.marked;
            self.edge.update_status(|s| {
                s.acked_seq = marked;
                s.last_sync_at = Some(now());
            });
        }
        Ok(Work::Done)
    }

    async fn act(
        &mut self,
        core: &mut EdgeSession,
        (): (),
        _: &dyn Clock,
    ) -> Result<(), LinkError> {
        if core.is_streaming() && !self.established.load(Ordering::Relaxed) {
            welcomed(self.edge, core, self.stored_epoch).await?;
            self.established.store(true, Ordering::Relaxed);
        }
        if let Some(entries) = core.take_registry() {
            let n = self.edge.import_recipients(entries).await?;
            self.edge
                .update_status(|s| s.neighbours_imported += n as u64);
        }
        Ok(())
    }

    async fn wake(&mut self) {
        // The writer gone means the edge is stopping; the stop signal ends
        // the session, so never wake for that.
        if self.committed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Reads the committed outbox rows the session wants and hands them to the
/// core (the driver sends them, with whatever else the core has to say).
async fn ship(edge: &LinkPort, core: &mut EdgeSession) -> Result<(), LinkError> {
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
        s.last_sync_at = Some(now());
    });
    tracing::info!(
        acked = core.acked(),
        lease_epoch = core.lease_epoch(),
        "hub link up"
    );
    Ok(())
}
