//! The running edge: [`Edge::start`] opens the store, rebuilds state, starts
//! the writer thread and (optionally) the HTTP server; [`EdgeHandle`] is the
//! typed, async face of the edge that the HTTP handlers and `simulate` call.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};
use sync_protocol::{
    AuditRecord, Contact, GeoPoint, Provider, ProviderId, Recipient, RecipientId, SealedContact,
    Subject, SurplusId, SurplusStatus, TraceContext,
};
use tokio::sync::{broadcast, oneshot};

use crate::cells::CellSet;
use crate::clock::{Clock, SystemClock};
use crate::commands::{
    Actor, IdempotencyKey, NewProvider, NewRecipient, NewSurplus, Posted, Rejection, SurplusAction,
};
use crate::config::{EdgeConfig, Validated};
use crate::ids::IdGen;
use crate::read_model::{OfferNotice, ReadModel};
use crate::shared::Shared;
use crate::store::reader::ReadPool;
use crate::store::writer::{Command, Unavailable, Writer, WriterConfig};
use crate::store::{DB_FILE, StoreError, open_writer};
use sync_protocol::Surplus;

/// Why the edge could not do what was asked (beyond business refusals).
/// Neighbouring recipients imported per writer command.
const IMPORT_CHUNK: usize = 256;

fn writer_stopped() -> EdgeError {
    EdgeError::Unavailable(Unavailable("the writer has stopped".into()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The point lies in a cell this edge does not own.
    #[error("the point lies in S2 cell {} which this edge does not own", crate::cells::token(*cell))]
    Misdirected { cell: u64 },
    /// The writer's queue is full: back off and retry.
    #[error("the edge is saturated; retry shortly")]
    Busy,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the hub link: {0}")]
    Sync(#[from] crate::sync::SyncSetupError),
    #[error("keys: {0}")]
    Keys(#[from] crate::auth::keys::KeyError),
    #[error("reading the sync state: {0}")]
    SyncState(EdgeError),
    #[error(transparent)]
    Pii(#[from] crate::pii::PiiError),
    #[error("another edge is running on the data directory {0}")]
    Locked(String),
    #[error("re-sealing contact data under the active key: {0}")]
    Reseal(EdgeError),
}

/// How to start an edge besides its configuration.
pub struct StartOptions {
    pub clock: Arc<dyn Clock>,
    /// Seed for id generation (`simulate`); `None` draws from the OS.
    pub id_seed: Option<u64>,
    /// Serve the HTTP API on `config.listen`.
    pub serve_http: bool,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions {
            clock: Arc::new(SystemClock),
            id_seed: None,
            serve_http: true,
        }
    }
}

/// A cheap, cloneable handle to a running edge.
#[derive(Clone)]
pub struct EdgeHandle {
    tx: Sender<Command>,
    shared: Arc<Shared>,
    readers: Arc<ReadPool>,
    cells: Arc<CellSet>,
    config: Arc<EdgeConfig>,
    clock: Arc<dyn Clock>,
    security: Arc<Security>,
    matching: Arc<crate::pool::MatchPool>,
    travel: Arc<crate::routing::TravelTimes>,
}

/// Who may call, and how often.
#[derive(Debug)]
pub struct Security {
    pub verifier: crate::auth::Verifier,
    pub limits: crate::ratelimit::Limits,
    pub failed_auth: crate::ratelimit::FailedAuth,
}

/// Loads (creating on first start, if allowed) the keys the edge checks
/// tokens against.
fn security(cfg: &EdgeConfig) -> Result<Security, StartError> {
    let jwks = cfg.jwks_path();
    let pii_missing = std::env::var(crate::pii::ENV_KEYS).is_err()
        && !crate::auth::keys::keys_dir(&cfg.data_dir)
            .join(crate::auth::keys::PII_KEYS)
            .exists();
    if cfg.auth.create_keys && ((!jwks.exists() && cfg.auth.jwks_file.is_none()) || pii_missing) {
        let created = crate::auth::keys::init(&cfg.data_dir)?;
        for f in created.files {
            tracing::info!(file = %f.display(), "created key material");
        }
    }
    let keyring = crate::auth::Keyring::from_file(&jwks)?;
    if keyring.is_empty() {
        tracing::warn!(jwks = %jwks.display(), "the JWKS holds no usable RS256 key: every protected call will be refused");
    }
    let verifier = crate::auth::Verifier::new(
        crate::auth::VerifierConfig {
            issuer: cfg.auth.issuer.clone(),
            audience: cfg.auth.audience.clone(),
            leeway_secs: cfg.auth.leeway_secs,
            max_lifetime_secs: cfg.auth.max_token_lifetime_secs,
            cache_entries: cfg.auth.token_cache_entries,
        },
        keyring,
    );
    Ok(Security {
        verifier,
        limits: crate::ratelimit::Limits::new(&cfg.rate_limits),
        failed_auth: crate::ratelimit::FailedAuth::new(&cfg.rate_limits),
    })
}

/// The retention job runs at the first housekeeping tick, then hourly.
const RETENTION_EVERY_TICKS: u64 = 720;
/// Rows per retention or re-seal step: one writer group stays short.
const STEP_ROWS: usize = 256;

/// Re-reads the JWKS when it changes (keys rotate without a restart) and
/// forgets idle rate-limit buckets, until shutdown.
async fn housekeeping(edge: EdgeHandle) {
    let jwks = edge.config.jwks_path();
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&jwks);
    let pii_path =
        crate::auth::keys::keys_dir(&edge.config.data_dir).join(crate::auth::keys::PII_KEYS);
    let mut seen_pii = modified(&pii_path);
    let mut stop = edge.shared.shutting_down.subscribe();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        ticks += 1;
        let now = modified(&jwks);
        if now != seen {
            seen = now;
            match crate::auth::Keyring::from_file(&jwks) {
                Ok(ring) => {
                    tracing::info!(keys = ring.len(), "JWKS reloaded");
                    edge.security.verifier.replace_keys(ring);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS changed but cannot be read; keeping the old keys")
                }
            }
        }
        let now_pii = modified(&pii_path);
        if now_pii != seen_pii {
            seen_pii = now_pii;
            edge.reload_pii().await;
        }
        if ticks.is_multiple_of(12) {
            edge.security.limits.housekeep();
            edge.security.failed_auth.housekeep();
        }
        if ticks % RETENTION_EVERY_TICKS == 1 {
            match edge.retain().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "retention: old operational data deleted"),
                Err(e) => tracing::warn!(error = %e, "retention did not run"),
            }
        }
    }
}

pub struct Edge {
    handle: EdgeHandle,
    writer: Option<std::thread::JoinHandle<()>>,
    http: Option<crate::api::Server>,
    sync: Option<tokio::task::JoinHandle<()>>,
    /// Held (an exclusive OS lock) while the edge runs: one writer per data
    /// directory. The OS releases it even after SIGKILL.
    _lock: std::fs::File,
}

/// The lock file inside a data directory.
pub const LOCK_FILE: &str = "edge.lock";

/// Takes the data directory's lock, or says another edge holds it.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir {
            path: path.display().to_string(),
            source,
        }),
    }
}

impl Edge {
    pub async fn start(config: EdgeConfig, opts: StartOptions) -> Result<Edge, StartError> {
        let v: Validated = config.validate()?;
        std::fs::create_dir_all(&v.raw.data_dir).map_err(|source| StartError::DataDir {
            path: v.raw.data_dir.display().to_string(),
            source,
        })?;
        let lock = lock_data_dir(&v.raw.data_dir)?;
        // Keys first: a misconfigured edge fails before it starts anything.
        let security = Arc::new(security(&v.raw)?);
        let db = v.raw.data_dir.join(DB_FILE);
        let pii = crate::pii::PiiKeys::load(&v.raw.data_dir)?;
        let conn = open_writer(&db)?;
        let read_model = ReadModel::new(v.raw.recent_window(), v.raw.store.max_recent_finished);
        let shared = Arc::new(Shared::new(read_model, pii));
        let ids = opts.id_seed.map_or_else(IdGen::from_entropy, IdGen::seeded);
        let writer_cfg = WriterConfig {
            edge_id: v.edge_id.clone(),
            max_batch: v.raw.store.max_batch,
            cell_level: v.cells.level(),
            directory: v.raw.routing.osrm_url.is_some(),
            engine: v.engine,
        };
        let mut writer = Writer::new(conn, writer_cfg, opts.clock.clone(), ids, shared.clone())?;
        writer.prepare_directory();
        let now = opts.clock.now();
        let recent =
            writer.recent_views(now, v.raw.recent_window(), v.raw.store.max_recent_finished)?;
        {
            let mut model = shared.read_model.write();
            model.restore_finished(recent, now);
            model.apply(writer.live_views(), now);
        }
        let (tx, rx) = crossbeam_channel::bounded(v.raw.store.queue_capacity);
        let writer = std::thread::Builder::new()
            .name("edge-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StartError::Thread)?;
        let handle = EdgeHandle {
            tx,
            shared,
            readers: Arc::new(ReadPool::new(&db, v.raw.store.read_connections)),
            cells: Arc::new(v.cells),
            travel: Arc::new(
                crate::routing::TravelTimes::new(&v.raw.routing, opts.clock.clone()).map_err(
                    |e| {
                        StartError::Config(crate::config::ConfigError::Invalid(format!(
                            "routing: {e}"
                        )))
                    },
                )?,
            ),
            matching: Arc::new(crate::pool::MatchPool::new(
                v.raw.matching_pool.workers,
                v.raw.matching_pool.queue,
            )),
            config: Arc::new(v.raw),
            clock: opts.clock,
            security,
        };
        // Contacts sealed under a retired key are re-sealed before serving.
        let resealed = handle.reseal_all().await.map_err(StartError::Reseal)?;
        if resealed > 0 {
            tracing::info!(resealed, "contact data re-sealed under the active key");
        }
        tokio::spawn(housekeeping(handle.clone()));
        let sync = match handle.config.hub.clone() {
            Some(link) => {
                // What the hub acknowledged before this start: the backlog
                // counts from there, from the first request on.
                let (published, _) = handle.sync_state().await.map_err(StartError::SyncState)?;
                handle.shared.sync.write().acked_seq = published;
                let stop = handle.shared.shutting_down.subscribe();
                Some(crate::sync::spawn(handle.clone(), link, stop)?)
            }
            None => None,
        };
        let http = if opts.serve_http {
            Some(crate::api::Server::bind(handle.clone()).await?)
        } else {
            None
        };
        tracing::info!(
            edge_id = %handle.config.edge_id,
            cells = handle.cells.len(),
            live = handle.shared.read_model.read().len(),
            listen = ?http.as_ref().map(|s| s.local_addr()),
            "edge started"
        );
        Ok(Edge {
            handle,
            writer: Some(writer),
            http,
            sync,
            _lock: lock,
        })
    }

    pub fn handle(&self) -> &EdgeHandle {
        &self.handle
    }

    /// The HTTP API's bound address, if serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|s| s.local_addr())
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Ends offer streams, stops accepting requests and lets in-flight ones
    /// finish, then lets the writer finish its queue and joins it.
    pub async fn shutdown(mut self) {
        self.handle.shared.shutting_down.send_replace(true);
        if let Some(http) = self.http.take() {
            http.shutdown().await;
        }
        if let Some(sync) = self.sync.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sync).await;
        }
        let Edge { handle, writer, .. } = self;
        let tx = handle.tx.clone();
        drop(handle);
        let _ = tokio::task::spawn_blocking(move || {
            // Blocks only while the queue is full; the writer is draining it.
            let _ = tx.send(Command::Stop);
            if let Some(w) = writer {
                let _ = w.join();
            }
        })
        .await;
    }
}

impl EdgeHandle {
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    pub fn cells(&self) -> &CellSet {
        &self.cells
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn verifier(&self) -> &crate::auth::Verifier {
        &self.security.verifier
    }

    pub fn limits(&self) -> &crate::ratelimit::Limits {
        &self.security.limits
    }

    pub fn failed_auth(&self) -> &crate::ratelimit::FailedAuth {
        &self.security.failed_auth
    }

    pub fn now(&self) -> sync_protocol::Timestamp {
        self.clock.now()
    }

    /// The owned cell a point lies in, or `Misdirected`.
    pub fn owned_cell(&self, p: &GeoPoint) -> Result<u64, EdgeError> {
        self.cells
            .owner_cell(p)
            .map_err(|cell| EdgeError::Misdirected { cell })
    }

    /// Queues a command for the writer; a full queue is `Busy` at once (the
    /// caller is a request that should be shed, not parked).
    async fn call<T>(
        &self,
        make: impl FnOnce(crate::store::writer::Reply<T>) -> Command,
    ) -> Result<T, EdgeError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(make(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EdgeError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(writer_stopped()),
        }
        Self::answer(rx).await
    }

    /// Queues a command for the writer, waiting for room in a full queue:
    /// for background work (the hub link) that must neither fail nor crowd
    /// out requests.
    async fn call_patiently<T>(
        &self,
        make: impl FnOnce(crate::store::writer::Reply<T>) -> Command,
    ) -> Result<T, EdgeError> {
        let (reply, rx) = oneshot::channel();
        let mut command = make(reply);
        loop {
            match self.tx.try_send(command) {
                Ok(()) => break,
                Err(TrySendError::Full(c)) => {
                    command = c;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(writer_stopped()),
            }
        }
        Self::answer(rx).await
    }

    async fn answer<T>(rx: oneshot::Receiver<Result<T, Unavailable>>) -> Result<T, EdgeError> {
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(EdgeError::Unavailable(Unavailable(
                "the write was abandoned by a failed commit".into(),
            ))),
        }
    }

    pub async fn register_provider(
        &self,
        new: NewProvider,
        actor: Option<Actor>,
    ) -> Result<Result<Provider, Rejection>, EdgeError> {
        self.owned_cell(&new.location)?;
        self.call(|reply| Command::RegisterProvider {
            new,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    pub async fn register_recipient(
        &self,
        new: NewRecipient,
        actor: Option<Actor>,
    ) -> Result<Result<Recipient, Rejection>, EdgeError> {
        let cell = self.owned_cell(&new.location)?;
        self.call(|reply| Command::RegisterRecipient {
            new,
            cell,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    pub async fn post_surplus(
        &self,
        new: NewSurplus,
        idempotency_key: Option<String>,
        trace: Option<TraceContext>,
        actor: Option<Actor>,
    ) -> Result<Result<Posted, Rejection>, EdgeError> {
        self.post_surplus_with(new, idempotency_key, trace, actor, None)
            .await
    }

    /// Routed travel times from a surplus to the recipients its match will
    /// consider, when a routing service is configured (`None` otherwise, or
    /// when it cannot answer: matching then estimates from the distance).
    /// Waits at most the routing deadline; never fails.
    pub async fn travel_hints(&self, new: &NewSurplus) -> Option<edge_core::matching::TravelHints> {
        self.travel.osrm()?;
        let params = &self.config.matching;
        let directory = self.shared.directory.read().clone();
        let near = directory.nearest(
            &new.location,
            params.radius_km,
            new.food_type,
            params.max_feasible.max(1) * 2,
        );
        if near.is_empty() {
            return None;
        }
        let points: Vec<GeoPoint> = near.iter().map(|(_, p)| *p).collect();
        let estimate = self
            .travel
            .travel_times(new.location, &points, params.speed_kmh)
            .await;
        (estimate.source == crate::routing::Source::Osrm).then(|| {
            edge_core::matching::TravelHints::new(
                near.iter()
                    .map(|(id, _)| *id)
                    .zip(estimate.durations)
                    .collect(),
            )
        })
    }

    /// `post_surplus` with routed travel times for its first match.
    pub async fn post_surplus_with(
        &self,
        new: NewSurplus,
        idempotency_key: Option<String>,
        trace: Option<TraceContext>,
        actor: Option<Actor>,
        hints: Option<edge_core::matching::TravelHints>,
    ) -> Result<Result<Posted, Rejection>, EdgeError> {
        let cell = self.owned_cell(&new.location)?;
        let idempotency = idempotency_key.map(|key| IdempotencyKey {
            key,
            fingerprint: new.fingerprint(),
        });
        self.call(|reply| Command::Post {
            new,
            cell,
            idempotency,
            trace,
            actor: actor.map(Box::new),
            hints: hints.map(Box::new),
            reply,
        })
        .await
    }

    pub async fn act(
        &self,
        surplus_id: SurplusId,
        action: SurplusAction,
        trace: Option<TraceContext>,
        actor: Option<Actor>,
    ) -> Result<Result<Surplus, Rejection>, EdgeError> {
        self.call(|reply| Command::Act {
            surplus_id,
            action,
            trace,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    /// GDPR erasure of one of this edge's providers or recipients; false if
    /// it is unknown here, already erased, or a neighbour's.
    pub async fn erase(&self, subject: Subject, actor: Option<Actor>) -> Result<bool, EdgeError> {
        self.call(|reply| Command::Erase {
            subject,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    /// Writes one audit record (a refusal, a read of personal data).
    pub async fn audit(&self, record: AuditRecord) -> Result<(), EdgeError> {
        self.call_patiently(|reply| Command::Audit { record, reply })
            .await
    }

    /// Re-seals every contact sealed under an older key, a step at a time;
    /// returns how many.
    pub async fn reseal_all(&self) -> Result<usize, EdgeError> {
        let mut total = 0;
        loop {
            let n = self
                .call_patiently(|reply| Command::Reseal {
                    limit: STEP_ROWS,
                    reply,
                })
                .await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Re-reads the PII keys (after `pahlawan keys rotate`) and re-seals.
    pub async fn reload_pii(&self) {
        match crate::pii::PiiKeys::load(&self.config.data_dir) {
            Ok(keys) => {
                *self.shared.pii.write() = Arc::new(keys);
                match self.reseal_all().await {
                    Ok(n) => tracing::info!(resealed = n, "PII keys reloaded"),
                    Err(e) => {
                        tracing::warn!(error = %e, "PII keys reloaded; re-sealing failed, retried at next start")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "PII keys changed but cannot be read; keeping the old keys")
            }
        }
    }

    /// Deletes operational data older than the retention window, a step at
    /// a time; returns how many rows.
    pub async fn retain(&self) -> Result<usize, EdgeError> {
        let cutoff = self.now()
            + sync_protocol::Duration::from_ms(-(self.config.retention_days as i64) * 86_400_000);
        let mut total = 0;
        loop {
            let n = self
                .call_patiently(|reply| Command::Retain {
                    cutoff,
                    limit: STEP_ROWS,
                    reply,
                })
                .await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Opens a sealed contact (empty: erased, or a neighbour's recipient).
    pub fn open_contact(
        &self,
        sealed: &SealedContact,
        subject: &Subject,
    ) -> Result<Option<Contact>, crate::pii::PiiError> {
        if sealed.is_empty() {
            return Ok(None);
        }
        self.shared
            .pii
            .read()
            .open(sealed.as_bytes(), subject.id_bytes())
            .map(Some)
    }

    /// Fires due timers now; returns how many fired (manual clocks use this).
    pub async fn tick(&self) -> Result<usize, EdgeError> {
        self.call(|reply| Command::Tick { reply }).await
    }

    /// A surplus as last committed: from memory if recent, else from SQLite.
    pub async fn surplus(&self, id: SurplusId) -> Result<Option<Surplus>, EdgeError> {
        if let Some(v) = self.shared.read_model.read().get(&id) {
            return Ok(Some(v.clone()));
        }
        self.readers.surplus(id).await.map_err(unavailable)
    }

    pub fn surplus_near(
        &self,
        point: &GeoPoint,
        radius_km: f64,
        status: Option<SurplusStatus>,
        limit: usize,
    ) -> Vec<(Surplus, f64)> {
        self.shared
            .read_model
            .read()
            .near(point, radius_km, status, limit)
    }

    pub fn pending_offers(&self, recipient: &RecipientId) -> Vec<Surplus> {
        self.shared.read_model.read().pending_for(recipient)
    }

    pub fn subscribe_offers(&self) -> broadcast::Receiver<OfferNotice> {
        self.shared.offers.subscribe()
    }

    pub async fn provider(&self, id: ProviderId) -> Result<Option<Provider>, EdgeError> {
        self.readers.provider(id).await.map_err(unavailable)
    }

    pub async fn recipient(&self, id: RecipientId) -> Result<Option<(Recipient, u64)>, EdgeError> {
        self.readers.recipient(id).await.map_err(unavailable)
    }

    /// Everything held on a subject besides its own row (GDPR export).
    pub async fn subject_rows(
        &self,
        subject: Subject,
    ) -> Result<crate::store::export::SubjectRows, EdgeError> {
        self.readers
            .subject_rows(subject)
            .await
            .map_err(unavailable)
    }

    /// Committed outbox events after `seq`, oldest first (at most `limit`).
    pub async fn outbox_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<sync_protocol::Envelope>, EdgeError> {
        self.readers
            .outbox_after(seq, limit)
            .await
            .map_err(unavailable)
    }

    /// The last outbox `seq` committed.
    pub fn committed_seq(&self) -> u64 {
        *self.shared.committed_seq.borrow()
    }

    pub fn subscribe_committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.committed_seq.subscribe()
    }

    /// Raw outbox events after `after`, for the hub.
    pub async fn outbox_batch(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<sync_protocol::session::BatchEvent>, EdgeError> {
        self.readers
            .outbox_batch(after, limit)
            .await
            .map_err(unavailable)
    }

    pub async fn event_time(
        &self,
        seq: u64,
    ) -> Result<Option<sync_protocol::Timestamp>, EdgeError> {
        self.readers.event_time(seq).await.map_err(unavailable)
    }

    /// (published seq, lease epoch) as stored.
    pub async fn sync_state(&self) -> Result<(u64, u64), EdgeError> {
        self.readers.sync_state().await.map_err(unavailable)
    }

    pub async fn mark_published(&self, seq: u64) -> Result<(), EdgeError> {
        self.call_patiently(|reply| Command::MarkPublished { seq, reply })
            .await
    }

    pub async fn set_lease_epoch(&self, epoch: u64) -> Result<(), EdgeError> {
        self.call_patiently(|reply| Command::SetLeaseEpoch { epoch, reply })
            .await
    }

    /// Imports neighbouring recipients a slice at a time, so a large
    /// registry never holds one writer group for long.
    pub async fn import_recipients(
        &self,
        entries: Vec<sync_protocol::session::RegistryEntry>,
    ) -> Result<usize, EdgeError> {
        let mut imported = 0;
        for chunk in entries.chunks(IMPORT_CHUNK) {
            let entries = chunk.to_vec();
            imported += self
                .call_patiently(|reply| Command::ImportRecipients { entries, reply })
                .await?;
        }
        Ok(imported)
    }

    /// A slot in the matching pool (HTTP requests that match take one), or
    /// `Busy` when the pool and its queue are full.
    pub async fn matching_slot(&self) -> Result<crate::pool::Slot, EdgeError> {
        let slot = self.matching.enter().await.map_err(|_| EdgeError::Busy);
        self.shared
            .metrics
            .saturation
            .set(self.matching.saturation());
        slot
    }

    /// Sets the gauges that mirror state, for a scrape.
    pub fn refresh_gauges(&self) {
        let m = &self.shared.metrics;
        let committed = self.committed_seq();
        let (acked, lag) = {
            let s = self.shared.sync.read();
            (s.acked_seq, s.lag_seconds)
        };
        let backlog = if self.config.hub.is_some() {
            committed.saturating_sub(acked)
        } else {
            0
        };
        m.outbox_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        m.sync_lag.set(lag);
        let dlq = self
            .shared
            .read_model
            .read()
            .count_status(SurplusStatus::DeadLettered);
        m.dlq_size.set(i64::try_from(dlq).unwrap_or(i64::MAX));
        m.saturation.set(self.matching.saturation());
        m.breaker_state
            .set(self.travel.snapshot().breaker_state as i64);
    }

    /// Ready when the writer is running and can commit.
    pub fn is_ready(&self) -> bool {
        let s = &self.shared.stats;
        s.writer_alive.load(std::sync::atomic::Ordering::Relaxed)
            && s.writer_healthy.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn unavailable(e: StoreError) -> EdgeError {
    EdgeError::Unavailable(Unavailable(e.to_string()))
}
