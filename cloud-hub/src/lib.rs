//! Pahlawan Pangan's cloud hub: edges connect over QUIC with mutual TLS and
//! stream their outbox; the hub applies each batch to PostgreSQL exactly
//! once, in order, keeps the global view (surplus, matching history,
//! registries), hands out cell leases and serves dashboards over HTTP.
//!
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod auth;
pub mod certs;
pub mod config;
pub mod db;
pub mod http;
pub mod metrics;
pub mod quic;
pub mod region;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use config::HubConfig;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Tls(#[from] sync_link::tls::TlsError),
    #[error(transparent)]
    Http(#[from] http_listener::ListenError),
    #[error("the hub's token keys: {0}")]
    Keys(#[from] jwt_auth::keys::KeyError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running hub.
pub struct Hub {
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    endpoint: quinn::Endpoint,
    http: Option<http_listener::HttpServer>,
    metrics_http: Option<http_listener::HttpServer>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Arc<stats::HubStats>,
}

impl Hub {
    pub async fn start(cfg: HubConfig) -> Result<Hub, HubError> {
        cfg.validate()?;
        sync_link::tls::install_crypto_provider();
        let verifier = auth::verifier(&cfg.auth, &cfg.token_keys_dir())?;
        let mut client = db::connect(&cfg.database_url).await?;
        let citus = db::migrate(&mut client).await?;
        let (endpoint, quic_addr) = quic_endpoint(&cfg)?;
        let stats = Arc::new(stats::HubStats::default());
        let (stop, stopped) = watch::channel(false);
        let ctx = Arc::new(quic::Ctx {
            database_url: cfg.database_url.clone(),
            lease_ttl: sync_protocol::Duration::from_secs(cfg.lease_ttl_secs as i64),
            registry_refresh: std::time::Duration::from_secs(cfg.registry_refresh_secs),
            slots: Arc::new(tokio::sync::Semaphore::new(
                cfg.max_sessions.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            stats: stats.clone(),
            clock: Arc::new(sync_link::SystemClock),
        });
        let quic_task = tokio::spawn(quic::serve(endpoint.clone(), ctx, stopped.clone()));
        let housekeeping = tokio::spawn(db::retention::housekeeping(
            cfg.database_url.clone(),
            cfg.retention_days,
            stopped,
        ));
        let state = Arc::new(http::HttpState {
            max_sessions: cfg.max_sessions,
            last_scrape: parking_lot::Mutex::new(None),
            db: http::DbPool::new(
                cfg.database_url.clone(),
                cfg.http.db_connections,
                Some(client),
            ),
            stats: stats.clone(),
            verifier,
            clock: Arc::new(sync_link::SystemClock),
            dashboard: cfg.dashboard.clone(),
            sign_in_limiter: Default::default(),
        });
        let metrics_listener = cfg.metrics_listener();
        let http = http_listener::HttpServer::start(
            &cfg.listener(),
            http::router(state.clone(), metrics_listener.is_some()),
            stats.metrics.conn.clone(),
        )
        .await?;
        let metrics_http = match metrics_listener {
            // Its connections are not the API's: they stay out of its series.
            Some(l) => Some(
                http_listener::HttpServer::start(
                    &l,
                    http::metrics_router(state),
                    http_listener::ConnMetrics::default(),
                )
                .await?,
            ),
            None => None,
        };
        let http_addr = http.local_addr();
        tracing::info!(%quic_addr, %http_addr, citus, "hub started");
        Ok(Hub {
            quic_addr,
            http_addr,
            stop,
            endpoint,
            http: Some(http),
            metrics_http,
            tasks: vec![quic_task, housekeeping],
            stats,
        })
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where `/metrics` is served apart (`[http] metrics_listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_http
            .as_ref()
            .map(http_listener::HttpServer::local_addr)
    }

    /// The HTTP listener speaks HTTPS (`[http.tls]`).
    pub fn http_is_tls(&self) -> bool {
        self.http
            .as_ref()
            .is_some_and(http_listener::HttpServer::is_tls)
    }

    pub fn stats(&self) -> &Arc<stats::HubStats> {
        &self.stats
    }

    /// Ends sessions cleanly, stops serving, waits for the tasks.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(http) = self.http.take() {
            http.shutdown().await;
        }
        if let Some(m) = self.metrics_http.take() {
            m.shutdown().await;
        }
        self.endpoint.close(0u32.into(), b"hub shutting down");
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        self.endpoint.wait_idle().await;
    }

    /// Runs until `signal` resolves.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

/// Binds the QUIC endpoint edges sync over, with the hub's TLS identity.
fn quic_endpoint(cfg: &HubConfig) -> Result<(quinn::Endpoint, SocketAddr), HubError> {
    let server = sync_link::tls::server_config(&cfg.tls.ca_cert, &cfg.tls.cert, &cfg.tls.key)?;
    let endpoint =
        quinn::Endpoint::server(server, cfg.listen_quic).map_err(|source| HubError::Bind {
            addr: cfg.listen_quic,
            source,
        })?;
    let quic_addr = endpoint.local_addr().map_err(|source| HubError::Bind {
        addr: cfg.listen_quic,
        source,
    })?;
    Ok((endpoint, quic_addr))
}
