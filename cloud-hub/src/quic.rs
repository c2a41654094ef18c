//! The QUIC side of the hub: accept edges (mutual TLS), and for each one run
//! a [`HubSession`] core on the shared link driver (`sync_link::drive`)
//! against its stream and a PostgreSQL connection of its own. The shell here
//! only runs queries: when to renew leases (`lease::Renewal`) and which
//! neighbours to push (`session::feed::RegistryFeed`) are decided by
//! I/O-free cores. A protocol violation or a failed apply ends the session;
//! the edge reconnects and resumes from the stored high-water mark.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use s2::cellid::CellID;
use sync_link::{Clock, FrameError, Shell, Work};
use sync_protocol::lease::Renewal;
use sync_protocol::session::RefusalReason;
use sync_protocol::session::feed::RegistryFeed;
use sync_protocol::session::hub::{Action, Apply, Hello, HubSession, HubSessionError};
use sync_protocol::session::msg::MAX_REGISTRY_ENTRIES;
use sync_protocol::{Duration, EdgeId, Timestamp};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::Instrument;

use crate::db::{self, DbError, apply, leases, queries};
use crate::stats::HubStats;

/// What every session needs.
pub struct Ctx {
    pub database_url: String,
    pub lease_ttl: Duration,
    pub registry_refresh: StdDuration,
    /// One permit per session (`max_sessions`), taken before the handshake
    /// and held until the session ends: a burst of handshakes cannot pass
    /// the cap.
    pub slots: Arc<Semaphore>,
    pub stats: Arc<HubStats>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("lease_ttl", &self.lease_ttl)
            .field("registry_refresh", &self.registry_refresh)
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("refused: {0:?}")]
    Refused(RefusalReason),
    #[error("the edge went silent")]
    Idle,
}

impl From<HubSessionError> for SessionEnd {
    fn from(e: HubSessionError) -> SessionEnd {
        match e {
            HubSessionError::Refused(r) => SessionEnd::Refused(r),
            HubSessionError::IdleTimeout => SessionEnd::Idle,
        }
    }
}

/// Accepts connections until `stop` flips. A connection beyond the session
/// cap is refused before its handshake.
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => match ctx.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        tokio::spawn(connection(incoming, slot, ctx.clone(), stop.clone()));
                    }
                    Err(_) => {
                        HubStats::add(&ctx.stats.sessions_refused, 1);
                        incoming.refuse();
                    }
                },
                None => break,
            },
            () = sync_link::task::stopped(&mut stop) => break,
        }
    }
}

/// One connection, holding its session slot (`_slot`) until it ends,
/// however it ends.
async fn connection(
    incoming: quinn::Incoming,
    _slot: OwnedSemaphorePermit,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%remote, error = %e, "edge handshake failed");
            HubStats::add(&ctx.stats.sessions_refused, 1);
            return;
        }
    };
    let edge = match sync_link::tls::peer_edge_id(&conn) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "edge certificate names no edge");
            conn.close(1u32.into(), b"identity");
            return;
        }
    };
    let _open = OpenSession::new(&ctx.stats);
    let span = tracing::info_span!("sync_session", %edge);
    let result = run(&conn, edge.clone(), &ctx, stop).instrument(span).await;
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

/// The cells around `cells` (at each cell's own level) that are not among
/// them: where the neighbours whose recipients this edge may match live.
fn neighbours(cells: &[u64]) -> Vec<u64> {
    let own: BTreeSet<u64> = cells.iter().copied().collect();
    let mut out = BTreeSet::new();
    for &c in cells {
        let id = CellID(c);
        if !crate::region::valid_cell(c) {
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
    stop: watch::Receiver<bool>,
) -> Result<(), SessionEnd> {
    let (mut send, recv) = conn.accept_bi().await?;
    let db = db::connect(&ctx.database_url).await?;
    let hw = queries::progress(&db, &edge)
        .await?
        .map_or(0, |p| p.high_water);
    let clock = &*ctx.clock;
    let mut core = HubSession::new(edge.clone(), hw, clock.now());
    let mut shell = HubShell {
        db,
        edge,
        ctx,
        home_region: None,
        feed: None,
        renewal: None,
        registry_tick: tokio::time::interval(ctx.registry_refresh),
    };
    sync_link::drive(&mut core, &mut shell, recv, &mut send, clock, stop).await?;
    Ok(())
}

/// The hub's shell around one session: PostgreSQL and the stats.
struct HubShell<'a> {
    db: tokio_postgres::Client,
    edge: EdgeId,
    ctx: &'a Ctx,
    /// Set at Hello: where this edge's log lives.
    home_region: Option<i64>,
    /// Set at Hello: the neighbours' recipients this edge is fed.
    feed: Option<RegistryFeed>,
    /// Set at Hello: when to extend this edge's leases.
    renewal: Option<Renewal>,
    registry_tick: tokio::time::Interval,
}

impl Shell<HubSession> for HubShell<'_> {
    type Error = SessionEnd;

    /// Renews the leases when due, then reads one page of the registry pass
    /// under way, if any (the next page comes on the next turn, so a large
    /// registry never sits in memory whole).
    async fn prepare(
        &mut self,
        core: &mut HubSession,
        clock: &dyn Clock,
    ) -> Result<Work, SessionEnd> {
        let now = clock.now();
        if let Some(renewal) = self.renewal.as_mut().filter(|r| r.due(now)) {
            leases::renew(&self.db, &self.edge, renewal.renewed(now)).await?;
        }
        let Some(feed) = self.feed.as_mut() else {
            return Ok(Work::Done);
        };
        let Some(after) = feed.next_page() else {
            return Ok(Work::Done);
        };
        let rows = queries::registry(
            &self.db,
            &self.edge,
            feed.cells(),
            after,
            MAX_REGISTRY_ENTRIES,
        )
        .await?;
        let fresh = feed.page(rows, MAX_REGISTRY_ENTRIES);
        if !fresh.is_empty() {
            core.push_registry(fresh);
        }
        Ok(match feed.next_page() {
            Some(_) => Work::More,
            None => Work::Done,
        })
    }

    async fn act(
        &mut self,
        core: &mut HubSession,
        action: Action,
        clock: &dyn Clock,
    ) -> Result<(), SessionEnd> {
        match action {
            Action::None => Ok(()),
            Action::Greet(hello) => self.greet(core, hello, clock).await,
            Action::Apply(batch) => self.apply(core, batch, clock).await,
        }
    }

    /// A registry refresh is due: start a pass (the tick is cancel-safe).
    async fn wake(&mut self) {
        self.registry_tick.tick().await;
        if let Some(feed) = self.feed.as_mut() {
            feed.start_pass();
        }
    }
}

impl HubShell<'_> {
    /// Registers the edge, grants its leases, answers the Hello and starts
    /// feeding it its neighbours.
    async fn greet(
        &mut self,
        core: &mut HubSession,
        hello: Hello,
        clock: &dyn Clock,
    ) -> Result<(), SessionEnd> {
        let registered = queries::register(&self.db, &self.edge, &hello.cells).await?;
        self.home_region = Some(registered.home_region);
        let t = clock.now();
        // The core admitted only its own protocol version.
        crate::db::fleet::record_hello(
            &self.db,
            self.edge.as_str(),
            hello.committed_seq,
            sync_protocol::session::PROTOCOL_VERSION,
            crate::http::odt(t),
        )
        .await?;
        let ttl = self.ctx.lease_ttl;
        let granted = leases::grant(
            &mut self.db,
            &self.edge,
            &hello.cells,
            hello.lease_epoch,
            t,
            ttl,
        )
        .await?;
        core.greet(t, granted.epoch, granted.conflicts);
        self.renewal = Some(Renewal::new(ttl, t));
        let mut feed = RegistryFeed::new(neighbours(&hello.cells));
        feed.start_pass();
        self.feed = Some(feed);
        Ok(())
    }

    async fn apply(
        &mut self,
        core: &mut HubSession,
        batch: Apply,
        clock: &dyn Clock,
    ) -> Result<(), SessionEnd> {
        let started = std::time::Instant::now();
        let home = self
            .home_region
            .ok_or_else(|| DbError::Integrity("a batch before Hello".into()))?;
        // Its own root: a session lasts hours, a batch milliseconds.
        let span = tracing::info_span!(
            parent: None,
            "hub.apply",
            edge.id = %self.edge,
            first_seq = batch.first_seq,
            last_seq = batch.last_seq
        );
        let applied = apply::apply_batch(&mut self.db, &self.edge, home, &batch)
            .instrument(span)
            .await?;
        let t = clock.now();
        record(&self.ctx.stats, &applied, started, t);
        core.applied(t, batch.last_seq);
        Ok(())
    }
}

fn record(s: &HubStats, applied: &apply::Applied, started: std::time::Instant, t: Timestamp) {
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
