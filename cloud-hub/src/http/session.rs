//! Signing in to the dashboard: a one-time login code (`pahlawan hub
//! login-code`) or a hub bearer token is traded at `POST /dashboard/session`
//! for a session cookie; `GET` tells the page who is signed in (and its CSRF
//! token), `DELETE` signs out.
//!
//! The cookie is HttpOnly (script cannot read it, so nothing injected could
//! carry it away) and SameSite=Strict (other sites' pages do not send it),
//! `Secure` over HTTPS, and is set and accepted only where
//! `http_listener` says credentials may travel: HTTPS, or plain HTTP from
//! loopback. What SameSite leaves — a request another page of the same site
//! makes the browser send — is closed by the CSRF token every mutating
//! cookie request must carry in `X-CSRF-Token`: derived from the session's
//! secret, handed to the page only by same-origin reads, compared in
//! constant time. Sign-in itself takes JSON only (a form on another site
//! cannot send `application/json` without a preflight the hub never
//! answers), refuses a foreign `Origin`, and is rate-limited per address.
//! The database holds only the SHA-256 of each secret.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_listener::ConnInfo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sync_protocol::{Duration, Timestamp};

use super::signin::json_body;
use super::{HttpState, error, odt, with_db};
use crate::auth::{self, HubPrincipal, HubRole};
use crate::db::signin;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "pahlawan_hub";
/// The header a cookie-authenticated mutating call must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sign-in attempts one address may make per window.
pub const SIGN_IN_ATTEMPTS: u32 = 10;
/// ... and the window.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses the limiter remembers at once; beyond, attempts are refused
/// until the window passes (a flood of addresses cannot grow it).
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// A session's secret, as the cookie carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret([u8; 32]);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(…)")
    }
}

impl SessionSecret {
    pub fn new(bytes: [u8; 32]) -> SessionSecret {
        SessionSecret(bytes)
    }

    /// What the database stores.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"pahlawan-hub-session-v1\0");
        h.update(self.0);
        h.finalize().into()
    }

    /// The CSRF token bound to this session.
    pub fn csrf_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pahlawan-hub-csrf-v1\0");
        h.update(self.0);
        URL_SAFE_NO_PAD.encode(&h.finalize()[..18])
    }

    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        let want = self.csrf_token();
        presented.is_some_and(|p| {
            p.len() == want.len()
                && p.bytes()
                    .zip(want.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        })
    }

    fn parse(value: &str) -> Option<SessionSecret> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        Some(SessionSecret(bytes.try_into().ok()?))
    }

    /// The `Set-Cookie` value.
    pub fn set_cookie(&self, max_age_secs: i64, secure: bool) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        let v = format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}",
            URL_SAFE_NO_PAD.encode(self.0)
        );
        HeaderValue::from_str(&v).expect("base64url is a valid header value")
    }
}

/// The `Set-Cookie` that forgets the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("ASCII")
}

/// The session cookie a request carries: `None` without one, `Some(None)`
/// for one that does not parse.
pub fn from_headers(headers: &HeaderMap) -> Option<Option<SessionSecret>> {
    http_listener::page::cookie(headers, SESSION_COOKIE).map(SessionSecret::parse)
}

/// Sign-in attempts per address in fixed windows, bounded in memory.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    windows: parking_lot::Mutex<HashMap<IpAddr, (Timestamp, u32)>>,
}

impl SignInLimiter {
    /// Whether `addr` may try once more at `now` (and counts the try).
    pub fn try_once(&self, addr: IpAddr, now: Timestamp) -> bool {
        let mut w = self.windows.lock();
        if w.len() >= MAX_TRACKED_ADDRESSES && !w.contains_key(&addr) {
            w.retain(|_, (start, _)| now < *start + SIGN_IN_WINDOW);
            if w.len() >= MAX_TRACKED_ADDRESSES {
                return false;
            }
        }
        let slot = w.entry(addr).or_insert((now, 0));
        if now >= slot.0 + SIGN_IN_WINDOW {
            *slot = (now, 0);
        }
        slot.1 += 1;
        slot.1 <= SIGN_IN_ATTEMPTS
    }
}

/// What the page learns of its session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub role: String,
    pub sub: String,
    pub expires_at: String,
    /// To send in `X-CSRF-Token` with every mutating request.
    pub csrf_token: String,
}

/// A sign-in: exactly one of a login code or a hub token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// A one-time code from `pahlawan hub login-code`.
    #[serde(default)]
    pub code: Option<String>,
    /// A hub bearer token (without `Bearer `).
    #[serde(default)]
    pub token: Option<String>,
}

fn conn(req_ext: &axum::http::Extensions) -> Option<ConnInfo> {
    req_ext.get::<ConnInfo>().cloned()
}

fn insecure() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "insecure_transport",
        "sign in over HTTPS (plain HTTP carries a session only from this machine)",
    )
}

/// Whether a browser's `Origin` (when it sends one) names the host asked.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest));
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

/// Trade a login code or a hub token for a session cookie.
#[utoipa::path(post, path = "/dashboard/session", request_body = SignIn,
    responses((status = 201, body = SessionInfo), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody), (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody), (status = 429, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody)))]
pub async fn sign_in(State(s): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(conn) = conn(&parts.extensions).filter(ConnInfo::may_carry_credentials) else {
        return insecure();
    };
    if !same_origin(&parts.headers) {
        return error(
            StatusCode::FORBIDDEN,
            "foreign_origin",
            "sign in from the dashboard's own page",
        );
    }
    let now = s.clock.now();
    if !s
        .sign_in_limiter
        .try_once(conn.peer.ip().to_canonical(), now)
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many sign-in attempts from this address; wait a minute",
        );
    }
    let req = Request::from_parts(parts, body);
    let body: Result<Json<SignIn>, JsonRejection> =
        <Json<SignIn> as axum::extract::FromRequest<()>>::from_request(req, &()).await;
    let body = match json_body(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let session_end = now + Duration::from_secs(i64::from(s.dashboard.session_hours) * 3_600);
    let who: Result<(HubRole, String, Timestamp), Response> = match (&body.code, &body.token) {
        (Some(code), None) => match auth::login_code_digest(code) {
            None => Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "malformed_code",
                "a login code is 12 letters and digits, like 7KQ2-MXW9-PA3D",
            )),
            Some(digest) => {
                match with_db(&s, async |c| signin::take_code(c, &digest, odt(now)).await).await {
                    Ok(Some((role, sub))) => match role.parse() {
                        Ok(role) => Ok((role, sub, session_end)),
                        Err(_) => Err(error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_code",
                            "the code is unknown, used or expired",
                        )),
                    },
                    Ok(None) => Err(error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_code",
                        "the code is unknown, used or expired",
                    )),
                    Err(resp) => Err(resp),
                }
            }
        },
        (None, Some(token)) => {
            let bearer = format!("Bearer {}", token.trim());
            match s.verifier.verify(Some(&bearer), now) {
                Ok(p) => Ok((p.role, p.sub, p.expires_at.min(session_end))),
                Err(e) => Err(super::auth::unauthorized(e)),
            }
        }
        _ => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "code_or_token",
            "send exactly one of code or token",
        )),
    };
    let (role, sub, expires) = match who {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let secret = SessionSecret::new(auth::random_bytes());
    let new = signin::NewSession {
        sha256: secret.digest(),
        role: role.as_str(),
        sub: &sub,
        expires_at: odt(expires),
    };
    match with_db(&s, async |c| {
        signin::insert_session(c, &new, odt(now)).await
    })
    .await
    {
        Ok(true) => {
            tracing::info!(%sub, role = role.as_str(), "dashboard session opened");
            let max_age = (expires.unix_ms() - now.unix_ms()) / 1_000;
            let mut resp = (
                StatusCode::CREATED,
                Json(SessionInfo {
                    role: role.as_str().into(),
                    sub,
                    expires_at: super::rfc3339(expires),
                    csrf_token: secret.csrf_token(),
                }),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::SET_COOKIE, secret.set_cookie(max_age, conn.tls));
            resp
        }
        Ok(false) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sessions",
            "10,000 dashboard sessions are open; try again later",
        ),
        Err(resp) => resp,
    }
}

/// The session behind a request's cookie: `Ok(None)` without a cookie,
/// an error response for a cookie that is bad, expired, or arrived where
/// credentials may not travel.
pub async fn principal(
    s: &HttpState,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
) -> Result<Option<(HubPrincipal, SessionSecret)>, Response> {
    let Some(found) = from_headers(headers) else {
        return Ok(None);
    };
    if !conn(ext).is_some_and(|c| c.may_carry_credentials()) {
        return Err(insecure());
    }
    let no_session = || {
        error(
            StatusCode::UNAUTHORIZED,
            "no_session",
            "the session is unknown or expired; sign in again",
        )
    };
    let Some(secret) = found else {
        return Err(no_session());
    };
    let now = s.clock.now();
    let digest = secret.digest();
    match with_db(s, async |c| signin::session(c, &digest, odt(now)).await).await? {
        Some(row) => {
            let role = row.role.parse().map_err(|_| no_session())?;
            let expires_at =
                Timestamp::from_unix_ms((row.expires_at.unix_timestamp_nanos() / 1_000_000) as i64);
            Ok(Some((
                HubPrincipal {
                    sub: row.sub,
                    role,
                    expires_at,
                },
                secret,
            )))
        }
        None => Err(no_session()),
    }
}

/// Who is signed in, and the CSRF token for the page.
#[utoipa::path(get, path = "/dashboard/session",
    responses((status = 200, body = SessionInfo), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody)))]
pub async fn current(State(s): State<Arc<HttpState>>, req: Request) -> Response {
    match principal(&s, req.headers(), req.extensions()).await {
        Ok(Some((p, secret))) => Json(SessionInfo {
            role: p.role.as_str().into(),
            sub: p.sub,
            expires_at: super::rfc3339(p.expires_at),
            csrf_token: secret.csrf_token(),
        })
        .into_response(),
        Ok(None) => error(StatusCode::UNAUTHORIZED, "no_session", "not signed in"),
        Err(resp) => resp,
    }
}

/// Sign out: the session ends at the hub and the cookie is cleared.
#[utoipa::path(delete, path = "/dashboard/session",
    responses((status = 204, description = "signed out"), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody)))]
pub async fn sign_out(State(s): State<Arc<HttpState>>, req: Request) -> Response {
    let (p, secret) = match principal(&s, req.headers(), req.extensions()).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::UNAUTHORIZED, "no_session", "not signed in"),
        Err(resp) => return resp,
    };
    let presented = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !secret.csrf_matches(presented) {
        return csrf_refused();
    }
    let digest = secret.digest();
    if let Err(resp) = with_db(&s, async |c| signin::end_session(c, &digest).await).await {
        return resp;
    }
    tracing::info!(sub = %p.sub, "dashboard session closed");
    let tls = conn(req.extensions()).is_some_and(|c| c.tls);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(tls));
    resp
}

pub fn csrf_refused() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "csrf_token_mismatch",
        "a change made with the session cookie needs its X-CSRF-Token",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_round_trips_and_is_http_only_strict_and_secure_over_tls() {
        let s = SessionSecret::new([7; 32]);
        let plain = s.set_cookie(60, false);
        let plain = plain.to_str().expect("ascii");
        assert!(plain.ends_with("; HttpOnly; SameSite=Strict"), "{plain}");
        assert!(
            s.set_cookie(60, true)
                .to_str()
                .expect("ascii")
                .ends_with("; Secure")
        );
        let pair = plain.split(';').next().expect("pair");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("lang=id; {pair}")).expect("header"),
        );
        assert_eq!(from_headers(&h), Some(Some(s)));
        for bad in ["pahlawan_hub=", "pahlawan_hub=AAAA", "pahlawan_hub=!!"] {
            h.insert(header::COOKIE, HeaderValue::from_static(bad));
            assert_eq!(from_headers(&h), Some(None), "{bad}");
        }
        assert_eq!(from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_secret_and_the_digest_is_not_the_secret() {
        let (a, b) = (SessionSecret::new([1; 32]), SessionSecret::new([2; 32]));
        assert!(a.csrf_matches(Some(&a.csrf_token())));
        assert!(!a.csrf_matches(Some(&b.csrf_token())));
        assert!(!a.csrf_matches(None));
        assert!(!a.csrf_matches(Some("")));
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), [1; 32]);
    }

    #[test]
    fn sign_in_attempts_are_limited_per_address_per_window() {
        let l = SignInLimiter::default();
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        let t0 = Timestamp::from_unix_ms(1_000_000);
        for _ in 0..SIGN_IN_ATTEMPTS {
            assert!(l.try_once(a, t0));
        }
        assert!(!l.try_once(a, t0), "the eleventh in the window");
        assert!(l.try_once(b, t0), "another address is not held back");
        assert!(l.try_once(a, t0 + SIGN_IN_WINDOW), "a new window");
    }

    #[test]
    fn a_foreign_origin_is_told_apart_from_the_hubs_own() {
        let h = |origin: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("hub.example:8443"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            h
        };
        assert!(
            same_origin(&h(None)),
            "no Origin: not a cross-site browser request"
        );
        assert!(same_origin(&h(Some("https://hub.example:8443"))));
        assert!(!same_origin(&h(Some("https://evil.example"))));
        assert!(!same_origin(&h(Some("null"))));
    }
}
