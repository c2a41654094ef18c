//! A kiosk's device credential on the wire: the HttpOnly, SameSite=Strict
//! cookie that carries it, the CSRF token bound to it, and when the cookie
//! may be set at all.
//!
//! Why a cookie and not the page's storage: an HttpOnly cookie cannot be
//! read by script, so even a script injected into the page (which the CSP
//! already refuses) could not carry the credential away; SameSite=Strict
//! keeps other sites' pages from sending it. What a cookie adds — requests
//! another page makes the browser send — is closed by the CSRF token every
//! mutating call must carry in `X-CSRF-Token`: derived from the device
//! secret (so nothing more is stored), handed to the page only by
//! same-origin reads (`POST /kiosk/pair`, `GET /kiosk/session`), and
//! compared with the one the cookie implies.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_listener::ConnInfo;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The device cookie's name.
pub const DEVICE_COOKIE: &str = "pahlawan_kiosk";
/// The header a cookie-authenticated mutating call must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Bytes of a device secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// A device id and its secret, as the cookie holds them.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceSecret {
    pub id: Uuid,
    secret: [u8; SECRET_BYTES],
}

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceSecret({}, …)", self.id)
    }
}

impl DeviceSecret {
    pub fn new(id: Uuid, secret: [u8; SECRET_BYTES]) -> DeviceSecret {
        DeviceSecret { id, secret }
    }

    /// What is stored: SHA-256 of the secret (a read of the database does
    /// not give a working cookie).
    pub fn secret_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"pahlawan-kiosk-device-v1\0");
        h.update(self.secret);
        h.finalize().into()
    }

    /// The CSRF token bound to this secret.
    pub fn csrf_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pahlawan-kiosk-csrf-v1\0");
        h.update(self.secret);
        URL_SAFE_NO_PAD.encode(&h.finalize()[..18])
    }

    /// The cookie's value: `<device id>.<secret, base64url>`.
    fn value(&self) -> String {
        format!(
            "{}.{}",
            self.id.simple(),
            URL_SAFE_NO_PAD.encode(self.secret)
        )
    }

    fn parse(value: &str) -> Option<DeviceSecret> {
        let (id, secret) = value.split_once('.')?;
        let id = Uuid::try_parse(id).ok()?;
        let bytes = URL_SAFE_NO_PAD.decode(secret).ok()?;
        Some(DeviceSecret {
            id,
            secret: bytes.try_into().ok()?,
        })
    }

    /// The `Set-Cookie` value: HttpOnly, SameSite=Strict, the whole site,
    /// `Secure` when the connection is TLS.
    pub fn set_cookie(&self, max_age_secs: i64, Secure(secure): Secure) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        let v = format!(
            "{DEVICE_COOKIE}={}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}",
            self.value()
        );
        HeaderValue::from_str(&v).expect("ASCII without control characters")
    }

    /// Whether `presented` (the `X-CSRF-Token` header) is this secret's token.
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        let want = self.csrf_token();
        presented.is_some_and(|p| constant_time_eq(p.as_bytes(), want.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The device cookie a request carries: `None` without one, `Some(None)`
/// for one that does not parse.
pub fn from_headers(headers: &HeaderMap) -> Option<Option<DeviceSecret>> {
    http_listener::page::cookie(headers, DEVICE_COOKIE).map(DeviceSecret::parse)
}

/// How a device cookie may travel on a connection: `None` when it may not
/// at all (plain HTTP from another machine: anyone on the LAN could copy
/// it; or a request that came from no socket), else whether it is marked
/// `Secure` (HTTPS). The rule is `http_listener`'s, the one every page that
/// carries credentials asks.
pub fn cookie_transport(conn: Option<&ConnInfo>) -> Option<Secure> {
    conn.filter(|c| c.may_carry_credentials())
        .map(|c| Secure(c.tls))
}

/// Whether the cookie gets the `Secure` attribute (the connection is HTTPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure(pub bool);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn secret() -> DeviceSecret {
        DeviceSecret::new(Uuid::from_bytes([3; 16]), [9; SECRET_BYTES])
    }

    #[test]
    fn the_cookie_round_trips_and_is_http_only_and_strict() {
        let s = secret();
        let set = s.set_cookie(3600, Secure(false));
        let set = set.to_str().expect("ascii");
        assert!(set.contains("; HttpOnly; SameSite=Strict"), "{set}");
        assert!(!set.contains("Secure"), "{set}");
        assert!(
            s.set_cookie(1, Secure(true))
                .to_str()
                .expect("ascii")
                .ends_with("; Secure")
        );
        let value = set.split(';').next().expect("pair");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("lang=id; {value}")).expect("header"),
        );
        assert_eq!(from_headers(&h), Some(Some(s)));
    }

    #[test]
    fn bad_cookies_are_told_apart_from_none() {
        let mut h = HeaderMap::new();
        assert_eq!(from_headers(&h), None);
        for bad in [
            "pahlawan_kiosk=",
            "pahlawan_kiosk=nodot",
            "pahlawan_kiosk=zz.AAAA",
            "pahlawan_kiosk=03030303030303030303030303030303.short",
        ] {
            h.insert(header::COOKIE, HeaderValue::from_static(bad));
            assert_eq!(from_headers(&h), Some(None), "{bad}");
        }
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_secret() {
        let s = secret();
        let other = DeviceSecret::new(s.id, [8; SECRET_BYTES]);
        assert!(s.csrf_matches(Some(&s.csrf_token())));
        assert!(!s.csrf_matches(Some(&other.csrf_token())));
        assert!(!s.csrf_matches(None));
        assert!(!s.csrf_matches(Some("")));
        assert_ne!(s.secret_hash(), other.secret_hash());
    }

    #[test]
    fn the_cookie_travels_over_tls_or_from_loopback_only() {
        let info = |peer: &str, tls: bool| ConnInfo {
            peer: peer.parse().expect("addr"),
            local: "10.0.0.1:8080".parse().expect("addr"),
            tls,
        };
        for (conn, want) in [
            (Some(info("127.0.0.1:5000", false)), Some(Secure(false))),
            (Some(info("[::1]:5000", false)), Some(Secure(false))),
            (Some(info("192.168.1.20:5000", false)), None),
            (Some(info("[fd00::20]:5000", false)), None),
            (Some(info("192.168.1.20:5000", true)), Some(Secure(true))),
            (Some(info("127.0.0.1:5000", true)), Some(Secure(true))),
            (None, None),
        ] {
            assert_eq!(cookie_transport(conn.as_ref()), want, "{conn:?}");
        }
    }
}
