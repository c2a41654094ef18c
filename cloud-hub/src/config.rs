//! The hub's configuration: defaults in one place, then a TOML file, then
//! `PAHLAWAN_HUB_*` environment variables (and `DATABASE_URL`), then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub const ENV_PREFIX: &str = "PAHLAWAN_HUB_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// PostgreSQL connection string, e.g. `postgres://hub@db.internal/pahlawan`.
    /// Falls back to `DATABASE_URL`.
    pub database_url: String,
    /// UDP address edges connect to over QUIC.
    pub listen_quic: SocketAddr,
    /// HTTP address for health, readiness and the dashboard API.
    pub listen_http: SocketAddr,
    pub tls: TlsFiles,
    /// A cell lease lapses this long after its edge was last heard.
    pub lease_ttl_secs: u64,
    /// How often each session re-sends neighbouring recipients that changed.
    pub registry_refresh_secs: u64,
    /// Concurrent edge sessions, at most (each holds a PostgreSQL connection).
    pub max_sessions: usize,
}

/// PEM files made by `pahlawan certs init`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// The CA that signs edge certificates (and the hub's).
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            database_url: String::new(),
            listen_quic: SocketAddr::from(([0, 0, 0, 0], 4433)),
            listen_http: SocketAddr::from(([127, 0, 0, 1], 8090)),
            tls: TlsFiles::default(),
            lease_ttl_secs: 300,
            registry_refresh_secs: 30,
            max_sessions: 1_000,
        }
    }
}

impl Default for TlsFiles {
    fn default() -> TlsFiles {
        TlsFiles {
            ca_cert: PathBuf::from("certs/ca.crt"),
            cert: PathBuf::from("certs/hub.crt"),
            key: PathBuf::from("certs/hub.key"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("{0}")]
    Invalid(String),
}

impl HubConfig {
    pub fn load(file: Option<&Path>) -> Result<HubConfig, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(HubConfig::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let mut cfg: HubConfig = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        if cfg.database_url.is_empty()
            && let Ok(url) = std::env::var("DATABASE_URL")
        {
            cfg.database_url = url;
        }
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.database_url.is_empty() {
            return Err(ConfigError::Invalid(
                "no database: pass --database-url or set DATABASE_URL".into(),
            ));
        }
        if self.lease_ttl_secs < 5 || self.registry_refresh_secs < 1 || self.max_sessions < 1 {
            return Err(ConfigError::Invalid(
                "lease_ttl_secs must be ≥ 5, registry_refresh_secs ≥ 1, max_sessions ≥ 1".into(),
            ));
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}
