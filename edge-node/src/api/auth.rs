//! Authentication and authorization at the HTTP edge. A middleware on every
//! protected route verifies the bearer token (401), takes a token from the
//! caller's rate-limit bucket (429) and hands the handler a [`Caller`];
//! handlers then state what they allow (403). Public routes: health,
//! readiness and the OpenAPI document.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sync_protocol::{ProviderId, RecipientId};

use super::error::ApiError;
use crate::auth::{AuthError, Principal, Role};
use crate::commands::Actor;
use crate::ratelimit::Decision;
use crate::service::EdgeHandle;

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
}

/// User agents are kept to this many characters in the audit log.
const MAX_USER_AGENT: usize = 256;

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

/// The middleware on protected routes.
pub async fn authenticate(
    State(edge): State<EdgeHandle>,
    mut req: Request,
    next: Next,
) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // An address that keeps presenting refused tokens is turned away before
    // its next token costs a signature check.
    if let Some(secs) = peer.and_then(|ip| edge.failed_auth().blocked(ip)) {
        return ApiError {
            retry_after_secs: Some(u32::try_from(secs).unwrap_or(u32::MAX)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_tokens",
                "too many refused tokens from this address; wait before trying again",
            )
        }
        .into_response();
    }
    let principal = match edge.verifier().verify(authorization, edge.now()) {
        Ok(p) => p,
        Err(e) => {
            if e != AuthError::Missing
                && let Some(ip) = peer
            {
                let _ = edge.failed_auth().failed(ip);
            }
            return unauthorized(e).into_response();
        }
    };
    let decision = edge.limits().check(&principal);
    if let Some(secs) = decision.retry_after_secs {
        return ApiError {
            retry_after_secs: Some(u32::try_from(secs).unwrap_or(u32::MAX)),
            headers: rate_headers(&decision),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this subject; slow down",
            )
        }
        .into_response();
    }
    let meta = RequestMeta {
        ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(MAX_USER_AGENT).collect()),
    };
    let caller = Caller { principal, meta };
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    let method = req.method().clone();
    let what = format!("{method} {path}");
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    let status = resp.status();
    let mutating = !matches!(method, axum::http::Method::GET | axum::http::Method::HEAD);
    // Refusals of an authenticated caller the store did not audit itself:
    // every 403, and a mutating call refused before it reached the store
    // (bad input, a point outside the cells, an unknown subject). Overload
    // refusals (503) are counted in metrics instead: auditing them would add
    // writes exactly when the edge is saturated. Their rate is bounded by
    // the caller's bucket above.
    let action = if status == StatusCode::FORBIDDEN {
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
    };
    if let Some(action) = action {
        let record = caller.actor().record(action, what, status.as_u16());
        if let Err(e) = edge.audit(record).await {
            tracing::warn!(error = %e, "could not write the audit record of a refusal");
        }
    }
    for (name, value) in rate_headers(&decision) {
        resp.headers_mut().insert(name, value);
    }
    resp
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
    /// The caller as the audit log names it.
    pub fn actor(&self) -> Actor {
        Actor {
            sub: self.principal.sub.clone(),
            role: self.principal.role.as_str().to_string(),
            ip: self.meta.ip.clone(),
            user_agent: self.meta.user_agent.clone(),
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
