//! The listener's settings, as the edge's `[http]` and the hub's `[http]`
//! sections carry them: `[http.connections]` (timeouts and caps),
//! `[http.tls]` (certificate files), where plain HTTP may be served. The
//! defaults live here, once, for both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Time limits and caps on the connections of one HTTP server
/// (`[http.connections]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnLimits {
    /// A request's whole header must arrive within this many seconds of its
    /// first byte (for a new connection: of the connection; on TLS: the
    /// handshake too), or the connection is closed.
    pub header_read_timeout_secs: u64,
    /// A request's whole body must arrive within this many seconds of its
    /// header, or the request fails (408) and the connection is closed.
    pub body_read_timeout_secs: u64,
    /// A kept-alive connection with no request in flight is closed after
    /// this many seconds. A response still streaming (an SSE offer stream)
    /// is a request in flight: exempt, but still counted by the caps.
    pub idle_timeout_secs: u64,
    /// Open connections, at most, all listeners of the server together.
    /// The cap in effect is the smaller of this and the process's soft
    /// `RLIMIT_NOFILE` (raised to the hard limit at start) minus
    /// `reserved_fds`. Over it, a new connection is closed at once (on
    /// plain HTTP, after a one-line 503 with `Retry-After`).
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 client: its /64),
    /// at most. Generous: a food bank's kiosks and phones share one NAT.
    pub max_connections_per_address: usize,
    /// File descriptors kept back from the connection cap for everything
    /// else the process opens (SQLite and its WAL, QUIC, the kiosk
    /// listener, key files, PostgreSQL).
    pub reserved_fds: u64,
}

impl Default for ConnLimits {
    fn default() -> ConnLimits {
        ConnLimits {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 16_384,
            max_connections_per_address: 256,
            reserved_fds: 256,
        }
    }
}

impl ConnLimits {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// What must hold, or the message naming the field (prefixed by the
    /// caller's section).
    pub fn check(&self) -> Result<(), String> {
        let secs = |v: u64| (1..=3_600).contains(&v);
        if !(secs(self.header_read_timeout_secs)
            && secs(self.body_read_timeout_secs)
            && secs(self.idle_timeout_secs))
        {
            return Err("connections: header_read_timeout_secs, body_read_timeout_secs and idle_timeout_secs must be 1 to 3600".into());
        }
        if self.max_connections < 1
            || self.max_connections_per_address < 1
            || self.max_connections_per_address > self.max_connections
        {
            return Err("connections: max_connections ≥ max_connections_per_address ≥ 1".into());
        }
        Ok(())
    }
}

/// The server's certificate (`[http.tls]`): PEM files, re-read when they
/// change. With it, the main listener speaks only HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`pahlawan certs issue-web`, or any
    /// operator certificate).
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are checked for a change, in milliseconds.
    #[serde(default = "default_reload_check_ms")]
    pub reload_check_ms: u64,
    /// `Strict-Transport-Security: max-age` sent on every HTTPS response,
    /// in seconds.
    #[serde(default = "default_hsts_max_age_secs")]
    pub hsts_max_age_secs: u64,
}

fn default_reload_check_ms() -> u64 {
    2_000
}
fn default_hsts_max_age_secs() -> u64 {
    31_536_000
}

impl TlsFiles {
    pub fn new(cert: PathBuf, key: PathBuf) -> TlsFiles {
        TlsFiles {
            cert,
            key,
            reload_check_ms: default_reload_check_ms(),
            hsts_max_age_secs: default_hsts_max_age_secs(),
        }
    }
}

/// Where plain (unencrypted) HTTP may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlainHttp {
    /// Only on a loopback address (the default): anything that crosses a
    /// network needs `[http.tls]`.
    #[default]
    Loopback,
    /// On any address: the operator says a proxy in front terminates TLS,
    /// or accepts the risk.
    Anywhere,
}

/// Everything one HTTP server needs to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The main address: HTTPS with `tls`, else plain HTTP.
    pub listen: SocketAddr,
    pub limits: ConnLimits,
    pub tls: Option<TlsFiles>,
    pub plain_http: PlainHttp,
    /// A second, plain-HTTP address beside an HTTPS `listen` (probes and
    /// scrapes on loopback, say); none by default.
    pub plain_listen: Option<SocketAddr>,
}

impl ListenerConfig {
    /// A plain-HTTP listener on loopback with the default limits.
    pub fn plain(listen: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            listen,
            limits: ConnLimits::default(),
            tls: None,
            plain_http: PlainHttp::Loopback,
            plain_listen: None,
        }
    }

    /// The addresses served, each with whether it speaks TLS.
    pub fn addresses(&self) -> Vec<(SocketAddr, bool)> {
        let mut out = vec![(self.listen, self.tls.is_some())];
        out.extend(self.plain_listen.map(|a| (a, false)));
        out
    }

    /// The limits hold and plain HTTP is served only where allowed.
    pub fn check(&self) -> Result<(), String> {
        self.limits.check()?;
        if self.tls.is_none() && self.plain_listen.is_some() {
            return Err("plain_listen is a second listener beside an HTTPS one: it needs [http.tls] (without it, `listen` is plain already)".into());
        }
        if let Some(t) = &self.tls
            && t.reload_check_ms < 10
        {
            return Err("tls.reload_check_ms must be ≥ 10".into());
        }
        for (addr, tls) in self.addresses() {
            if !tls
                && self.plain_http == PlainHttp::Loopback
                && !addr.ip().to_canonical().is_loopback()
            {
                return Err(format!(
                    "{addr} would serve plain HTTP off loopback: configure [http.tls] (cert, key), \
                     or set http.plain_http = \"anywhere\" if a proxy in front terminates TLS"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_off_loopback_needs_tls_or_an_explicit_yes() {
        let lan = SocketAddr::from(([0, 0, 0, 0], 8080));
        let mut c = ListenerConfig::plain(SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.check(), Ok(()));
        c.listen = lan;
        let err = c.check().expect_err("plain on the LAN");
        assert!(err.contains("[http.tls]"), "{err}");
        c.plain_http = PlainHttp::Anywhere;
        assert_eq!(c.check(), Ok(()));
        c.plain_http = PlainHttp::Loopback;
        c.tls = Some(TlsFiles::new("web.crt".into(), "web.key".into()));
        assert_eq!(c.check(), Ok(()), "HTTPS on the LAN");
        c.plain_listen = Some(lan);
        assert!(c.check().is_err(), "the extra plain listener off loopback");
        c.plain_listen = Some(SocketAddr::from(([127, 0, 0, 1], 8081)));
        assert_eq!(c.check(), Ok(()));
        c.tls = None;
        assert!(c.check().is_err(), "a second plain listener without TLS");
    }

    #[test]
    fn limits_are_checked_by_name() {
        type Mutation = fn(&mut ConnLimits);
        let table: [(Mutation, &str); 4] = [
            (
                |l| l.header_read_timeout_secs = 0,
                "header_read_timeout_secs",
            ),
            (|l| l.idle_timeout_secs = 100_000, "idle_timeout_secs"),
            (|l| l.max_connections = 0, "max_connections"),
            (
                |l| l.max_connections_per_address = l.max_connections + 1,
                "max_connections_per_address",
            ),
        ];
        for (mutate, name) in table {
            let mut l = ConnLimits::default();
            mutate(&mut l);
            let err = l.check().expect_err(name);
            assert!(err.contains(name), "{err} names {name}");
        }
        assert_eq!(ConnLimits::default().check(), Ok(()));
    }
}
