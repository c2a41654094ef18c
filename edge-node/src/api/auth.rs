//! Authentication and authorization at the HTTP edge. A middleware on every
//! protected route verifies the bearer token (401), takes a token from the
//! caller's rate-limit bucket (429) and hands the handler a [`Caller`];
//! handlers then state what they allow (403). Public routes: health,
//! readiness and the OpenAPI document.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sync_protocol::{ProviderId, RecipientId};

use super::error::ApiError;
use super::kiosk::device::DeviceSecret;
use super::kiosk::{DeviceAuth, DeviceRefusal, device_auth};
use super::state::AppState;
use crate::auth::{AuthError, Principal, Role};
use crate::commands::Actor;
use crate::ports::EdgeError;
use crate::ratelimit::Decision;

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The authenticated caller of a protected route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub meta: RequestMeta,
    /// The kiosk device whose cookie authenticated the call, if one did.
    pub device: Option<DeviceSecret>,
}

/// User agents are kept to this many characters in the audit log.
pub const MAX_USER_AGENT: usize = 256;

fn rate_headers(d: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(d.limit),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(d.remaining),
        ),
        (
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(d.reset_secs),
        ),
    ]
}

fn unauthorized(e: AuthError) -> ApiError {
    let challenge = match e {
        AuthError::Missing => "Bearer realm=\"pahlawan\"".to_string(),
        other => format!(
            "Bearer realm=\"pahlawan\", error=\"invalid_token\", error_description=\"{other}\""
        ),
    };
    ApiError {
        headers: HeaderValue::from_str(&challenge)
            .map(|v| vec![(header::WWW_AUTHENTICATE, v)])
            .unwrap_or_default(),
        ..ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }
}

/// The middleware on protected routes: a bearer token, or (without an
/// `Authorization` header) a kiosk's device cookie, whose mutating calls
/// must carry its CSRF token.
pub async fn authenticate(State(edge): State<AppState>, mut req: Request, next: Next) -> Response {
    let device = match req.headers().contains_key(header::AUTHORIZATION) {
        true => None,
        false => {
            let conn = req.extensions().get::<http_listener::ConnInfo>();
            device_auth(&edge, req.headers(), conn).await
        }
    };
    let renew = match &device {
        Some(Ok(d)) if d.renew => Some(d.secure),
        _ => None,
    };
    let (caller, decision) = match admit(&edge, &req, device) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    if let Some(refusal) = csrf_refusal(&caller, &req) {
        let what = format!("{} {}", req.method(), req.uri().path());
        let record = caller.actor().record("forbidden", what, 403);
        return audited(refusal.into_response(), edge.writes.audit(record).await);
    }
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    let method = req.method().clone();
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    if let Some(action) = refusal_action(&method, &resp) {
        let what = format!("{method} {path}");
        let record = caller.actor().record(action, what, resp.status().as_u16());
        resp = audited(resp, edge.writes.audit(record).await);
    }
    for (name, value) in rate_headers(&decision) {
        resp.headers_mut().insert(name, value);
    }
    if let Some(secure) = renew {
        super::kiosk::renew(&edge, &caller, secure, &mut resp).await;
    }
    resp
}

/// A cookie-authenticated mutating call without its device's CSRF token
/// (`X-CSRF-Token`) is refused: a page of another site cannot send it.
fn csrf_refusal(caller: &Caller, req: &Request) -> Option<ApiError> {
    let device = caller.device.as_ref()?;
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let presented = req
        .headers()
        .get(super::kiosk::device::CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    (!device.csrf_matches(presented)).then(|| {
        ApiError::forbidden(
            "csrf_token_invalid",
            "a kiosk's call must carry its X-CSRF-Token",
        )
    })
}

/// The verified caller and its rate-limit decision, or the refusal to send:
/// 429 for an address that keeps presenting refused tokens (before its next
/// token costs a signature check), 401 for a missing or bad token, 429 for
/// an empty bucket.
fn admit(
    edge: &AppState,
    req: &Request,
    device: Option<Result<DeviceAuth, DeviceRefusal>>,
) -> Result<(Caller, Decision), Box<Response>> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(secs) = peer.and_then(|ip| edge.security.failed_auth.blocked(ip)) {
        return Err(Box::new(
            ApiError {
                retry_after_secs: Some(u32::try_from(secs).unwrap_or(u32::MAX)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_failed_tokens",
                    "too many refused tokens from this address; wait before trying again",
                )
            }
            .into_response(),
        ));
    }
    let (principal, device) = match device {
        Some(Ok(d)) => (d.principal, Some(d.secret)),
        Some(Err(refusal)) => {
            // A cookie over plain HTTP is no guess at a credential: the
            // address is not counted towards a block for it.
            if refusal != DeviceRefusal::InsecureTransport
                && let Some(ip) = peer
            {
                let _ = edge.security.failed_auth.failed(ip);
            }
            return Err(Box::new(refusal.into_error().into_response()));
        }
        None => match edge.security.verifier.verify(authorization, edge.now()) {
            Ok(p) => (p, None),
            Err(e) => {
                if e != AuthError::Missing
                    && let Some(ip) = peer
                {
                    let _ = edge.security.failed_auth.failed(ip);
                }
                return Err(Box::new(unauthorized(e).into_response()));
            }
        },
    };
    let decision = edge.security.limits.check(&principal);
    if let Some(secs) = decision.retry_after_secs {
        return Err(Box::new(
            ApiError {
                retry_after_secs: Some(u32::try_from(secs).unwrap_or(u32::MAX)),
                headers: rate_headers(&decision),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests for this subject; slow down",
                )
            }
            .into_response(),
        ));
    }
    let meta = RequestMeta {
        ip: peer.map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(MAX_USER_AGENT).collect()),
    };
    Ok((
        Caller {
            principal,
            meta,
            device,
        },
        decision,
    ))
}

/// The audit action for a refusal of an authenticated caller the store did
/// not audit itself: every 403, and a mutating call refused before it
/// reached the store (bad input, a point outside the cells, an unknown
/// subject). Overload refusals (503) are counted in metrics instead:
/// auditing them would add writes exactly when the edge is saturated. Their
/// rate is bounded by the caller's bucket.
fn refusal_action(method: &Method, resp: &Response) -> Option<&'static str> {
    let status = resp.status();
    let mutating = !matches!(*method, Method::GET | Method::HEAD);
    if status == StatusCode::FORBIDDEN {
        Some("forbidden")
    } else if mutating
        && status.is_client_error()
        && resp
            .extensions()
            .get::<super::error::AuditedByStore>()
            .is_none()
    {
        Some("refused")
    } else {
        None
    }
}

/// A refusal leaves only once its audit record is written. The audit waits
/// a bounded time for room in the writer's background queue
/// (`store.audit_wait_ms`); when it could not be written the caller gets
/// 503 + `Retry-After` instead of an unaudited refusal.
fn audited(refusal: Response, audit: Result<(), EdgeError>) -> Response {
    match audit {
        Ok(()) => refusal,
        Err(e) => {
            tracing::warn!(error = %e, status = refusal.status().as_u16(), "the audit record of a refusal could not be written: answering 503");
            ApiError::from(e).into_response()
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Only reachable without the middleware by a routing mistake: refuse.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthorized(AuthError::Missing))
    }
}

impl Caller {
    /// The caller as the audit log names it. A kiosk acts as its
    /// recipient with the role `kiosk`, its device id first in the user
    /// agent (`kiosk-device=<id>; …`).
    pub fn actor(&self) -> Actor {
        let (role, user_agent) = match &self.device {
            None => (
                self.principal.role.as_str().to_string(),
                self.meta.user_agent.clone(),
            ),
            Some(d) => {
                let ua = self.meta.user_agent.as_deref().unwrap_or("");
                let tagged = format!("kiosk-device={}; {ua}", d.id);
                (
                    "kiosk".to_string(),
                    Some(tagged.chars().take(MAX_USER_AGENT).collect()),
                )
            }
        };
        Actor {
            sub: self.principal.sub.clone(),
            role,
            ip: self.meta.ip.clone(),
            user_agent,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.principal.is_admin()
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "forbidden_role",
                "only an admin may do this",
            ))
        }
    }

    /// Admins, or the provider itself.
    pub fn require_provider(&self, id: ProviderId) -> Result<(), ApiError> {
        match self.principal.role {
            Role::Admin => Ok(()),
            Role::Provider if self.principal.provider() == Some(id) => Ok(()),
            Role::Provider => Err(ApiError::forbidden(
                "wrong_subject",
                "a provider acts only for itself",
            )),
            Role::Ngo => Err(ApiError::forbidden(
                "forbidden_role",
                "only the provider (or an admin) may do this",
            )),
        }
    }

    /// Admins, or the recipient itself.
    pub fn require_recipient(&self, id: RecipientId) -> Result<(), ApiError> {
        match self.principal.role {
            Role::Admin => Ok(()),
            Role::Ngo if self.principal.recipient() == Some(id) => Ok(()),
            Role::Ngo => Err(ApiError::forbidden(
                "wrong_subject",
                "a recipient acts only for itself",
            )),
            Role::Provider => Err(ApiError::forbidden(
                "forbidden_role",
                "only the recipient (or an admin) may do this",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::Unavailable;

    fn refusal(status: StatusCode) -> Response {
        ApiError::new(status, "x", "refused").into_response()
    }

    #[test]
    fn which_refusals_the_middleware_audits() {
        let audited_by_store = {
            let mut r = refusal(StatusCode::CONFLICT);
            r.extensions_mut()
                .insert(super::super::error::AuditedByStore);
            r
        };
        for (method, resp, want) in [
            (
                Method::GET,
                refusal(StatusCode::FORBIDDEN),
                Some("forbidden"),
            ),
            (
                Method::POST,
                refusal(StatusCode::FORBIDDEN),
                Some("forbidden"),
            ),
            (
                Method::POST,
                refusal(StatusCode::UNPROCESSABLE_ENTITY),
                Some("refused"),
            ),
            (
                Method::DELETE,
                refusal(StatusCode::NOT_FOUND),
                Some("refused"),
            ),
            (Method::GET, refusal(StatusCode::NOT_FOUND), None),
            (Method::POST, audited_by_store, None),
            (Method::POST, refusal(StatusCode::SERVICE_UNAVAILABLE), None),
            (Method::POST, StatusCode::CREATED.into_response(), None),
        ] {
            assert_eq!(
                refusal_action(&method, &resp),
                want,
                "{method} {}",
                resp.status()
            );
        }
    }

    #[test]
    fn a_refusal_whose_audit_could_not_be_written_becomes_a_503() {
        let kept = audited(refusal(StatusCode::FORBIDDEN), Ok(()));
        assert_eq!(kept.status(), StatusCode::FORBIDDEN);
        for e in [
            EdgeError::Busy,
            EdgeError::Unavailable(Unavailable::new("the writer has stopped")),
        ] {
            let resp = audited(refusal(StatusCode::FORBIDDEN), Err(e.clone()));
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{e}");
            assert_eq!(resp.headers()["retry-after"], "1", "{e}");
        }
    }
}
