//! The hub's configuration: defaults in one place, then a TOML file, then
//! `PAHLAWAN_HUB_*` environment variables (and `DATABASE_URL`), then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// HTTP address for health, readiness and the dashboard API (HTTPS
    /// with `[http.tls]`).
    pub listen_http: SocketAddr,
    /// The QUIC link's certificates (mutual TLS with edges).
    pub tls: TlsFiles,
    /// The HTTP listener: connection limits, HTTPS, where plain HTTP may be.
    pub http: HubHttpConfig,
    /// A cell lease lapses this long after its edge was last heard.
    pub lease_ttl_secs: u64,
    /// How often each session re-sends neighbouring recipients that changed.
    pub registry_refresh_secs: u64,
    /// Concurrent edge sessions, at most (each holds a PostgreSQL connection).
    /// Counted from before the TLS handshake: a connection over the cap is
    /// refused without one.
    pub max_sessions: usize,
    /// Stored events and operational rows (surplus, offers) the hub received
    /// more than this many days ago are deleted, hourly — whole monthly
    /// partitions where a month is wholly older; delivered kilograms are kept
    /// as daily totals (`impact_daily`). The audit log is kept.
    pub retention_days: u32,
    /// Bearer tokens on the HTTP API (`[auth]`).
    pub auth: HubAuthConfig,
    /// The fleet API's and the dashboard's figures (`[dashboard]`).
    pub dashboard: DashboardConfig,
}

/// How the dashboard turns kilograms into what people read (`[dashboard]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Greenhouse gas avoided per kilogram of food delivered instead of
    /// wasted, in kg CO2e. Default 2.5: FAO (2013), *Food Wastage
    /// Footprint: Impacts on Natural Resources, Summary Report* — 3.3 Gt
    /// CO2e for the 1.3 Gt of food wasted each year (about 2.5 kg CO2e per
    /// kg). A figure of your own region's food mix is better when you have it.
    pub co2e_kg_per_kg: f64,
    /// Grams of food counted as one meal (450 g by default).
    pub meal_grams: u32,
    /// An edge not heard from (lease renewal or batch) for this long is
    /// stale. Sessions renew leases every `lease_ttl_secs / 4`, so keep it
    /// above that.
    pub stale_after_secs: u64,
    /// A dashboard session (the sign-in cookie) lasts this many hours, or
    /// until the token it was traded for expires, whichever is first.
    pub session_hours: u32,
}

impl Default for DashboardConfig {
    fn default() -> DashboardConfig {
        DashboardConfig {
            co2e_kg_per_kg: 2.5,
            meal_grams: 450,
            stale_after_secs: 180,
            session_hours: 12,
        }
    }
}

/// The hub's bearer tokens (`[auth]`): RS256 JWTs of its own issuer and
/// audience, whose public keys are in a JWKS file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubAuthConfig {
    /// Tokens must carry this `iss`.
    pub issuer: String,
    /// ... and this `aud` (the edge's tokens say `pahlawan-edge`).
    pub audience: String,
    /// Where the token keys live: `jwt-signing.pem` (what `pahlawan token
    /// issue --for hub` signs with, 0600) and `jwks.json`. Default:
    /// `tokens/` beside the hub's TLS key (`certs/tokens`).
    pub keys_dir: Option<PathBuf>,
    /// The JWKS file the hub accepts keys from (default
    /// `<keys_dir>/jwks.json`).
    pub jwks_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: i64,
    /// Tokens living longer than this (`exp - iat`) are refused.
    pub max_token_lifetime_secs: i64,
    /// Verified tokens remembered (until they expire), at most.
    pub token_cache_entries: usize,
    /// Create a signing key and its JWKS in `keys_dir` on first start if no
    /// JWKS exists (turn off when keys are provisioned).
    pub create_keys: bool,
}

impl Default for HubAuthConfig {
    fn default() -> HubAuthConfig {
        HubAuthConfig {
            issuer: "pahlawan-hub".into(),
            audience: "pahlawan-hub".into(),
            keys_dir: None,
            jwks_file: None,
            leeway_secs: 30,
            max_token_lifetime_secs: 3_600,
            token_cache_entries: 4_096,
            create_keys: true,
        }
    }
}

/// The HTTP listener (`[http]`), as on the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubHttpConfig {
    /// `[http.connections]`: header 10 s, body 30 s, idle 60 s; at most
    /// 16,384 connections (fewer when the open-file limit is lower: the
    /// reserve is `reserved_fds` plus one PostgreSQL connection per
    /// session, `max_sessions`), 256 from one address.
    pub connections: http_listener::ConnLimits,
    /// `[http.tls]`: `cert`, `key` (re-read when they change). With it,
    /// `listen_http` speaks only HTTPS, with HSTS.
    pub tls: Option<http_listener::TlsFiles>,
    /// `loopback` (the default: `listen_http` off loopback needs
    /// `[http.tls]`) or `anywhere` (a proxy in front terminates TLS).
    pub plain_http: http_listener::PlainHttp,
    /// With `[http.tls]`, a second, plain-HTTP address; none by default.
    pub plain_listen: Option<SocketAddr>,
    /// Serve `/metrics` only here (plain HTTP, e.g. `127.0.0.1:9091` or a
    /// pod address Prometheus scrapes) and no longer on `listen_http`.
    /// Off loopback it needs `plain_http = "anywhere"`. None by default:
    /// `/metrics` is on `listen_http`, open like `/healthz`.
    pub metrics_listen: Option<SocketAddr>,
    /// PostgreSQL connections the HTTP API's handlers share (dashboards,
    /// the fleet API, readiness), 1 to 64, opened as needed: each serves
    /// one request at a time, and a request that finds none free within
    /// 5 s is answered `503`. Sessions have connections of their own.
    pub db_connections: usize,
}

impl Default for HubHttpConfig {
    fn default() -> HubHttpConfig {
        HubHttpConfig {
            connections: http_listener::ConnLimits::default(),
            tls: None,
            plain_http: http_listener::PlainHttp::default(),
            plain_listen: None,
            metrics_listen: None,
            db_connections: 4,
        }
    }
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
            http: HubHttpConfig::default(),
            lease_ttl_secs: 300,
            registry_refresh_secs: 30,
            max_sessions: 1_000,
            retention_days: 90,
            auth: HubAuthConfig::default(),
            dashboard: DashboardConfig::default(),
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
        let fig = config_layers::layered(&HubConfig::default(), file, ENV_PREFIX)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
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
        if !(1..=36_500).contains(&self.retention_days) {
            return Err(ConfigError::Invalid(
                "retention_days must be 1 to 36500".into(),
            ));
        }
        if self.lease_ttl_secs < 5 || self.registry_refresh_secs < 1 || self.max_sessions < 1 {
            return Err(ConfigError::Invalid(
                "lease_ttl_secs must be ≥ 5, registry_refresh_secs ≥ 1, max_sessions ≥ 1".into(),
            ));
        }
        let d = &self.dashboard;
        let sane = d.co2e_kg_per_kg.is_finite()
            && (0.0..=100.0).contains(&d.co2e_kg_per_kg)
            && (1..=10_000).contains(&d.meal_grams)
            && (10..=86_400).contains(&d.stale_after_secs)
            && (1..=720).contains(&d.session_hours);
        if !sane {
            return Err(ConfigError::Invalid(
                "dashboard: co2e_kg_per_kg must be 0 to 100, meal_grams 1 to 10000, stale_after_secs 10 to 86400, session_hours 1 to 720".into(),
            ));
        }
        if !(1..=64).contains(&self.http.db_connections) {
            return Err(ConfigError::Invalid(
                "http.db_connections must be 1 to 64".into(),
            ));
        }
        if self.auth.leeway_secs < 0 || self.auth.max_token_lifetime_secs < 60 {
            return Err(ConfigError::Invalid(
                "auth: leeway_secs must be ≥ 0 and max_token_lifetime_secs ≥ 60".into(),
            ));
        }
        self.listener()
            .check()
            .map_err(|e| ConfigError::Invalid(format!("http: {e}")))?;
        if let Some(m) = self.metrics_listener() {
            m.check()
                .map_err(|e| ConfigError::Invalid(format!("http.metrics_listen: {e}")))?;
        }
        Ok(())
    }

    /// Where the hub's token keys live (`[auth] keys_dir`, by default
    /// `tokens/` beside the TLS key).
    pub fn token_keys_dir(&self) -> PathBuf {
        self.auth.keys_dir.clone().unwrap_or_else(|| {
            self.tls
                .key
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("tokens")
        })
    }

    /// The `/metrics`-only listener, when `[http] metrics_listen` is set.
    pub fn metrics_listener(&self) -> Option<http_listener::ListenerConfig> {
        self.http
            .metrics_listen
            .map(|listen| http_listener::ListenerConfig {
                plain_http: self.http.plain_http,
                ..http_listener::ListenerConfig::plain(listen)
            })
    }

    /// What the HTTP listener serves. PostgreSQL connections (one per
    /// session, and the HTTP handlers' `db_connections`) come out of the
    /// descriptors the cap keeps back.
    pub fn listener(&self) -> http_listener::ListenerConfig {
        let mut limits = self.http.connections.clone();
        let postgres = self.max_sessions.saturating_add(self.http.db_connections);
        limits.reserved_fds = limits
            .reserved_fds
            .saturating_add(u64::try_from(postgres).unwrap_or(u64::MAX));
        http_listener::ListenerConfig {
            listen: self.listen_http,
            limits,
            tls: self.http.tls.clone(),
            plain_http: self.http.plain_http,
            plain_listen: self.http.plain_listen,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
database_url = "postgres://file@db/pahlawan"
lease_ttl_secs = 60
max_sessions = 50
[tls]
cert = "file/hub.crt"
"#;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's type
    fn file_over_defaults_and_environment_over_file() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env(); // the test runner's DATABASE_URL and PAHLAWAN_HUB_* stay out
            jail.create_file("hub.toml", FILE)?;
            jail.set_env("PAHLAWAN_HUB_LEASE_TTL_SECS", "90");
            jail.set_env("PAHLAWAN_HUB_TLS__KEY", "env/hub.key");
            jail.set_env("PAHLAWAN_HUB_LISTEN_HTTP", "0.0.0.0:9090");
            jail.set_env("DATABASE_URL", "postgres://fallback@db/other");
            let c = HubConfig::load(Some(Path::new("hub.toml"))).map_err(|e| e.to_string())?;
            let defaults = HubConfig::default();
            assert_eq!(c.max_sessions, 50, "file over default");
            assert_eq!(
                c.tls.cert,
                PathBuf::from("file/hub.crt"),
                "file over default"
            );
            assert_eq!(c.lease_ttl_secs, 90, "environment over file");
            assert_eq!(
                c.tls.key,
                PathBuf::from("env/hub.key"),
                "nested key from the environment"
            );
            assert_eq!(c.listen_http, SocketAddr::from(([0, 0, 0, 0], 9090)));
            assert_eq!(
                c.database_url, "postgres://file@db/pahlawan",
                "DATABASE_URL is only a fallback: the file's URL wins"
            );
            assert_eq!(
                (c.registry_refresh_secs, c.listen_quic, &c.tls.ca_cert),
                (
                    defaults.registry_refresh_secs,
                    defaults.listen_quic,
                    &defaults.tls.ca_cert
                ),
                "defaults where every layer is silent"
            );

            jail.set_env("PAHLAWAN_HUB_DATABASE_URL", "postgres://env@db/pahlawan");
            let c = HubConfig::load(Some(Path::new("hub.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                c.database_url, "postgres://env@db/pahlawan",
                "environment over file"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's type
    fn database_url_fills_in_when_no_layer_names_a_database() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env(); // the test runner's DATABASE_URL and PAHLAWAN_HUB_* stay out
            jail.create_file("hub.toml", "max_sessions = 7\n")?;
            let c = HubConfig::load(Some(Path::new("hub.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.database_url, "", "nothing set anywhere");
            assert!(
                c.validate()
                    .is_err_and(|e| e.to_string().contains("DATABASE_URL")),
                "a hub without a database is refused, naming the variable"
            );
            jail.set_env("DATABASE_URL", "postgres://fallback@db/pahlawan");
            let c = HubConfig::load(Some(Path::new("hub.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.database_url, "postgres://fallback@db/pahlawan");
            assert_eq!(c.max_sessions, 7);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's type
    fn a_bad_environment_value_is_a_readable_error() {
        figment::Jail::expect_with(|jail| {
            // (variable, value, what the message must say besides the source)
            let cases: [(&str, &str, &[&str]); 4] = [
                (
                    "PAHLAWAN_HUB_LEASE_TTL_SECS",
                    "soon",
                    &["LEASE_TTL_SECS", "\"soon\"", "u64"],
                ),
                (
                    "PAHLAWAN_HUB_LISTEN_HTTP",
                    "nowhere",
                    &["LISTEN_HTTP", "socket address"],
                ),
                ("PAHLAWAN_HUB_MAX_SESSIONS", "-3", &["MAX_SESSIONS", "-3"]),
                (
                    "PAHLAWAN_HUB_LEASE_TTL",
                    "60",
                    &["unknown field", "lease_ttl"],
                ),
            ];
            for (var, value, expected) in cases {
                jail.clear_env();
                jail.set_env(var, value);
                let Err(e) = HubConfig::load(None) else {
                    panic!("{var}={value} was accepted");
                };
                let message = e.to_string();
                assert!(
                    message.starts_with("reading configuration: ")
                        && message.contains(ENV_PREFIX)
                        && expected.iter().all(|part| message.contains(part)),
                    "{var}={value}: the error should name the source and {expected:?}: {message}"
                );
                assert!(!message.contains('\n'), "one line: {message}");
            }
            Ok(())
        });
    }
}
