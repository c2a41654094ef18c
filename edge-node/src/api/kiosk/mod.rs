//! The food bank's kiosk: its page (`/kiosk`, [`page`]), pairing a page with
//! a one-time code for a device credential ([`device`]: the cookie and its
//! CSRF token), the device list and revocation for admins, and what the
//! page reads besides the offer routes (its session, the day's claims).
//! The decisions — codes, attempts, a credential's validity and renewal —
//! are `edge_core::kiosk`'s; the writes go through the writer like any.

pub mod device;
pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sync_protocol::{RecipientId, Timestamp};
use utoipa::ToSchema;
use uuid::Uuid;

use self::device::DeviceSecret;
use super::auth::Caller;
use super::dto::{SurplusJson, hyphenated_uuid, rfc3339};
use super::error::{ApiError, AuthErrors, BodyErrors, ErrorBody};
use super::extract::{ApiJson, IdPath};
use super::state::AppState;
use crate::auth::{Principal, Role};
use crate::commands::Actor;
use crate::store::reader::KioskDeviceRow;
use crate::store::writer::{KioskAnswer, KioskOp};
use edge_core::kiosk::{AttemptLimiter, DeviceCheck, PairRefusal, PairingCode, RetryAfter};
use http_listener::ConnInfo;

/// Grams in one meal, for the page's "meals" figure.
pub const MEAL_G: u32 = 450;
/// Devices `GET /kiosk/devices` lists, at most.
pub const MAX_DEVICES_LISTED: usize = 1_000;
/// Claims `GET /recipients/{id}/claims` lists, at most.
pub const MAX_CLAIMS_LISTED: usize = 200;
/// Characters a typed code may have (separators and spaces included).
pub const MAX_CODE_CHARS: usize = 32;

/// Pairing attempts counted per client address (an axum extension).
pub struct PairAttempts(pub Mutex<AttemptLimiter<std::net::IpAddr>>);

/// The shared pairing-attempt limiter for this edge's configuration.
pub fn attempts(config: &crate::config::EdgeConfig) -> Arc<PairAttempts> {
    Arc::new(PairAttempts(Mutex::new(AttemptLimiter::new(
        config.kiosk.attempt_limits(),
    ))))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random source is available");
    b
}

fn code_hash(code: &PairingCode) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pahlawan-kiosk-code-v1\0");
    h.update(code.as_str().as_bytes());
    h.finalize().into()
}

/// `POST /kiosk/pairings`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPairingRequest {
    #[serde(deserialize_with = "hyphenated_uuid")]
    pub recipient_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PairingCodeJson {
    /// Type it on the kiosk page (case, spaces and dashes do not matter).
    #[schema(pattern = "^[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$")]
    pub code: String,
    pub recipient_id: Uuid,
    /// The code works once, until then (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A one-time pairing code for a recipient's kiosk. Admins only.
#[utoipa::path(post, path = "/kiosk/pairings", tag = "kiosk", security(("bearer" = [])),
    request_body = NewPairingRequest,
    responses(
        (status = 201, description = "A code, valid for `kiosk.code_ttl_secs`", body = PairingCodeJson),
        (status = 422, description = "A field breaks the schema, or `unknown_recipient` (none of this edge's)", body = ErrorBody),
        (status = 503, description = "The edge is saturated or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        BodyErrors, AuthErrors,
    ))]
pub async fn new_pairing(
    State(edge): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewPairingRequest>,
) -> Result<(StatusCode, Json<PairingCodeJson>), ApiError> {
    caller.require_admin()?;
    let recipient = RecipientId::from_uuid(req.recipient_id);
    let code = PairingCode::from_random(random());
    let expires_at = edge.now() + edge.config.kiosk.code_ttl();
    let op = KioskOp::NewCode {
        recipient,
        code_hash: code_hash(&code),
        expires_at,
    };
    match edge.writes.kiosk(op, Some(caller.actor())).await? {
        KioskAnswer::CodeStored => Ok((
            StatusCode::CREATED,
            Json(PairingCodeJson {
                code: code.display(),
                recipient_id: req.recipient_id,
                expires_at: rfc3339(expires_at),
            }),
        )),
        _ => Err(audited(ApiError::invalid(
            "unknown_recipient",
            "no recipient of this edge has that id",
        ))),
    }
}

/// A refusal the store audited (the middleware must not audit it again).
fn audited(e: ApiError) -> ApiError {
    ApiError { audited: true, ..e }
}

/// `POST /kiosk/pair`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The code `pahlawan kiosk pair` printed: 8 code characters (digits
    /// 2–9 and letters but I and O, either case), spaces and dashes anywhere.
    #[schema(
        min_length = 8,
        max_length = 32,
        pattern = "^[ -]*(?:[2-9A-HJ-NP-Za-hj-np-z][ -]*){8}$"
    )]
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PairedJson {
    pub device_id: Uuid,
    pub recipient_id: Uuid,
    /// The credential lapses then unless used (it renews itself in its
    /// second half).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Send it as `X-CSRF-Token` on every mutating call made with the cookie.
    pub csrf_token: String,
}

fn pair_refusal(r: PairRefusal) -> ApiError {
    let (code, message) = match r {
        PairRefusal::Unknown => (
            "pairing_code_unknown",
            "that code is not right: check it, or ask for a new one",
        ),
        PairRefusal::Expired => (
            "pairing_code_expired",
            "that code has expired: ask for a new one",
        ),
        PairRefusal::Used => (
            "pairing_code_used",
            "that code was used already: ask for a new one",
        ),
    };
    audited(ApiError::new(StatusCode::UNAUTHORIZED, code, message))
}

fn too_many_attempts(RetryAfter(wait): RetryAfter) -> ApiError {
    let secs = (wait.as_ms().max(0) as u64).div_ceil(1_000).max(1);
    ApiError {
        retry_after_secs: Some(u32::try_from(secs).unwrap_or(u32::MAX)),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "pairing_rate_limited",
            "too many pairing attempts: wait a minute and try again",
        )
    }
}

/// Trade a one-time code for a device credential: an HttpOnly,
/// SameSite=Strict cookie (`pahlawan_kiosk`) that acts as the code's
/// recipient with the `ngo` role. Set only over TLS or from loopback.
/// Attempts are limited per client address and per edge.
#[utoipa::path(post, path = "/kiosk/pair", tag = "kiosk",
    request_body = PairRequest,
    responses(
        (status = 201, description = "Paired: `Set-Cookie` carries the credential", body = PairedJson,
            headers(("Set-Cookie" = String, description = "`pahlawan_kiosk=…; Path=/; Max-Age=…; HttpOnly; SameSite=Strict`"))),
        (status = 401, description = "`pairing_code_unknown`, `pairing_code_expired` or `pairing_code_used`", body = ErrorBody),
        (status = 403, description = "`insecure_transport`: plain HTTP from another machine", body = ErrorBody),
        (status = 422, description = "A field breaks the schema, or `invalid_code` (not 8 code characters)", body = ErrorBody),
        (status = 429, description = "`pairing_rate_limited`, or `too_many_devices` for the recipient", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 503, description = "The edge is saturated or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        BodyErrors,
    ))]
pub async fn pair(
    State(edge): State<AppState>,
    axum::Extension(attempts): axum::Extension<Arc<PairAttempts>>,
    Peer(peer): Peer,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PairRequest>,
) -> Result<Response, ApiError> {
    let secure = device::cookie_transport(conn.as_deref()).ok_or_else(insecure_transport)?;
    let now = edge.now();
    if let Some(ip) = peer.map(|p| p.ip()) {
        attempts
            .0
            .lock()
            .attempt(&ip, now)
            .map_err(too_many_attempts)?;
    }
    if req.code.chars().count() > MAX_CODE_CHARS {
        return Err(ApiError::invalid("invalid_code", "a code is 8 characters"));
    }
    let code = PairingCode::parse(&req.code).map_err(|_| {
        ApiError::invalid(
            "invalid_code",
            "a code is 8 letters and digits, like K7QM-2XPD",
        )
    })?;
    let secret = DeviceSecret::new(Uuid::now_v7(), random());
    let expires_at = now + edge.config.kiosk.device_lifetime();
    let user_agent = user_agent(&headers);
    let op = KioskOp::Redeem {
        code_hash: code_hash(&code),
        device: secret.id,
        secret_hash: secret.secret_hash(),
        label: user_agent.clone().unwrap_or_default(),
        expires_at,
        max_devices: edge.config.kiosk.max_devices_per_recipient,
    };
    let actor = Actor {
        sub: "anonymous".into(),
        role: "kiosk".into(),
        ip: peer.map(|p| p.ip().to_string()),
        user_agent,
    };
    let recipient = match edge.writes.kiosk(op, Some(actor)).await? {
        KioskAnswer::Paired(r) => r,
        KioskAnswer::Refused(r) => return Err(pair_refusal(r)),
        _ => {
            return Err(audited(ApiError {
                retry_after_secs: Some(60),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_devices",
                    "this recipient holds the most kiosks allowed: revoke one first",
                )
            }));
        }
    };
    let body = PairedJson {
        device_id: secret.id,
        recipient_id: *recipient.as_uuid(),
        expires_at: rfc3339(expires_at),
        csrf_token: secret.csrf_token(),
    };
    let cookie = secret.set_cookie(edge.config.kiosk.device_lifetime().as_ms() / 1_000, secure);
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(body),
    )
        .into_response())
}

/// A device cookie may not be set or taken on this connection (plain HTTP
/// from another machine): 403 `insecure_transport`.
pub fn insecure_transport() -> ApiError {
    ApiError::forbidden(
        "insecure_transport",
        "a kiosk over plain HTTP works from this machine only: open the edge's HTTPS address",
    )
}

/// The client's address, when the server recorded it.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(super::auth::MAX_USER_AGENT).collect())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KioskSessionJson {
    pub recipient_id: Uuid,
    pub name: String,
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// The edge's offset from UTC: the page shows times in it.
    pub utc_offset_minutes: i32,
    /// Grams in one meal, for the "meals" figure.
    pub meal_g: u32,
    /// The device, when the caller is a paired kiosk.
    pub device_id: Option<Uuid>,
    /// The CSRF token to send as `X-CSRF-Token`, when the caller is a kiosk.
    pub csrf_token: Option<String>,
    /// The edge's clock now, so the page's countdowns need not trust the
    /// tablet's (RFC 3339).
    #[schema(format = DateTime)]
    pub now: String,
}

/// Who the kiosk acts for: the recipient (without contact data), the
/// edge's time zone and clock, and the kiosk's CSRF token. A kiosk or a
/// recipient's token.
#[utoipa::path(get, path = "/kiosk/session", tag = "kiosk", security(("bearer" = [])),
    responses(
        (status = 200, body = KioskSessionJson),
        (status = 404, description = "The recipient is not (or no longer) on this edge", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn session(
    State(edge): State<AppState>,
    caller: Caller,
) -> Result<Json<KioskSessionJson>, ApiError> {
    let Some(id) = caller.principal.recipient() else {
        return Err(ApiError::forbidden(
            "forbidden_role",
            "only a recipient's kiosk (or token) has a kiosk session",
        ));
    };
    let (r, _) = edge
        .reads
        .recipient(id)
        .await?
        .ok_or_else(|| ApiError::not_found("recipient"))?;
    Ok(Json(KioskSessionJson {
        recipient_id: *id.as_uuid(),
        name: r.name,
        lat: r.location.lat(),
        lon: r.location.lon(),
        utc_offset_minutes: edge.config.utc_offset_minutes,
        meal_g: MEAL_G,
        device_id: caller.device.as_ref().map(|d| d.id),
        csrf_token: caller.device.as_ref().map(DeviceSecret::csrf_token),
        now: rfc3339(edge.now()),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimListJson {
    /// Newest change first: claimed, picked up, delivered (within 24 h) or
    /// expired unclaimed.
    pub items: Vec<SurplusJson>,
}

/// What this recipient claimed: open claims and what finished within the
/// recent window (24 h), newest change first, at most 200.
#[utoipa::path(get, path = "/recipients/{id}/claims", tag = "offers", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Recipient id")),
    responses(
        (status = 200, body = ClaimListJson),
        (status = 404, description = "No such recipient (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn claims(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<RecipientId>,
) -> Result<Json<ClaimListJson>, ApiError> {
    caller.require_recipient(id)?;
    if edge.reads.recipient(id).await?.is_none() {
        return Err(ApiError::not_found("recipient"));
    }
    let items = edge
        .reads
        .claimed_by(&id, MAX_CLAIMS_LISTED)
        .iter()
        .map(SurplusJson::from)
        .collect();
    Ok(Json(ClaimListJson { items }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KioskDeviceJson {
    pub id: Uuid,
    pub recipient_id: Uuid,
    /// The browser that paired (its user agent).
    pub label: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    #[schema(pattern = "^(active|expired|revoked)$")]
    pub status: String,
}

impl KioskDeviceJson {
    fn new(d: &KioskDeviceRow, now: Timestamp) -> KioskDeviceJson {
        let status = match (d.revoked_at, now >= d.expires_at) {
            (Some(_), _) => "revoked",
            (None, true) => "expired",
            (None, false) => "active",
        };
        KioskDeviceJson {
            id: d.id,
            recipient_id: *d.recipient.as_uuid(),
            label: d.label.clone(),
            created_at: rfc3339(d.created_at),
            expires_at: rfc3339(d.expires_at),
            revoked_at: d.revoked_at.map(rfc3339),
            status: status.into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KioskDeviceListJson {
    /// Newest first, at most 1,000.
    pub items: Vec<KioskDeviceJson>,
}

/// Paired kiosks, newest first. Admins only.
#[utoipa::path(get, path = "/kiosk/devices", tag = "kiosk", security(("bearer" = [])),
    responses(
        (status = 200, body = KioskDeviceListJson),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn devices(
    State(edge): State<AppState>,
    caller: Caller,
) -> Result<Json<KioskDeviceListJson>, ApiError> {
    caller.require_admin()?;
    let now = edge.now();
    let items = edge
        .reads
        .kiosk_devices(MAX_DEVICES_LISTED)
        .await?
        .iter()
        .map(|d| KioskDeviceJson::new(d, now))
        .collect();
    Ok(Json(KioskDeviceListJson { items }))
}

/// Revoke a kiosk: its cookie stops working at once. Admins only.
#[utoipa::path(post, path = "/kiosk/devices/{id}/revoke", tag = "kiosk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Device id")),
    responses(
        (status = 200, description = "Revoked", body = KioskDeviceJson),
        (status = 404, description = "No such device, or revoked already (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The edge is saturated or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn revoke(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<Uuid>,
) -> Result<Json<KioskDeviceJson>, ApiError> {
    caller.require_admin()?;
    let op = KioskOp::Revoke { device: id };
    if edge.writes.kiosk(op, Some(caller.actor())).await? != KioskAnswer::Changed(true) {
        return Err(audited(ApiError::not_found(
            "device (or it is revoked already)",
        )));
    }
    let row = edge
        .reads
        .kiosk_device(id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(Json(KioskDeviceJson::new(&row, edge.now())))
}

/// A request authenticated by a device cookie: who it acts as, and whether
/// the credential is due for renewal.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub principal: Principal,
    pub secret: DeviceSecret,
    pub renew: bool,
    /// The connection is HTTPS: a renewed cookie is marked `Secure`.
    pub secure: device::Secure,
}

/// Why a device cookie was refused (401, like a bad token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRefusal {
    Malformed,
    Unknown,
    Expired,
    Revoked,
    /// Presented over plain HTTP from another machine: the cookie may have
    /// been read on the way, and is not taken.
    InsecureTransport,
}

impl DeviceRefusal {
    pub fn into_error(self) -> ApiError {
        let (code, message) = match self {
            DeviceRefusal::Malformed => (
                "malformed_device_cookie",
                "the kiosk cookie is not one this edge issues",
            ),
            DeviceRefusal::Unknown => ("unknown_device", "this kiosk is not paired: pair it again"),
            DeviceRefusal::Expired => (
                "device_expired",
                "this kiosk's pairing has expired: pair it again",
            ),
            DeviceRefusal::Revoked => ("device_revoked", "this kiosk was unpaired: pair it again"),
            DeviceRefusal::InsecureTransport => (
                "insecure_transport",
                "a kiosk over plain HTTP works from this machine only: open the edge's HTTPS address",
            ),
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }
}

/// Checks the device cookie a request carries (`None`: it carries none).
/// A cookie is taken only where it may travel (`device::cookie_transport`).
pub async fn device_auth(
    edge: &AppState,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Option<Result<DeviceAuth, DeviceRefusal>> {
    let secret = match device::from_headers(headers)? {
        Some(s) => s,
        None => return Some(Err(DeviceRefusal::Malformed)),
    };
    let Some(secure) = device::cookie_transport(conn) else {
        return Some(Err(DeviceRefusal::InsecureTransport));
    };
    let row = match edge.reads.kiosk_device(secret.id).await {
        Ok(row) => row,
        Err(e) => {
            tracing::warn!(error = %e, "reading a kiosk device");
            None
        }
    };
    // A row whose secret does not match is no device of this cookie's.
    let row = row.filter(|r| r.secret_hash == secret.secret_hash());
    let stored = row.as_ref().map(|r| edge_core::kiosk::Device {
        recipient: r.recipient,
        expires_at: r.expires_at,
        revoked: r.revoked_at.is_some(),
    });
    let now = edge.now();
    let lifetime = edge.config.kiosk.device_lifetime();
    Some(
        match edge_core::kiosk::check_device(stored, now, lifetime) {
            DeviceCheck::Valid { recipient, renew } => Ok(DeviceAuth {
                principal: Principal {
                    sub: recipient.to_string(),
                    role: Role::Ngo,
                    subject: Some(*recipient.as_uuid()),
                    expires_at: row.map_or(now, |r| r.expires_at),
                },
                secret,
                renew,
                secure,
            }),
            DeviceCheck::Unknown => Err(DeviceRefusal::Unknown),
            DeviceCheck::Expired => Err(DeviceRefusal::Expired),
            DeviceCheck::Revoked => Err(DeviceRefusal::Revoked),
        },
    )
}

/// Renews a device credential in its second half: the row's expiry moves
/// on, and the response sets the cookie again. A failed renewal leaves the
/// credential as it was (it is tried on the next request).
pub async fn renew(edge: &AppState, caller: &Caller, secure: device::Secure, resp: &mut Response) {
    let Some(secret) = &caller.device else { return };
    let lifetime = edge.config.kiosk.device_lifetime();
    let op = KioskOp::Renew {
        device: secret.id,
        expires_at: edge_core::kiosk::device_expiry(edge.now(), lifetime),
    };
    match edge.writes.kiosk(op, Some(caller.actor())).await {
        Ok(KioskAnswer::Changed(true)) => {
            let cookie = secret.set_cookie(lifetime.as_ms() / 1_000, secure);
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "renewing a kiosk device"),
    }
}
