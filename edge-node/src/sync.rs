//! The edge's link to the hub: QUIC with mutual TLS (quinn + rustls), driving
//! the I/O-free `EdgeSession` core. It runs beside the edge and never sits on
//! the path of a post or a claim: it reads committed outbox rows through the
//! read-only pool; what it hands the writer (acknowledged marks, the lease
//! epoch, neighbouring recipients in slices) waits for room in the queue
//! rather than failing. When the hub is gone it retries with jittered
//! exponential backoff (back to the shortest wait after each established
//! session), for as long as it takes, and catches up from the hub's
//! high-water mark. Backlog and lag stay current while disconnected.

use std::net::SocketAddr;
use std::time::Duration as StdDuration;
use tracing::Instrument;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sync_link::task::{AbortOnDrop, stopped};
use sync_link::{FrameError, read_frame, write_frame};
use sync_protocol::Timestamp;
use sync_protocol::session::HubMsg;
use sync_protocol::session::edge::{EdgeSession, EdgeSessionConfig, SessionError};
use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, SystemClock};
use crate::config::HubLinkConfig;
use crate::service::{EdgeError, EdgeHandle};

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
pub fn spawn(
    edge: EdgeHandle,
    link: HubLinkConfig,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SyncSetupError> {
    let client = client_config(&link)?;
    let bind: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut endpoint = quinn::Endpoint::client(bind).map_err(SyncSetupError::Bind)?;
    endpoint.set_default_client_config(client);
    edge.shared().sync.write().enabled = true;
    Ok(tokio::spawn(run(endpoint, edge, link, stop)))
}

fn now() -> Timestamp {
    SystemClock.now()
}

async fn run(
    endpoint: quinn::Endpoint,
    edge: EdgeHandle,
    link: HubLinkConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(link.reconnect_min_ms, link.reconnect_max_ms);
    let mut rng = SmallRng::from_os_rng();
    let status = AbortOnDrop(tokio::spawn(track_lag(edge.clone())));
    loop {
        let sessions_before = edge.shared().sync.read().sessions;
        // Each session runs in its own task: a bug that panics one is logged
        // and the link retried, instead of silently ending sync for good.
        let task = tokio::spawn({
            let (endpoint, edge, link, stop) =
                (endpoint.clone(), edge.clone(), link.clone(), stop.clone());
            async move { session(&endpoint, &edge, &link, stop).await }
        });
        let abort = task.abort_handle();
        let result = tokio::select! {
            r = task => r.unwrap_or_else(|e| Err(LinkError::Panicked(e.to_string()))),
            () = stopped(&mut stop) => {
                abort.abort();
                break;
            }
        };
        {
            let mut s = edge.shared().sync.write();
            s.connected = false;
            if let Err(e) = &result {
                s.last_error = Some(e.to_string());
            }
        }
        // A session that got as far as Welcome proves the hub is back: the
        // next reconnect starts from the shortest wait again.
        if edge.shared().sync.read().sessions > sessions_before {
            backoff.reset();
        }
        let wait = backoff.next_wait(&mut rng);
        if let Err(e) = &result {
            tracing::warn!(error = %e, retry_in_ms = wait, "hub link down");
        }
        tokio::select! {
            () = tokio::time::sleep(StdDuration::from_millis(wait)) => {}
            () = stopped(&mut stop) => break,
        }
    }
    drop(status);
    endpoint.close(0u32.into(), b"edge stopping");
}

/// Reconnect waits: doubling from `min` to `max`, back to `min` once a
/// session is established.
#[derive(Debug, Clone)]
struct Backoff {
    min: u64,
    max: u64,
    current: u64,
}

impl Backoff {
    fn new(min: u64, max: u64) -> Backoff {
        Backoff {
            min,
            max,
            current: min,
        }
    }

    fn reset(&mut self) {
        self.current = self.min;
    }

    /// The next wait in ms, jittered over [current/2, current] so edges that
    /// lost the hub together do not all come back in the same millisecond.
    fn next_wait(&mut self, rng: &mut impl Rng) -> u64 {
        let wait = rng.random_range(self.current / 2..=self.current.max(1));
        self.current = self.current.saturating_mul(2).min(self.max);
        wait
    }
}

/// Keeps `lag_seconds` current whether or not the hub is reachable: the age
/// of the oldest committed event the hub has not acknowledged.
async fn track_lag(edge: EdgeHandle) {
    let mut tick = tokio::time::interval(StdDuration::from_secs(1));
    loop {
        tick.tick().await;
        let acked = edge.shared().sync.read().acked_seq;
        let oldest = if edge.committed_seq() > acked {
            edge.event_time(acked + 1).await.ok().flatten()
        } else {
            None
        };
        let lag = oldest.map_or(0.0, |t| (now() - t).as_secs_f64().max(0.0));
        edge.shared().sync.write().lag_seconds = lag;
    }
}

async fn session(
    endpoint: &quinn::Endpoint,
    edge: &EdgeHandle,
    link: &HubLinkConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<(), LinkError> {
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
    let (mut send, mut recv) = conn.open_bi().await?;
    tracing::debug!(%addr, "connected; saying hello");
    let (published, epoch) = edge.sync_state().await?;
    let mut committed = edge.subscribe_committed();
    let mut cfg = EdgeSessionConfig::new(
        sync_protocol::EdgeId::new(&edge.config().edge_id).map_err(|_| LinkError::Closed)?,
        edge.cells().iter().collect(),
    );
    cfg.max_batch_events = link.max_batch_events;
    cfg.max_in_flight = link.max_in_flight;
    let mut core = EdgeSession::new(cfg, now(), *committed.borrow_and_update(), epoch);
    let (tx, mut rx) = mpsc::channel::<Result<Option<HubMsg>, FrameError>>(8);
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_frame::<HubMsg, _>(&mut recv).await;
            let end = !matches!(frame, Ok(Some(_)));
            if tx.send(frame).await.is_err() || end {
                break;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut marked = published;
    loop {
        core.set_committed(*committed.borrow_and_update());
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
            write_frame(&mut send, &msg).await?;
        }
        if core.acked() > marked {
            edge.mark_published(core.acked()).await?;
            marked = core.acked();
            edge.shared().sync.write().acked_seq = marked;
        }
        let wake = core.poll_timeout().map_or(StdDuration::from_secs(1), |t| {
            StdDuration::from_millis((t - now()).as_ms().clamp(1, 1_000) as u64)
        });
        tokio::select! {
            frame = rx.recv() => {
                let msg = match frame {
                    Some(Ok(Some(m))) => m,
                    Some(Ok(None)) | None => return Err(LinkError::Closed),
                    Some(Err(e)) => return Err(e.into()),
                };
                let was_streaming = core.is_streaming();
                core.handle(now(), msg)?;
                if !was_streaming && core.is_streaming() {
                    welcomed(edge, &core, epoch).await?;
                }
                if let Some(entries) = core.take_registry() {
                    let n = edge.import_recipients(entries).await?;
                    edge.shared().sync.write().neighbours_imported += n as u64;
                }
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

async fn welcomed(
    edge: &EdgeHandle,
    core: &EdgeSession,
    stored_epoch: u64,
) -> Result<(), LinkError> {
    if core.lease_epoch() != stored_epoch {
        edge.set_lease_epoch(core.lease_epoch()).await?;
    }
    if !core.conflicts().is_empty() {
        tracing::warn!(cells = ?core.conflicts(), "another edge holds the lease of some of our cells; the hub fences our events there");
    }
    let mut s = edge.shared().sync.write();
    s.connected = true;
    s.lease_epoch = core.lease_epoch();
    s.conflicts = core.conflicts().to_vec();
    s.acked_seq = core.acked();
    s.last_error = None;
    s.sessions += 1;
    tracing::info!(
        acked = core.acked(),
        lease_epoch = core.lease_epoch(),
        "hub link up"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_after_a_session() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = Backoff::new(200, 30_000);
        let waits: Vec<u64> = (0..12).map(|_| b.next_wait(&mut rng)).collect();
        for (i, w) in waits.iter().enumerate() {
            let cap = (200u64 << i).min(30_000);
            assert!(
                (cap / 2..=cap).contains(w),
                "wait {i}: {w} outside [{}, {cap}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_wait(&mut rng) <= 200, "back to the shortest wait");
    }
}
