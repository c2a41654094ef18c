//! The middleware on the hub's protected routes: a bearer token (RS256,
//! the hub's issuer and audience) or 401; a `viewer` may only read
//! (`GET`/`HEAD`), anything else is 403. The handler finds the
//! [`HubPrincipal`] in the request's extensions. Without an
//! `Authorization` header the dashboard's session cookie
//! ([`super::session`]) stands in for the token. Open routes — `/healthz`,
//! `/readyz`, `/metrics` — never pass through here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{HttpState, error};
use crate::auth::{AuthError, HubPrincipal, HubRole};

/// 401 with the RFC 6750 challenge and the error's stable code.
pub fn unauthorized(e: AuthError) -> Response {
    let challenge = match e {
        AuthError::Missing => "Bearer realm=\"pahlawan-hub\"".to_string(),
        other => format!(
            "Bearer realm=\"pahlawan-hub\", error=\"invalid_token\", error_description=\"{other}\""
        ),
    };
    let mut resp = error(StatusCode::UNAUTHORIZED, e.code(), &e.to_string());
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// What a role may do with a method: viewers read, admins do everything.
pub fn allowed(role: HubRole, method: &Method) -> bool {
    match role {
        HubRole::Admin => true,
        HubRole::Viewer => matches!(*method, Method::GET | Method::HEAD),
    }
}

/// The middleware on protected routes: a bearer token, or else the
/// dashboard's session cookie (whose changes must carry its CSRF token).
pub async fn require(State(s): State<Arc<HttpState>>, mut req: Request, next: Next) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal: HubPrincipal =
        if authorization.is_none() && super::session::from_headers(req.headers()).is_some() {
            match super::session::principal(&s, req.headers(), req.extensions()).await {
                Ok(Some((p, secret))) => {
                    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
                    let presented = req
                        .headers()
                        .get(super::session::CSRF_HEADER)
                        .and_then(|v| v.to_str().ok());
                    if !reads && !secret.csrf_matches(presented) {
                        return super::session::csrf_refused();
                    }
                    p
                }
                Ok(None) => return unauthorized(AuthError::Missing),
                Err(resp) => return resp,
            }
        } else {
            match s.verifier.verify(authorization, s.clock.now()) {
                Ok(p) => p,
                Err(e) => return unauthorized(e),
            }
        };
    if !allowed(principal.role, req.method()) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            "a viewer may only read; this needs an admin",
        );
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_read_and_admins_do_everything() {
        for (role, method, want) in [
            (HubRole::Viewer, Method::GET, true),
            (HubRole::Viewer, Method::HEAD, true),
            (HubRole::Viewer, Method::POST, false),
            (HubRole::Viewer, Method::PUT, false),
            (HubRole::Viewer, Method::PATCH, false),
            (HubRole::Viewer, Method::DELETE, false),
            (HubRole::Viewer, Method::OPTIONS, false),
            (HubRole::Admin, Method::POST, true),
            (HubRole::Admin, Method::DELETE, true),
        ] {
            assert_eq!(allowed(role, &method), want, "{role:?} {method}");
        }
    }

    #[test]
    fn a_401_names_its_reason_in_the_challenge_and_the_body() {
        let resp = unauthorized(AuthError::WrongAudience);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let challenge = resp.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii");
        assert!(challenge.contains("invalid_token"), "{challenge}");
        let bare = unauthorized(AuthError::Missing);
        assert_eq!(
            bare.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"pahlawan-hub\""
        );
    }
}
