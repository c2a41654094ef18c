//! The edge's configuration: one struct, documented fields with units, the
//! defaults in one place (`EdgeConfig::default`). Loaded from defaults, then
//! an optional TOML file, then `PAHLAWAN_EDGE_*` environment variables
//! (nested fields with `__`, e.g. `PAHLAWAN_EDGE_MATCHING__RADIUS_KM=10`),
//! then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::Env;
use serde::{Deserialize, Serialize};
use sync_protocol::{Duration, EdgeId};

use crate::cells::{CellError, CellSet, GREATER_JAKARTA};
use edge_core::engine::{EngineConfig, LifecycleConfig};
use edge_core::matching::MatchParams;

pub const ENV_PREFIX: &str = "PAHLAWAN_EDGE_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// This edge's name: `a-z 0-9 - _ .`, at most 64 characters.
    pub edge_id: String,
    /// Where the SQLite database lives (created if missing).
    pub data_dir: PathBuf,
    /// The HTTP API's address. Use `0.0.0.0:8080` to serve kiosks on the
    /// LAN, with `[http.tls]` (plain HTTP is served on loopback only unless
    /// `http.plain_http = "anywhere"`).
    pub listen: SocketAddr,
    /// The city's offset from UTC in minutes; "today" for capacity starts at
    /// local midnight. Jakarta is +420.
    pub utc_offset_minutes: i32,
    /// Operational data (finished surplus and their offers, idempotency
    /// keys, acknowledged outbox events) older than this many days is
    /// deleted; delivered kilograms are kept as daily totals. The audit log
    /// is kept.
    pub retention_days: u32,
    pub cells: CellsConfig,
    pub matching: MatchParams,
    pub lifecycle: LifecycleConfig,
    pub store: StoreConfig,
    pub http: HttpConfig,
    pub matching_pool: MatchPoolConfig,
    /// Travel times from an OSRM-compatible service (`[routing]`); none by
    /// default (great-circle distance at `matching.speed_kmh`).
    pub routing: crate::routing::RoutingConfig,
    /// The cloud hub to sync with; none by default (the edge runs alone).
    pub hub: Option<HubLinkConfig>,
    pub auth: AuthConfig,
    pub rate_limits: RateLimitConfig,
    pub kiosk: KioskConfig,
    /// Scheduled backups of the database (`[backup]`); off by default.
    pub backup: BackupConfig,
    /// Notifications to recipients' channels and the on-call webhook
    /// (`[notify]`).
    pub notify: NotifyConfig,
}

/// The rule [`NotifyConfig::check_url`] applies (without
/// `allow_plain_http`), as the API's schema states it.
pub const WEBHOOK_URL_PATTERN: &str = r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.0\.0\.1|\[::1\]))(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$";

/// Notifications (`[notify]`): offers sent to the channels recipients
/// registered, the dead-letter queue's last resorts to the on-call webhook
/// in Prometheus Alertmanager's webhook format. Everything sent is an
/// effect of a committed outbox event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The dispatcher runs (it reads the outbox and sends nothing until a
    /// channel or the on-call webhook is configured).
    pub enabled: bool,
    /// Where the fallback and "no fallback" alerts go (an Alertmanager-style
    /// webhook receiver: PagerDuty, Opsgenie, Alertmanager itself).
    pub oncall_webhook_url: Option<String>,
    /// The address people reach this edge's API and kiosk page at; links in
    /// notifications start with it (default: the `listen` address).
    pub public_url: Option<String>,
    /// Deliveries waiting or in flight at most; the dispatcher reads no
    /// further events while it is full.
    pub max_queue: usize,
    /// Attempts in flight at once.
    pub max_in_flight: usize,
    /// One attempt's limit, from connect to the receiver's status line.
    pub attempt_timeout_ms: u64,
    /// Largest notification body sent.
    pub max_payload_bytes: usize,
    /// Retries wait from this, doubling to `backoff_max_ms`, jittered; an
    /// offer is retried until its ACK deadline, an alert for
    /// `alert_deadline_secs`.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub alert_deadline_secs: u64,
    /// A channel failing this many times in a row is left alone for
    /// `breaker_open_secs`, then probed with one attempt.
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    /// Channels one recipient may register.
    pub max_channels_per_recipient: u32,
    /// Accept `http://` webhook URLs off loopback (loopback is always
    /// accepted; anything else must be `https://`).
    pub allow_plain_http: bool,
    /// The SMS/WhatsApp gateway (`[notify.sms]`); none by default.
    pub sms: Option<SmsGatewayConfig>,
    /// Web Push to browsers that subscribed (`[notify.web_push]`).
    pub web_push: WebPushConfig,
}

/// Web Push (`[notify.web_push]`): offers to the push subscriptions of the
/// kiosk page and of phones' browsers (RFC 8030), encrypted for each
/// (RFC 8291) and signed with the edge's VAPID key (RFC 8292).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebPushConfig {
    pub enabled: bool,
    /// Who runs this edge, for the push services (`mailto:…` or
    /// `https://…`; some services refuse a message without a reachable
    /// one). Default: `mailto:` the operator at `localhost` — set it.
    pub subject: String,
    /// The VAPID key (PEM, PKCS#8 P-256); default `<data_dir>/keys/web-push-vapid.pem`,
    /// created on first start. Subscriptions are bound to it: a new key
    /// means every browser subscribes again.
    pub key_file: Option<PathBuf>,
}

impl Default for WebPushConfig {
    fn default() -> WebPushConfig {
        WebPushConfig {
            enabled: true,
            subject: "mailto:operator@localhost".into(),
            key_file: None,
        }
    }
}

/// The SMS/WhatsApp gateway (`[notify.sms]`), spoken to in the shape of
/// Twilio's Messages API: `POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`
/// with HTTP Basic auth, and replies received at `inbound_url`, signed with
/// `X-Twilio-Signature`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsGatewayConfig {
    #[serde(default = "default_sms_base")]
    pub base_url: String,
    pub account_sid: String,
    /// Set it from the environment (`PAHLAWAN_EDGE_NOTIFY__SMS__AUTH_TOKEN`)
    /// rather than the file; never printed.
    pub auth_token: Secret,
    /// The sender number for SMS (E.164).
    pub from: String,
    /// The WhatsApp sender number (E.164), if WhatsApp is used.
    #[serde(default)]
    pub whatsapp_from: Option<String>,
    /// The URL the gateway posts replies to, exactly as configured there
    /// (the signature covers it); default: `public_url` +
    /// `/api/v1/notify/sms/inbound`.
    #[serde(default)]
    pub inbound_url: Option<String>,
}

fn default_sms_base() -> String {
    "https://api.twilio.com".into()
}

/// A secret from the configuration: `Debug` and every dump of the
/// configuration say `<redacted>`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            enabled: true,
            oncall_webhook_url: None,
            public_url: None,
            max_queue: 2_048,
            max_in_flight: 32,
            attempt_timeout_ms: 5_000,
            max_payload_bytes: 16 * 1024,
            backoff_min_ms: 1_000,
            backoff_max_ms: 60_000,
            alert_deadline_secs: 3_600,
            breaker_failures: 5,
            breaker_open_secs: 30,
            max_channels_per_recipient: 8,
            allow_plain_http: false,
            sms: None,
            web_push: WebPushConfig::default(),
        }
    }
}

impl NotifyConfig {
    /// The dispatcher core's bounds and timings.
    pub fn dispatch(&self) -> edge_core::notify::DispatchConfig {
        let ms = |v: u64| sync_protocol::Duration::from_ms(i64::try_from(v).unwrap_or(i64::MAX));
        edge_core::notify::DispatchConfig {
            max_queue: self.max_queue,
            max_in_flight: self.max_in_flight,
            backoff_min: ms(self.backoff_min_ms),
            backoff_max: ms(self.backoff_max_ms),
            breaker: edge_core::breaker::BreakerConfig {
                failure_threshold: self.breaker_failures.max(1),
                open_for: ms(self.breaker_open_secs.saturating_mul(1_000)),
            },
        }
    }

    /// Whether `url` may be a webhook target: `https://` to a host name (or
    /// IPv4 address), or `http://` to `localhost`, `127.0.0.1` or
    /// `[::1]` (to any host with `allow_plain_http`); an optional port up
    /// to 65535; a path and query of URL characters; no user name or
    /// password, no fragment; at most 2,048 characters. The API's schema
    /// states the same rule as [`WEBHOOK_URL_PATTERN`].
    pub fn check_url(&self, url: &str) -> Result<(), &'static str> {
        if url.len() > 2_048 {
            return Err("at most 2048 characters");
        }
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("the scheme must be https:// (or http:// on loopback)");
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err("no user name or password in the URL");
        }
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                (&authority[..i], Some(&authority[i + 1..]))
            }
            _ => (authority, None),
        };
        let host_ok = (!https && host == "[::1]")
            || (!host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        if !host_ok {
            return Err("the host must be a name or an IPv4 address");
        }
        if let Some(port) = port
            && (!(1..=5).contains(&port.len())
                || !port.chars().all(|c| c.is_ascii_digit())
                || port.parse::<u32>().map_or(true, |p| p > 65_535))
        {
            return Err("the port must be a number up to 65535");
        }
        if let Some(path) = tail.strip_prefix(['/', '?']) {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "._~!$&'()*+,;=:@%/?-".contains(c);
            if !path.chars().all(allowed) {
                return Err("the path may hold URL characters only (no spaces, no fragment)");
            }
        }
        if https {
            return Ok(());
        }
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        if loopback || self.allow_plain_http {
            Ok(())
        } else {
            Err("http:// only on loopback (or with notify.allow_plain_http): use https://")
        }
    }
}

/// Scheduled backups (`[backup]`), the same files `pahlawan backup` writes,
/// named `edge-<UTC ms>.pahlbak`. `backup_age_seconds` in `/metrics` says
/// how old the newest is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Take one every this many hours, the first soon after start if none
    /// is that recent; 0 turns scheduled backups off.
    pub every_hours: u32,
    /// Keep the newest this many; older scheduled backups are deleted.
    pub keep: usize,
    /// Where they go (default: `<data_dir>/backups`). Put it on another disk.
    pub dir: Option<PathBuf>,
}

impl Default for BackupConfig {
    fn default() -> BackupConfig {
        BackupConfig {
            every_hours: 0,
            keep: 7,
            dir: None,
        }
    }
}

/// The food bank's kiosk page (`[kiosk]`, served at `/kiosk`): pairing
/// codes and the device credentials they are traded for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KioskConfig {
    /// A pairing code from `pahlawan kiosk pair` is valid this long.
    pub code_ttl_secs: i64,
    /// A device credential lives this long; used in its second half, it is
    /// renewed for as long again.
    pub device_lifetime_days: i64,
    /// Pairing attempts one client address may make per minute.
    pub pair_attempts_per_minute_per_peer: u32,
    /// Pairing attempts the edge takes per minute from everyone together.
    pub pair_attempts_per_minute: u32,
    /// Client addresses whose attempts are counted at once, at most.
    pub max_tracked_peers: usize,
    /// Device credentials one recipient may hold (revoked ones not counted).
    pub max_devices_per_recipient: u32,
}

impl Default for KioskConfig {
    fn default() -> KioskConfig {
        KioskConfig {
            code_ttl_secs: 600,
            device_lifetime_days: 90,
            pair_attempts_per_minute_per_peer: 10,
            pair_attempts_per_minute: 60,
            max_tracked_peers: 4096,
            max_devices_per_recipient: 16,
        }
    }
}

impl KioskConfig {
    pub fn code_ttl(&self) -> sync_protocol::Duration {
        sync_protocol::Duration::from_secs(self.code_ttl_secs)
    }

    pub fn device_lifetime(&self) -> sync_protocol::Duration {
        sync_protocol::Duration::from_secs(self.device_lifetime_days.saturating_mul(86_400))
    }

    /// The pairing-attempt limits the core counts with.
    pub fn attempt_limits(&self) -> edge_core::kiosk::AttemptLimits {
        edge_core::kiosk::AttemptLimits {
            window: sync_protocol::Duration::from_mins(1),
            per_peer: self.pair_attempts_per_minute_per_peer,
            total: self.pair_attempts_per_minute,
            max_peers: self.max_tracked_peers,
        }
    }
}

/// Bearer tokens (`[auth]`): RS256 JWTs whose public keys are in a JWKS file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Tokens must carry this `iss`.
    pub issuer: String,
    /// ... and this `aud`.
    pub audience: String,
    /// The JWKS file (default `<data_dir>/keys/jwks.json`); re-read when it
    /// changes, so keys rotate without a restart.
    pub jwks_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: i64,
    /// Tokens living longer than this (`exp - iat`) are refused.
    pub max_token_lifetime_secs: i64,
    /// Verified tokens remembered (until they expire), at most.
    pub token_cache_entries: usize,
    /// Create the signing key, JWKS and PII key in the data dir on first
    /// start if none exist (the local default; turn off when keys are
    /// provisioned).
    pub create_keys: bool,
}

/// Per-subject request rates (`[rate_limits]`), token buckets refilled over a
/// minute, and the cap on claims a recipient may hold open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub provider_per_minute: u32,
    pub ngo_per_minute: u32,
    pub admin_per_minute: u32,
    /// Claims (claimed, not yet picked up) one recipient may hold at once.
    pub max_open_claims_per_recipient: u32,
    /// Subjects tracked, at most; idle ones are forgotten first.
    pub max_tracked_subjects: usize,
    /// Refused tokens one client address may present per minute; beyond,
    /// it gets 429 without its tokens being verified (an RS256 check costs
    /// ~18 µs: a flood of forged tokens must not buy CPU).
    pub failed_auth_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            issuer: "pahlawan".into(),
            audience: "pahlawan-edge".into(),
            jwks_file: None,
            leeway_secs: 30,
            max_token_lifetime_secs: 900,
            token_cache_entries: 65_536,
            create_keys: true,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            provider_per_minute: 100,
            ngo_per_minute: 50,
            admin_per_minute: 1_000,
            max_open_claims_per_recipient: 20,
            max_tracked_subjects: 100_000,
            failed_auth_per_minute: 60,
        }
    }
}

/// How to reach the hub (`[hub]`): QUIC with mutual TLS, the certificate
/// files from `pahlawan certs init` / `issue-edge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubLinkConfig {
    /// `host:port` of the hub's QUIC endpoint.
    pub address: String,
    /// The name in the hub's certificate.
    #[serde(default = "default_hub_name")]
    pub server_name: String,
    pub ca_cert: PathBuf,
    /// This edge's certificate (its common name is this edge's id) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Reconnect backoff starts here and doubles (with jitter) up to the max.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Events per batch, at most.
    #[serde(default = "default_batch_events")]
    pub max_batch_events: usize,
    /// Batches awaiting the hub's acknowledgement, at most.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

fn default_hub_name() -> String {
    "pahlawan-hub".into()
}
fn default_reconnect_min_ms() -> u64 {
    200
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_batch_events() -> usize {
    sync_protocol::session::DEFAULT_MAX_BATCH_EVENTS
}
fn default_in_flight() -> usize {
    sync_protocol::session::DEFAULT_MAX_IN_FLIGHT
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CellsConfig {
    /// The S2 level of owned cells (9 ≈ 18 km across).
    pub level: u8,
    /// Owned cells as S2 tokens. When empty, the cells covering `bbox`.
    pub tokens: Vec<String>,
    /// `[lat_lo, lon_lo, lat_hi, lon_hi]` in degrees; Greater Jakarta by default.
    pub bbox: [f64; 4],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Commands committed together in one transaction, at most.
    pub max_batch: usize,
    /// Commands waiting for the writer, at most; more get 503 + Retry-After.
    pub queue_capacity: usize,
    /// Background commands (the hub link's marks and imports, retention,
    /// re-sealing, audit records) waiting for the writer, at most; more wait
    /// for room. The writer takes them after each group's requests.
    pub background_capacity: usize,
    /// How long a request waits for room to queue the audit record it must
    /// not answer without (a refusal, a read of contact data); after that it
    /// gets 503 + Retry-After.
    pub audit_wait_ms: u64,
    /// Idle read-only connections kept open.
    pub read_connections: usize,
    /// Unfinished surplus held at once, at most; more get 503.
    pub max_live_surplus: usize,
    /// Registered recipients (own and neighbours'), at most; more get 503.
    pub max_recipients: usize,
    /// Registered providers, at most; more get 503.
    pub max_providers: usize,
    /// Finished surplus stay in the `GET /surplus` listing this long.
    pub recent_window_mins: u32,
    /// ... but no more than this many of them.
    pub max_recent_finished: usize,
    /// The writer connection's SQLite page cache, MiB (most of the edge's
    /// memory on a busy box; see the memory budget in deploy/README.md).
    pub writer_cache_mib: u32,
    /// Each read connection's SQLite page cache, MiB.
    pub reader_cache_mib: u32,
    /// The WAL file is truncated back to this size, MiB, whenever a
    /// checkpoint resets it: bursts do not leave a large file on the card.
    pub wal_limit_mib: u32,
    /// A checkpoint copies the WAL into the database once it holds this
    /// many 4 KiB pages (SQLite's default, 1,000: ~4 MiB).
    pub wal_autocheckpoint_pages: u32,
    /// Writes are refused (507 Insufficient Storage) while the data
    /// directory's file system has less than this free, MiB: the rest is
    /// kept for the checkpoint, the logs and the system. 0: only a commit
    /// that fails for a full disk stops writes. Writes resume by themselves
    /// once space is freed.
    pub min_free_mib: u32,
    /// While writes are refused for a full disk, one group tries anyway
    /// this often (space a quota or root's reserve hides may be back).
    pub disk_probe_secs: u32,
}

/// The matching worker pool (`[matching_pool]`): requests that match (posts,
/// declines) hold a slot while they do; beyond `workers` busy and `queue`
/// waiting, they get 503 + Retry-After. Busy / workers is
/// `matching_engine_saturation_ratio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchPoolConfig {
    pub workers: usize,
    pub queue: usize,
}

impl Default for MatchPoolConfig {
    fn default() -> MatchPoolConfig {
        MatchPoolConfig {
            workers: 128,
            queue: 1_024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `GET /surplus` returns at most this many items.
    pub max_list_items: usize,
    /// `GET /surplus` refuses a larger `radius_km`.
    pub max_radius_km: f64,
    /// Concurrent SSE offer streams, at most; more get 503.
    pub max_streams: usize,
    /// SSE keep-alive comment interval.
    pub sse_keepalive_secs: u64,
    /// Time limits and caps on connections (`[http.connections]`): header
    /// 10 s, body 30 s, idle 60 s; at most 16,384 connections (fewer when
    /// the open-file limit is lower), 256 from one address.
    pub connections: http_listener::ConnLimits,
    /// HTTPS (`[http.tls]`: `cert`, `key`, re-read when they change). With
    /// it, `listen` speaks only HTTPS and every answer carries HSTS.
    pub tls: Option<http_listener::TlsFiles>,
    /// Where plain HTTP may be served: `loopback` (the default; a `listen`
    /// off loopback then needs `[http.tls]`) or `anywhere`.
    pub plain_http: http_listener::PlainHttp,
    /// With `[http.tls]`, a second, plain-HTTP address (loopback, for
    /// probes and scrapes, say); none by default.
    pub plain_listen: Option<SocketAddr>,
}

impl Default for EdgeConfig {
    fn default() -> EdgeConfig {
        EdgeConfig {
            edge_id: "edge-local".into(),
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            utc_offset_minutes: 420,
            retention_days: 90,
            cells: CellsConfig::default(),
            matching: MatchParams::default(),
            lifecycle: LifecycleConfig::default(),
            store: StoreConfig::default(),
            http: HttpConfig::default(),
            matching_pool: MatchPoolConfig::default(),
            routing: crate::routing::RoutingConfig::default(),
            hub: None,
            auth: AuthConfig::default(),
            rate_limits: RateLimitConfig::default(),
            kiosk: KioskConfig::default(),
            backup: BackupConfig::default(),
            notify: NotifyConfig::default(),
        }
    }
}

impl Default for CellsConfig {
    fn default() -> CellsConfig {
        CellsConfig {
            level: 9,
            tokens: Vec::new(),
            bbox: GREATER_JAKARTA,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            max_batch: 1_024,
            queue_capacity: 16_384,
            background_capacity: 1_024,
            audit_wait_ms: 1_000,
            read_connections: 4,
            max_live_surplus: 1_000_000,
            max_recipients: 100_000,
            max_providers: 1_000_000,
            recent_window_mins: 24 * 60,
            max_recent_finished: 200_000,
            writer_cache_mib: 32,
            reader_cache_mib: 8,
            wal_limit_mib: 64,
            wal_autocheckpoint_pages: 1_000,
            min_free_mib: 64,
            disk_probe_secs: 10,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_body_bytes: 64 * 1024,
            max_list_items: 500,
            max_radius_km: 100.0,
            max_streams: 10_000,
            sse_keepalive_secs: 15,
            connections: http_listener::ConnLimits::default(),
            tls: None,
            plain_http: http_listener::PlainHttp::default(),
            plain_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("edge_id: {0}")]
    EdgeId(#[from] sync_protocol::EdgeIdError),
    #[error("cells: {0}")]
    Cells(#[from] CellError),
    #[error("{0}")]
    Invalid(String),
}

/// One setting: its dotted key, its value and where the value came from.
pub type Sourced = (String, serde_json::Value, Source);

/// Where a setting's value came from (the CLI adds its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
        }
    }
}

/// Defaults, then `file` (if given), then the environment.
fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
    config_layers::layered(&EdgeConfig::default(), file, ENV_PREFIX)
        .map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// The leaves of `v` as (dotted key, value); arrays are leaves.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, child, out);
            }
        }
        serde_json::Value::Null => {}
        leaf => out.push((prefix.to_string(), leaf.clone())),
    }
}

/// A configuration that passed validation, with derived values.
#[derive(Debug, Clone)]
pub struct Validated {
    pub raw: EdgeConfig,
    pub edge_id: EdgeId,
    pub cells: CellSet,
    pub engine: EngineConfig,
}

impl EdgeConfig {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<EdgeConfig, ConfigError> {
        figment(file)?
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// [`EdgeConfig::load`], and where each setting's value came from, by
    /// dotted key (`matching.radius_km`), sorted by key.
    pub fn load_with_sources(
        file: Option<&Path>,
    ) -> Result<(EdgeConfig, Vec<Sourced>), ConfigError> {
        use figment::Provider as _;
        let fig = figment(file)?;
        let config: EdgeConfig = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        let mut leaves = Vec::new();
        let value =
            serde_json::to_value(&config).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        flatten("", &value, &mut leaves);
        let env_name = Env::prefixed(ENV_PREFIX).metadata().name;
        let sourced = leaves
            .into_iter()
            .map(|(key, v)| {
                let source = match fig.find_metadata(&key) {
                    Some(m) if m.name == env_name => Source::Env,
                    Some(m) if matches!(m.source, Some(figment::Source::File(_))) => Source::File,
                    _ => Source::Default,
                };
                (key, v, source)
            })
            .collect();
        Ok((config, sourced))
    }

    pub fn validate(self) -> Result<Validated, ConfigError> {
        let edge_id = EdgeId::new(&self.edge_id)?;
        let cells = if self.cells.tokens.is_empty() {
            CellSet::covering(self.cells.level, self.cells.bbox)?
        } else {
            CellSet::from_tokens(self.cells.level, &self.cells.tokens)?
        };
        let checks = self.core_checks().into_iter().chain(self.shell_checks());
        if let Some((_, msg)) = checks.into_iter().find(|(ok, _)| !ok) {
            return Err(ConfigError::Invalid(msg.to_string()));
        }
        self.routing
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("routing: {e}")))?;
        self.check_notify()?;
        self.listener()
            .check()
            .map_err(|e| ConfigError::Invalid(format!("http: {e}")))?;
        let engine = EngineConfig {
            matching: self.matching,
            lifecycle: self.lifecycle,
            utc_offset_minutes: self.utc_offset_minutes,
            max_live_surplus: self.store.max_live_surplus,
            max_recipients: self.store.max_recipients,
            max_providers: self.store.max_providers,
            max_open_claims: self.rate_limits.max_open_claims_per_recipient,
            ..EngineConfig::default()
        };
        Ok(Validated {
            raw: self,
            edge_id,
            cells,
            engine,
        })
    }

    /// Where people reach this edge, without a trailing `/`:
    /// `notify.public_url`, else the `listen` address (`https` with
    /// `[http.tls]`).
    pub fn public_base_url(&self) -> String {
        let scheme = if self.http.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.notify
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    fn check_notify(&self) -> Result<(), ConfigError> {
        let n = &self.notify;
        let bad = |msg: &str| Err(ConfigError::Invalid(format!("notify: {msg}")));
        if let Some(url) = &n.oncall_webhook_url
            && let Err(e) = n.check_url(url)
        {
            return bad(&format!("oncall_webhook_url: {e}"));
        }
        if let Some(url) = &n.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return bad("public_url must start with https:// or http://");
        }
        let subject = &n.web_push.subject;
        if !(subject.starts_with("mailto:") && subject.len() > 7
            || subject.starts_with("https://") && subject.len() > 8)
            || subject.len() > 256
        {
            return bad("web_push.subject must be a mailto: or https:// URL");
        }
        let checks = [
            (
                n.max_queue >= 1 && n.max_queue <= 1_000_000,
                "max_queue must be in [1, 1000000]",
            ),
            (
                n.max_in_flight >= 1 && n.max_in_flight <= 1_024,
                "max_in_flight must be in [1, 1024]",
            ),
            (
                n.attempt_timeout_ms >= 100 && n.attempt_timeout_ms <= 120_000,
                "attempt_timeout_ms must be in [100, 120000]",
            ),
            (
                n.max_payload_bytes >= 1_024 && n.max_payload_bytes <= 1 << 20,
                "max_payload_bytes must be in [1024, 1048576]",
            ),
            (
                n.backoff_min_ms >= 1 && n.backoff_max_ms >= n.backoff_min_ms,
                "backoff_max_ms must be ≥ backoff_min_ms ≥ 1",
            ),
            (n.breaker_failures >= 1, "breaker_failures must be ≥ 1"),
            (
                n.max_channels_per_recipient <= 64,
                "max_channels_per_recipient must be ≤ 64",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => bad(msg),
            None => Ok(()),
        }
    }

    /// The matching, lifecycle and store bounds: (holds, what must hold).
    fn core_checks(&self) -> [(bool, &'static str); 10] {
        let m = &self.matching;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        [
            (
                positive(m.radius_km) && m.radius_km <= 500.0,
                "matching.radius_km must be in (0, 500]",
            ),
            (
                positive(m.speed_kmh) && m.speed_kmh <= 300.0,
                "matching.speed_kmh must be in (0, 300]",
            ),
            (
                m.max_feasible >= 1 && m.max_scanned >= m.max_feasible,
                "matching.max_scanned must be ≥ max_feasible ≥ 1",
            ),
            (
                self.lifecycle.ack_timeout_secs >= 1,
                "lifecycle.ack_timeout_secs must be ≥ 1",
            ),
            (
                self.lifecycle.dlq_backoff_base_secs >= 1,
                "lifecycle.dlq_backoff_base_secs must be ≥ 1",
            ),
            (
                self.lifecycle.max_offers >= 1,
                "lifecycle.max_offers must be ≥ 1",
            ),
            (
                (-720..=840).contains(&self.utc_offset_minutes),
                "utc_offset_minutes must be in [-720, 840]",
            ),
            (
                self.store.max_batch >= 1 && self.store.queue_capacity >= 1,
                "store.max_batch and store.queue_capacity must be ≥ 1",
            ),
            (
                self.store.background_capacity >= 1
                    && (1..=60_000).contains(&self.store.audit_wait_ms),
                "store.background_capacity must be ≥ 1 and store.audit_wait_ms in 1..=60000",
            ),
            (
                self.store.max_live_surplus >= 1,
                "store.max_live_surplus must be ≥ 1",
            ),
        ]
    }

    /// The HTTP, link, auth and admission bounds: (holds, what must hold).
    fn shell_checks(&self) -> [(bool, &'static str); 11] {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        [
            (
                self.http.max_body_bytes >= 1_024,
                "http.max_body_bytes must be ≥ 1024",
            ),
            (
                self.http.max_list_items >= 1 && positive(self.http.max_radius_km),
                "http.max_list_items and http.max_radius_km must be positive",
            ),
            (
                self.hub.as_ref().is_none_or(|h| {
                    h.reconnect_min_ms >= 10
                        && h.reconnect_max_ms >= h.reconnect_min_ms
                        && (1..=sync_protocol::session::msg::MAX_BATCH_EVENTS)
                            .contains(&h.max_batch_events)
                        && (1..=64).contains(&h.max_in_flight)
                }),
                "hub: reconnect_max_ms ≥ reconnect_min_ms ≥ 10, max_batch_events in 1..=2048, max_in_flight in 1..=64",
            ),
            (
                [
                    self.rate_limits.provider_per_minute,
                    self.rate_limits.ngo_per_minute,
                    self.rate_limits.admin_per_minute,
                ]
                .iter()
                .all(|n| *n >= 1),
                "rate_limits: every per_minute must be ≥ 1",
            ),
            (
                self.rate_limits.max_open_claims_per_recipient >= 1,
                "rate_limits.max_open_claims_per_recipient must be ≥ 1",
            ),
            (
                self.auth.leeway_secs >= 0 && self.auth.max_token_lifetime_secs >= 60,
                "auth: leeway_secs ≥ 0 and max_token_lifetime_secs ≥ 60",
            ),
            (
                (1..=36_500).contains(&self.retention_days),
                "retention_days must be 1 to 36500",
            ),
            (
                self.backup.every_hours <= 8_760 && self.backup.keep >= 1,
                "backup.every_hours must be 0 to 8760 and backup.keep ≥ 1",
            ),
            (
                (1..=65_536).contains(&self.matching_pool.workers)
                    && self.matching_pool.queue <= 1_000_000,
                "matching_pool: workers 1 to 65536, queue at most 1000000",
            ),
            (
                (60..=86_400).contains(&self.kiosk.code_ttl_secs)
                    && (1..=3_650).contains(&self.kiosk.device_lifetime_days)
                    && self.kiosk.pair_attempts_per_minute_per_peer >= 1
                    && self.kiosk.pair_attempts_per_minute >= 1
                    && self.kiosk.max_tracked_peers >= 1
                    && self.kiosk.max_devices_per_recipient >= 1,
                "kiosk: code_ttl_secs 60 to 86400, device_lifetime_days 1 to 3650, every limit ≥ 1",
            ),
            (
                (1..=4_096).contains(&self.store.writer_cache_mib)
                    && (1..=1_024).contains(&self.store.reader_cache_mib)
                    && (1..=65_536).contains(&self.store.wal_limit_mib)
                    && (100..=1_000_000).contains(&self.store.wal_autocheckpoint_pages)
                    && self.store.min_free_mib <= 1_048_576
                    && (1..=3_600).contains(&self.store.disk_probe_secs),
                "store: writer_cache_mib 1 to 4096, reader_cache_mib 1 to 1024, wal_limit_mib 1 to 65536, wal_autocheckpoint_pages 100 to 1000000, min_free_mib at most 1048576, disk_probe_secs 1 to 3600",
            ),
        ]
    }

    /// What the HTTP listener serves: `listen` (HTTPS with `[http.tls]`),
    /// the optional plain address, the connection limits.
    pub fn listener(&self) -> http_listener::ListenerConfig {
        http_listener::ListenerConfig {
            listen: self.listen,
            limits: self.http.connections.clone(),
            tls: self.http.tls.clone(),
            plain_http: self.http.plain_http,
            plain_listen: self.http.plain_listen,
        }
    }

    /// The JWKS file in effect.
    pub fn jwks_path(&self) -> PathBuf {
        self.auth.jwks_file.clone().unwrap_or_else(|| {
            crate::keyfiles::keys_dir(&self.data_dir).join(crate::keyfiles::JWKS)
        })
    }

    /// Where the VAPID key for Web Push is (or will be created).
    pub fn vapid_key_path(&self) -> PathBuf {
        self.notify.web_push.key_file.clone().unwrap_or_else(|| {
            crate::keyfiles::keys_dir(&self.data_dir).join(crate::keyfiles::VAPID_KEY)
        })
    }

    pub fn recent_window(&self) -> Duration {
        Duration::from_mins(i64::from(self.store.recent_window_mins))
    }

    /// Where scheduled backups go.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups"))
    }

    /// The effective configuration as TOML (for `pahlawan edge config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_judged_alike_by_the_edge_and_by_its_schema() {
        let pattern = jsonschema::validator_for(
            &serde_json::json!({"type": "string", "pattern": WEBHOOK_URL_PATTERN}),
        )
        .expect("the pattern compiles");
        let n = NotifyConfig::default();
        let long = format!("https://x.example/{}", "a".repeat(2_100));
        for (url, ok) in [
            ("https://hooks.example.org/pahlawan", true),
            ("https://hooks.example.org", true),
            ("https://hooks.example.org:8443/a/b?x=1&y=%20", true),
            ("https://[2001:db8::1]:443/h", false),
            ("https://[f44FE6a62:eB.d7FA7BF:C]", false),
            ("http://127.0.0.1:9/hook", true),
            ("http://localhost/hook", true),
            ("http://[::1]:8080", true),
            ("https://h.example:65535", true),
            ("https://h.example:65536", false),
            ("https://h.example:", false),
            ("https://h.example:80a", false),
            ("http://hooks.example.org/x", false),
            ("http://10.0.0.1/x", false),
            ("ftp://127.0.0.1/x", false),
            ("https://user:pw@hooks.example.org/x", false),
            ("https://hooks.example.org/a b", false),
            ("https://hooks.example.org/#frag", false),
            ("https://", false),
            ("https:///path", false),
            ("https://ho_st/", false),
            ("not a url", false),
            ("", false),
        ] {
            assert_eq!(n.check_url(url).is_ok(), ok, "the edge on {url:?}");
            assert_eq!(
                pattern.is_valid(&serde_json::json!(url)),
                ok,
                "the pattern on {url:?}"
            );
        }
        assert!(n.check_url(&long).is_err());
        let plain = NotifyConfig {
            allow_plain_http: true,
            ..NotifyConfig::default()
        };
        assert!(plain.check_url("http://hooks.example.org/x").is_ok());
    }

    #[test]
    fn defaults_validate_and_cover_jakarta() {
        let v = EdgeConfig::default()
            .validate()
            .expect("defaults are valid");
        assert_eq!(v.edge_id.as_str(), "edge-local");
        assert!(v.cells.len() > 1);
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("edge.toml");
        std::fs::write(&f, "edge_id = \"bandung-1\"\n[matching]\nradius_km = 7.5\n")
            .expect("write");
        let c = EdgeConfig::load(Some(&f)).expect("loads");
        assert_eq!(c.edge_id, "bandung-1");
        assert_eq!(c.matching.radius_km, 7.5);
        assert_eq!(c.matching.speed_kmh, MatchParams::default().speed_kmh);
        std::fs::write(&f, "radius = 3\n").expect("write");
        assert!(EdgeConfig::load(Some(&f)).is_err());
        assert!(EdgeConfig::load(Some(&dir.path().join("missing.toml"))).is_err());
    }

    fn link(tweak: fn(&mut HubLinkConfig)) -> HubLinkConfig {
        let mut h = HubLinkConfig {
            address: "hub:4433".into(),
            server_name: default_hub_name(),
            ca_cert: "ca.crt".into(),
            cert: "edge.crt".into(),
            key: "edge.key".into(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            max_batch_events: default_batch_events(),
            max_in_flight: default_in_flight(),
        };
        tweak(&mut h);
        h
    }

    #[test]
    fn invalid_values_are_refused_with_their_name() {
        type Mutation = fn(&mut EdgeConfig);
        let table: Vec<(Mutation, &str)> = vec![
            (|c| c.edge_id = "Bad Id".into(), "edge_id"),
            (|c| c.matching.radius_km = f64::NAN, "radius_km"),
            (|c| c.lifecycle.ack_timeout_secs = 0, "ack_timeout_secs"),
            (|c| c.cells.tokens = vec!["nope".into()], "cells"),
            (|c| c.utc_offset_minutes = 5_000, "utc_offset_minutes"),
            (
                |c| c.listen = SocketAddr::from(([0, 0, 0, 0], 8080)),
                "http.tls",
            ),
            (
                |c| c.http.connections.idle_timeout_secs = 0,
                "idle_timeout_secs",
            ),
            (
                |c| c.hub = Some(link(|h| h.reconnect_min_ms = 0)),
                "reconnect_min_ms",
            ),
            (
                |c| c.hub = Some(link(|h| h.reconnect_max_ms = 20)),
                "reconnect_max_ms",
            ),
            (
                |c| c.hub = Some(link(|h| h.max_in_flight = 0)),
                "max_in_flight",
            ),
            (
                |c| c.hub = Some(link(|h| h.max_batch_events = 0)),
                "max_batch_events",
            ),
            (
                |c| c.hub = Some(link(|h| h.max_batch_events = 1_000_000)),
                "max_batch_events",
            ),
        ];
        for (mutate, needle) in table {
            let mut c = EdgeConfig::default();
            mutate(&mut c);
            let err = c.validate().expect_err("must be refused").to_string();
            assert!(err.contains(needle), "{err:?} should name {needle}");
        }
    }
}

#[cfg(test)]
mod precedence {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's type
    fn environment_overrides_the_file_which_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "edge.toml",
                "edge_id = \"from-file\"\n[matching]\nradius_km = 7.5\nspeed_kmh = 30.0\n",
            )?;
            jail.set_env("PAHLAWAN_EDGE_MATCHING__RADIUS_KM", "10");
            jail.set_env("PAHLAWAN_EDGE_LISTEN", "0.0.0.0:9000");
            let c = EdgeConfig::load(Some(Path::new("edge.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.edge_id, "from-file", "file over default");
            assert_eq!(c.matching.radius_km, 10.0, "environment over file");
            assert_eq!(
                c.matching.speed_kmh, 30.0,
                "file kept where the environment is silent"
            );
            assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
            assert_eq!(
                c.store,
                StoreConfig::default(),
                "defaults where both are silent"
            );
            jail.set_env("PAHLAWAN_EDGE_MATCHING__RADIUS_KM", "lots");
            assert!(
                EdgeConfig::load(Some(Path::new("edge.toml"))).is_err(),
                "a bad value is an error"
            );
            Ok(())
        });
    }
}
