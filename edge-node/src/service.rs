//! The running edge: [`Edge::start`] opens the store, rebuilds state, starts
//! the writer thread, wires the ports ([`crate::ports`]) to it and starts
//! what uses them — the HTTP server, the hub link, housekeeping — and, run
//! by systemd, tells it when the edge is ready ([`crate::systemd`]). This is
//! the one module that sees every layer; nothing imports it but the binary
//! and tests.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};

use crate::api::{AppState, Parts, Security};
use crate::cells::CellSet;
use crate::clock::{Clock, SystemClock};
use crate::config::{EdgeConfig, Validated};
use crate::ids::IdGen;
use crate::metrics::Metrics;
use crate::pii::PiiKeys;
use crate::ports::{EdgeError, LinkPort, LinkStatus, Reads, Writes};
use crate::publish::{OFFER_STREAM_CAPACITY, Publisher};
use crate::read_model::ReadModel;
use crate::routing::RecipientDirectory;
use crate::store::reader::ReadPool;
use crate::store::stats::WriterStats;
use crate::store::writer::{QueueSenders, Writer, WriterConfig, queues};
use crate::store::{DB_FILE, StoreError, open_writer_with};

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
    #[error(transparent)]
    Bind(#[from] http_listener::ListenError),
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
    #[error("the Web Push key {path}: {reason}")]
    WebPushKey { path: String, reason: String },
}

/// The edge's VAPID key for Web Push, as [`vapid_key`] found or made it.
pub struct VapidKey {
    pub path: std::path::PathBuf,
    pub vapid: crate::web_push::Vapid,
    /// Made just now (it was missing at the default path).
    pub created: bool,
}

/// The VAPID key when Web Push is on: read from its file, or created (0600,
/// under `<data_dir>/keys/`) when the default file is missing; none when Web
/// Push is off. What the edge does at start, and `pahlawan keys init` ahead
/// of it.
pub fn vapid_key(cfg: &EdgeConfig) -> Result<Option<VapidKey>, StartError> {
    let wp = &cfg.notify.web_push;
    if !(cfg.notify.enabled && wp.enabled) {
        return Ok(None);
    }
    let path = cfg.vapid_key_path();
    let fail = |reason: String| StartError::WebPushKey {
        path: path.display().to_string(),
        reason,
    };
    let (pem, created) = match std::fs::read_to_string(&path) {
        Ok(pem) => (pem, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && wp.key_file.is_none() => {
            let pem = crate::web_push::Vapid::generate_pem().map_err(|e| fail(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
            }
            crate::keyfiles::write_file(&path, pem.as_bytes(), true)
                .map_err(|e| fail(e.to_string()))?;
            (pem, true)
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let vapid = crate::web_push::Vapid::from_pem(&pem, wp.subject.clone())
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(VapidKey {
        path,
        vapid,
        created,
    }))
}

/// The edge's VAPID identity for Web Push, read from its key file (created,
/// 0600, on first start), or none when Web Push is off.
fn web_push(cfg: &EdgeConfig) -> Result<Option<Arc<crate::web_push::Vapid>>, StartError> {
    let Some(key) = vapid_key(cfg)? else {
        return Ok(None);
    };
    if key.created {
        tracing::info!(file = %key.path.display(), "created the Web Push (VAPID) key");
    }
    Ok(Some(Arc::new(key.vapid)))
}

/// How to start an edge besides its configuration.
pub struct StartOptions {
    pub clock: Arc<dyn Clock>,
    /// Seed for id generation (`simulate`); `None` draws from the OS.
    pub id_seed: Option<u64>,
    /// Serve the HTTP API on `config.listen`.
    pub serve_http: bool,
    /// Tell systemd (`READY=1`, watchdog pings, `STOPPING=1`); the binary
    /// passes [`crate::systemd::Notifier::from_env`].
    pub systemd: Option<crate::systemd::Notifier>,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions {
            clock: Arc::new(SystemClock),
            id_seed: None,
            serve_http: true,
            systemd: None,
        }
    }
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

pub struct Edge {
    writes: Writes,
    reads: Reads,
    link: LinkPort,
    state: AppState,
    /// Kept to send `Stop` when everything else has let go.
    queues: QueueSenders,
    shutting_down: watch::Sender<bool>,
    writer: Option<std::thread::JoinHandle<()>>,
    http: Option<crate::api::Server>,
    sync: Option<tokio::task::JoinHandle<()>>,
    notify: Option<tokio::task::JoinHandle<()>>,
    /// The connection to systemd, when run by it, and the task that
    /// tells it the edge is ready and alive.
    systemd: Option<Arc<crate::systemd::Notifier>>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
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

/// The writer, before it runs, and what it publishes to.
struct Store {
    writer: Writer,
    publisher: Publisher,
    reads: Reads,
    committed: watch::Receiver<u64>,
    directory: watch::Receiver<Arc<RecipientDirectory>>,
    stats: Arc<WriterStats>,
    pool: Arc<ReadPool>,
}

/// SQLite's settings from `[store]`.
fn sqlite_tuning(s: &crate::config::StoreConfig) -> crate::store::Tuning {
    crate::store::Tuning {
        writer_cache_kib: s.writer_cache_mib.saturating_mul(1024),
        reader_cache_kib: s.reader_cache_mib.saturating_mul(1024),
        wal_limit_bytes: u64::from(s.wal_limit_mib) * 1024 * 1024,
        wal_autocheckpoint_pages: s.wal_autocheckpoint_pages,
    }
}

/// When the writer refuses writes for a full disk, from `[store]`.
fn disk_policy(s: &crate::config::StoreConfig) -> crate::store::disk::DiskPolicy {
    crate::store::disk::DiskPolicy {
        min_free_bytes: u64::from(s.min_free_mib) * 1024 * 1024,
        probe_every: sync_protocol::Duration::from_secs(i64::from(s.disk_probe_secs)),
    }
}

/// Opens the store and rebuilds what readers see from it.
fn open_store(v: &Validated, opts: &StartOptions) -> Result<Store, StartError> {
    let db = v.raw.data_dir.join(DB_FILE);
    let keys = Arc::new(PiiKeys::load(&v.raw.data_dir)?);
    let stats = Arc::new(WriterStats::default());
    let ids = opts.id_seed.map_or_else(IdGen::from_entropy, IdGen::seeded);
    let writer_cfg = WriterConfig {
        edge_id: v.edge_id.clone(),
        max_batch: v.raw.store.max_batch,
        cell_level: v.cells.level(),
        directory: v.raw.routing.osrm_url.is_some(),
        engine: v.engine,
        data_dir: v.raw.data_dir.clone(),
        disk: disk_policy(&v.raw.store),
        heartbeat: opts
            .systemd
            .as_ref()
            .and_then(|n| n.watchdog())
            .map(crate::systemd::protocol::heartbeat_every),
    };
    let conn = open_writer_with(&db, &sqlite_tuning(&v.raw.store))?;
    let mut writer = Writer::new(
        conn,
        writer_cfg,
        opts.clock.clone(),
        ids,
        keys.clone(),
        stats.clone(),
    )?;
    let now = opts.clock.now();
    let mut model = ReadModel::new(v.raw.recent_window(), v.raw.store.max_recent_finished);
    let recent =
        writer.recent_views(now, v.raw.recent_window(), v.raw.store.max_recent_finished)?;
    model.restore_finished(recent, now);
    model.apply(writer.live_views(), now);
    let model = Arc::new(RwLock::new(model));
    let directory = RecipientDirectory::new(writer.take_directory().unwrap_or_default());
    let (directory_tx, directory) = watch::channel(Arc::new(directory));
    let (committed_tx, committed) = watch::channel(writer.last_seq());
    let (pii_tx, pii) = watch::channel(keys);
    let offers = broadcast::channel(OFFER_STREAM_CAPACITY).0;
    let pool = Arc::new(ReadPool::with_cache(
        &db,
        v.raw.store.read_connections,
        sqlite_tuning(&v.raw.store).reader_cache_kib,
    ));
    Ok(Store {
        reads: Reads::new(model.clone(), pool.clone(), offers.clone(), pii),
        publisher: Publisher {
            read_model: model,
            offers,
            metrics: Arc::new(Metrics::new()),
            committed_seq: committed_tx,
            directory: directory_tx,
            pii: pii_tx,
        },
        writer,
        committed,
        directory,
        stats,
        pool,
    })
}

impl Edge {
    pub async fn start(config: EdgeConfig, mut opts: StartOptions) -> Result<Edge, StartError> {
        let v: Validated = config.validate()?;
        std::fs::create_dir_all(&v.raw.data_dir).map_err(|source| StartError::DataDir {
            path: v.raw.data_dir.display().to_string(),
            source,
        })?;
        let lock = lock_data_dir(&v.raw.data_dir)?;
        // Keys first: a misconfigured edge fails before it starts anything.
        let security = Arc::new(security(&v.raw)?);
        let web_push = web_push(&v.raw)?;
        let store = open_store(&v, &opts)?;
        let metrics = store.publisher.metrics.clone();
        let (senders, receivers) =
            queues(v.raw.store.queue_capacity, v.raw.store.background_capacity);
        let (writer, publisher) = (store.writer, store.publisher);
        let writer = std::thread::Builder::new()
            .name("edge-writer".into())
            .spawn(move || writer.run(receivers, publisher))
            .map_err(StartError::Thread)?;
        let cells = Arc::new(v.cells.clone());
        let audit_wait = std::time::Duration::from_millis(v.raw.store.audit_wait_ms);
        let writes = Writes::new(senders.clone(), cells, audit_wait);
        let (shutting_down, _) = watch::channel(false);
        let link = LinkPort::new(
            v.edge_id.clone(),
            store.pool,
            store.committed.clone(),
            writes.clone(),
            Arc::new(watch::channel(LinkStatus::default()).0),
        );
        let state = AppState::new(Parts {
            writes: writes.clone(),
            reads: store.reads.clone(),
            link: link.subscribe_status(),
            committed: store.committed,
            directory: store.directory,
            security,
            web_push,
            matching: crate::pool::MatchPool::new(
                v.raw.matching_pool.workers,
                v.raw.matching_pool.queue,
            ),
            travel: Arc::new(travel_times(&v.raw, &opts)?),
            metrics,
            writer: store.stats,
            config: Arc::new(v.raw),
            started_at: opts.clock.now(),
            clock: opts.clock,
            shutdown: shutting_down.subscribe(),
        });
        let mut edge = Edge {
            writes,
            reads: store.reads,
            link,
            state,
            queues: senders,
            shutting_down,
            writer: Some(writer),
            http: None,
            sync: None,
            notify: None,
            systemd: opts.systemd.take().map(Arc::new),
            supervisor: None,
            _lock: lock,
        };
        edge.serve(opts.serve_http).await?;
        edge.supervise();
        Ok(edge)
    }

    /// Re-seals what a retired key sealed, then starts housekeeping, the
    /// hub link and (if asked) the HTTP server.
    async fn serve(&mut self, http: bool) -> Result<(), StartError> {
        // Contacts sealed under a retired key are re-sealed before serving.
        let resealed = self.writes.reseal_all().await.map_err(StartError::Reseal)?;
        if resealed > 0 {
            tracing::info!(resealed, "contact data re-sealed under the active key");
        }
        let chores = crate::housekeeping::Chores {
            config: self.state.config.clone(),
            security: self.state.security.clone(),
            writes: self.writes.clone(),
            clock: self.state.clock.clone(),
            metrics: self.state.metrics.clone(),
        };
        tokio::spawn(crate::housekeeping::run(
            chores,
            self.shutting_down.subscribe(),
        ));
        if let Some(hub) = self.state.config.hub.clone() {
            // What the hub acknowledged before this start.
            let (published, _) = self
                .link
                .sync_state()
                .await
                .map_err(StartError::SyncState)?;
            let stop = self.shutting_down.subscribe();
            self.sync = Some(crate::sync::spawn(self.link.clone(), hub, published, stop)?);
        }
        if self.state.config.notify.enabled {
            let config = &self.state.config;
            let notifier = crate::notify::Notifier {
                edge_id: self.link.edge_id().clone(),
                config: config.notify.clone(),
                base_url: config.public_base_url(),
                utc_offset_minutes: config.utc_offset_minutes,
                reads: self.reads.clone(),
                writes: self.writes.clone(),
                committed: self.link.subscribe_committed(),
                web_push: self.state.web_push.clone(),
                clock: self.state.clock.clone(),
                metrics: self.state.metrics.clone(),
            };
            let stop = self.shutting_down.subscribe();
            self.notify = Some(crate::notify::spawn(notifier, stop));
        }
        if http {
            self.http = Some(crate::api::Server::bind(self.state.clone()).await?);
        }
        tracing::info!(
            edge_id = %self.state.config.edge_id,
            cells = self.writes.cells().len(),
            live = self.reads.live_count(),
            listen = ?self.local_addr(),
            "edge started"
        );
        Ok(())
    }

    /// Run by systemd: `READY=1` now that the edge serves (the read model
    /// rebuilt, the writer up — what `/readyz` says), then watchdog pings
    /// from the writer's heartbeat.
    fn supervise(&mut self) {
        let Some(notifier) = self.systemd.clone() else {
            return;
        };
        let status = match self.local_addr() {
            Some(addr) => format!("serving on {addr}"),
            None => "running".to_string(),
        };
        self.supervisor = Some(crate::systemd::spawn(
            notifier,
            self.state.writer.clone(),
            status,
            self.shutting_down.subscribe(),
        ));
    }

    /// The command port: every write.
    pub fn writes(&self) -> &Writes {
        &self.writes
    }

    /// The read port.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.state.config
    }

    pub fn cells(&self) -> &CellSet {
        self.writes.cells()
    }

    /// The last outbox `seq` committed.
    pub fn committed_seq(&self) -> u64 {
        self.state.committed_seq()
    }

    /// The hub link's status, as the link last published it.
    pub fn link_status(&self) -> LinkStatus {
        self.link.status()
    }

    /// The writer's own counters and histograms.
    pub fn writer_stats(&self) -> &Arc<WriterStats> {
        &self.state.writer
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Admission to matching (HTTP requests that match take a slot).
    pub fn matching(&self) -> &crate::pool::MatchPool {
        &self.state.matching
    }

    /// Deletes operational data older than the retention window now (the
    /// housekeeping job does this hourly).
    pub async fn retain(&self) -> Result<usize, EdgeError> {
        let s = &self.state;
        crate::housekeeping::retain(&self.writes, s.now(), s.config.retention_days).await
    }

    /// The HTTP app the server runs, for a test that hands it requests
    /// without a socket — as if from another machine, whose connection a
    /// loopback test cannot make.
    pub fn router(&self) -> axum::Router {
        crate::api::app(self.state.clone())
    }

    /// The HTTP API's bound address, if serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|s| s.local_addr())
    }

    /// The extra plain-HTTP address beside an HTTPS one
    /// (`http.plain_listen`), when serving.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|s| s.plain_addr())
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Ends offer streams, stops accepting requests and lets in-flight ones
    /// finish, then lets the writer finish its queue and joins it.
    pub async fn shutdown(mut self) {
        self.shutting_down.send_replace(true);
        // The pings end before STOPPING=1: nothing follows it.
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.await;
        }
        if let Some(systemd) = &self.systemd {
            systemd.notify(crate::systemd::protocol::STOPPING);
        }
        if let Some(http) = self.http.take() {
            http.shutdown().await;
        }
        if let Some(sync) = self.sync.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sync).await;
        }
        if let Some(notify) = self.notify.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), notify).await;
        }
        let (queues, writer) = (self.queues.clone(), self.writer.take());
        drop(self);
        let _ = tokio::task::spawn_blocking(move || {
            // Blocks only while the queue is full; the writer is draining it.
            queues.stop_blocking();
            if let Some(w) = writer {
                let _ = w.join();
            }
        })
        .await;
    }
}

fn travel_times(
    cfg: &EdgeConfig,
    opts: &StartOptions,
) -> Result<crate::routing::TravelTimes, StartError> {
    crate::routing::TravelTimes::new(&cfg.routing, opts.clock.clone()).map_err(|e| {
        StartError::Config(crate::config::ConfigError::Invalid(format!("routing: {e}")))
    })
}
