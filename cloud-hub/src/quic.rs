//! The QUIC side of the hub: accept edges (mutual TLS), and for each one run
//! a [`HubSession`] core against its stream and a PostgreSQL connection of its
//! own. A protocol violation or a failed apply ends the session; the edge
//! reconnects and resumes from the stored high-water mark.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use s2::cellid::CellID;
use sync_protocol::session::hub::{Action, HubSession};
use sync_protocol::session::io::{FrameError, read_frame, write_frame};
use sync_protocol::session::msg::MAX_REGISTRY_ENTRIES;
use sync_protocol::session::{EdgeMsg, HubMsg, RefusalReason};
use sync_protocol::{Duration, EdgeId, RecipientId, Timestamp};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::db::{self, DbError, apply, leases, queries};
use crate::stats::HubStats;

pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp::from_unix_ms(ms)
}

/// What every session needs.
#[derive(Debug)]
pub struct Ctx {
    pub database_url: String,
    pub lease_ttl: Duration,
    pub registry_refresh: StdDuration,
    pub max_sessions: usize,
    pub stats: Arc<HubStats>,
}

#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("refused: {0:?}")]
    Refused(RefusalReason),
    #[error("the edge went silent")]
    Idle,
}

/// Accepts connections until `stop` flips.
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    tokio::spawn(connection(incoming, ctx.clone(), stop.clone()));
                }
                None => break,
            },
            () = stopped(&mut stop) => break,
        }
    }
}

async fn connection(incoming: quinn::Incoming, ctx: Arc<Ctx>, stop: watch::Receiver<bool>) {
    if HubStats::get(&ctx.stats.sessions_open) as usize >= ctx.max_sessions {
        HubStats::add(&ctx.stats.sessions_refused, 1);
        incoming.refuse();
        return;
    }
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%remote, error = %e, "edge handshake failed");
            HubStats::add(&ctx.stats.sessions_refused, 1);
            return;
        }
    };
    let edge = match crate::tls::edge_identity(&conn) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "edge certificate names no edge");
            conn.close(1u32.into(), b"identity");
            return;
        }
    };
    let _open = OpenSession::new(&ctx.stats);
    let span = tracing::info_span!("sync_session", %edge);
    let result = tracing::Instrument::instrument(run(&conn, edge.clone(), &ctx, stop), span).await;
    match result {
        Ok(()) => tracing::info!(%edge, "session closed"),
        Err(e) => tracing::warn!(%edge, error = %e, "session ended"),
    }
    conn.close(0u32.into(), b"bye");
}

/// Counts a session open for as long as it lives, however it ends (a panic
/// in the session unwinds through here too).
struct OpenSession<'a>(&'a HubStats);

impl<'a> OpenSession<'a> {
    fn new(stats: &'a HubStats) -> OpenSession<'a> {
        HubStats::add(&stats.sessions_open, 1);
        OpenSession(stats)
    }
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.0
            .sessions_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn neighbours(cells: &[u64]) -> Vec<u64> {
    let own: BTreeSet<u64> = cells.iter().copied().collect();
    let mut out = BTreeSet::new();
    for &c in cells {
        let id = CellID(c);
        if !id.is_valid() {
            continue;
        }
        for n in id.all_neighbors(id.level()) {
            if !own.contains(&n.0) {
                out.insert(n.0);
            }
        }
    }
    out.into_iter().collect()
}

async fn run(
    conn: &quinn::Connection,
    edge: EdgeId,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SessionEnd> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let mut db = db::connect(&ctx.database_url).await?;
    let hw = queries::progress(&db, &edge)
        .await?
        .map_or(0, |p| p.high_water);
    let mut session = HubSession::new(edge.clone(), hw, now());
    // Set at Hello: where this edge's log lives.
    let mut home_region = None;
    // Frames are read by their own task so reading is never cancelled halfway.
    let (tx, mut rx) = mpsc::channel::<Result<Option<EdgeMsg>, FrameError>>(4);
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_frame::<EdgeMsg, _>(&mut recv).await;
            let end = !matches!(frame, Ok(Some(_)));
            if tx.send(frame).await.is_err() || end {
                break;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut feed = RegistryFeed::default();
    let mut registry_tick = tokio::time::interval(ctx.registry_refresh);
    let mut renewed = now();
    loop {
        while let Some(msg) = session.poll_transmit(now()) {
            write_frame(&mut send, &msg).await?;
        }
        if session.is_closed() {
            finish(&mut send).await;
            return Ok(());
        }
        let wake = session
            .poll_timeout()
            .map_or(StdDuration::from_secs(1), |t| {
                StdDuration::from_millis((t - now()).as_ms().clamp(0, 60_000) as u64)
            });
        tokio::select! {
            frame = rx.recv() => {
                let msg = match frame {
                    Some(Ok(Some(m))) => m,
                    Some(Ok(None)) | None => return Ok(()),
                    Some(Err(FrameError::Wire(_))) => {
                        write_frame(&mut send, &HubMsg::Refused { reason: RefusalReason::Malformed }).await?;
                        finish(&mut send).await;
                        return Err(SessionEnd::Refused(RefusalReason::Malformed));
                    }
                    Some(Err(e)) => return Err(e.into()),
                };
                match session.handle(now(), msg) {
                    Ok(Action::None) => {}
                    Ok(Action::Greet(hello)) => {
                        let registered = queries::register(&db, &edge, &hello.cells).await?;
                        home_region = Some(registered.home_region);
                        let t = now();
                        let granted = leases::grant(&mut db, &edge, &hello.cells, hello.lease_epoch, t, ctx.lease_ttl).await?;
                        session.greet(t, granted.epoch, granted.conflicts);
                        feed.cells = neighbours(&hello.cells);
                        feed.push(&db, &edge, &mut session).await?;
                        renewed = t;
                    }
                    Ok(Action::Apply(batch)) => {
                        let started = std::time::Instant::now();
                        let home = home_region.ok_or_else(|| DbError::Integrity("a batch before Hello".into()))?;
                        // Its own root: a session lasts hours, a batch
                            // milliseconds.
                            let span = tracing::info_span!(
                            parent: None,
                            "hub.apply",
                            edge.id = %edge,
                            first_seq = batch.first_seq,
                            last_seq = batch.last_seq
                        );
                        let applied = apply::apply_batch(&mut db, &edge, home, &batch)
                            .instrument(span)
                            .await?;
                        let t = now();
                        record(ctx, &applied, started, t);
                        session.applied(t, batch.last_seq);
                    }
                    Err(reason) => {
                        while let Some(msg) = session.poll_transmit(now()) {
                            write_frame(&mut send, &msg).await?;
                        }
                        finish(&mut send).await;
                        return Err(SessionEnd::Refused(reason));
                    }
                }
            }
            () = tokio::time::sleep(wake) => {
                if session.handle_timeout(now()).is_err() {
                    return Err(SessionEnd::Idle);
                }
            }
            _ = registry_tick.tick() => {
                if !feed.cells.is_empty() {
                    feed.push(&db, &edge, &mut session).await?;
                }
            }
            () = stopped(&mut stop) => {
                finish(&mut send).await;
                return Ok(());
            }
        }
        // Keep the leases of a live edge from lapsing.
        let t = now();
        if t - renewed >= Duration::from_ms(ctx.lease_ttl.as_ms() / 4) {
            leases::renew(&db, &edge, t, ctx.lease_ttl).await?;
            renewed = t;
        }
    }
}

fn record(ctx: &Ctx, applied: &apply::Applied, started: std::time::Instant, t: Timestamp) {
    let s = &ctx.stats;
    HubStats::add(&s.batches, 1);
    HubStats::add(&s.events, applied.events as u64);
    HubStats::add(&s.fenced, applied.fenced as u64);
    let took = started.elapsed();
    HubStats::add(&s.apply_busy_ns, took.as_nanos() as u64);
    let _ = s.apply_ns.lock().record((took.as_nanos() as u64).max(1));
    s.metrics.events_applied.inc_by(applied.events as u64);
    s.metrics.apply_duration.observe(took.as_secs_f64());
    if applied.delivered_g > 0 {
        s.metrics
            .tons_prevented
            .inc_by(applied.delivered_g as f64 / 1_000_000.0);
    }
    let mut lag = s.lag_ms.lock();
    for at in &applied.ats {
        let ms = (t - *at).as_ms().max(1) as u64;
        let _ = lag.record(ms);
        s.metrics.replication_lag.observe(ms as f64 / 1_000.0);
    }
}

/// Re-reading this far behind the newest registration pushed covers rows
/// whose transaction began (and took its `received_at`) before an earlier
/// read but committed after it.
const REGISTRY_OVERLAP: time::Duration = time::Duration::seconds(60);

/// The neighbour registry of one session: recipients of other edges in the
/// cells around this edge's, pushed once each, newest registrations
/// followed by the hub's own clock.
#[derive(Default)]
struct RegistryFeed {
    cells: Vec<u64>,
    /// The newest `received_at` pushed.
    newest: Option<OffsetDateTime>,
    /// What was pushed inside the overlap window (so it is not sent again).
    sent: HashMap<RecipientId, OffsetDateTime>,
}

impl RegistryFeed {
    async fn push(
        &mut self,
        db: &tokio_postgres::Client,
        edge: &EdgeId,
        session: &mut HubSession,
    ) -> Result<(), DbError> {
        let since = self
            .newest
            .map_or(OffsetDateTime::UNIX_EPOCH, |t| t - REGISTRY_OVERLAP);
        let mut after = (since, uuid::Uuid::nil());
        let mut fresh = Vec::new();
        loop {
            let page =
                queries::registry(db, edge, &self.cells, after, MAX_REGISTRY_ENTRIES).await?;
            let full = page.len() == MAX_REGISTRY_ENTRIES;
            for (entry, at) in page {
                after = (at, *entry.id.as_uuid());
                // New, or changed since it was sent (an erasure bumps
                // `received_at`): send it; the same version again: skip.
                if self.sent.insert(entry.id, at) != Some(at) {
                    fresh.push(entry);
                }
                self.newest = self.newest.max(Some(at));
            }
            if !full {
                break;
            }
        }
        if let Some(newest) = self.newest {
            self.sent.retain(|_, at| *at >= newest - REGISTRY_OVERLAP);
        }
        if !fresh.is_empty() {
            session.push_registry(fresh);
        }
        Ok(())
    }
}

/// Finishes the stream and waits (briefly) until the peer has it all:
/// closing the connection at once would discard a last `Refused`.
async fn finish(send: &mut quinn::SendStream) {
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(StdDuration::from_secs(2), send.stopped()).await;
    }
}

/// Resolves when `stop` flips to true (the guard is dropped inside).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
