//! The API's one error type and its JSON body,
//! `{"error":{"code":"…","message":"…"}}`: every refusal a client can cause
//! maps to a 4xx here, every server-side failure to a 503.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::SurplusJson;
use crate::commands::{Rejected, Rejection};
use crate::ports::EdgeError;
use edge_core::lifecycle::Refusal;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `stale_version`.
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
    /// For 409 and 410 on a surplus: the surplus as it now stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Box<SurplusJson>>,
    /// For 421: the S2 cell token the point lies in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
}

/// The refusals every protected operation may answer with.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its schema is used
pub enum AuthErrors {
    /// No bearer token, or one that does not verify (`WWW-Authenticate` says why).
    #[response(status = 401, headers(("WWW-Authenticate" = String,
        description = "`Bearer realm=\"pahlawan\"`, with `error` and `error_description` for a refused token")))]
    Unauthorized(ErrorBody),
    /// The caller's role or subject may not do this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Too many requests: for this subject (`rate_limited`, with
    /// `RateLimit-*`), refused tokens from this address, open streams or
    /// uncollected claims of this subject.
    #[response(status = 429, headers(("Retry-After" = u32, description = "Seconds to wait")))]
    TooManyRequests(ErrorBody),
}

/// The refusals of a JSON body, on every route that takes one.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its schema is used
pub enum BodyErrors {
    /// The body is not JSON (`malformed_json`).
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// The body did not arrive within
    /// `http.connections.body_read_timeout_secs` (`body_timeout`).
    #[response(status = 408)]
    TooSlow(ErrorBody),
    /// The body exceeds `http.max_body_bytes` (`payload_too_large`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json` (`unsupported_media_type`).
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// 421: a point this edge does not serve.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its schema is used
pub enum MisdirectedError {
    /// The point lies in a cell this edge does not own (`cell` names it).
    #[response(status = 421)]
    Misdirected(ErrorBody),
}

/// The refusals of an action on a surplus (claim, accept, decline, pick
/// up, deliver) besides its own 422s.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its schema is used
pub enum ActionErrors {
    /// No such surplus (or the id is not a UUID).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Lost a claim race, a stale version, no pending offer to this
    /// recipient, not the claimant, or not in a state that allows this;
    /// `current` holds the surplus now.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The surplus has expired; `current` holds it.
    #[response(status = 410)]
    Gone(ErrorBody),
    /// The edge is saturated or its store failing.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// The edge's disk is full: nothing was stored.
    #[response(status = 507)]
    DiskFull(ErrorBody),
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub current: Option<Box<SurplusJson>>,
    pub cell: Option<String>,
    pub retry_after_secs: Option<u32>,
    /// Further response headers (`WWW-Authenticate`, `RateLimit-*`).
    pub headers: Vec<(axum::http::HeaderName, HeaderValue)>,
    /// The store already wrote this refusal's audit record.
    pub audited: bool,
}

/// Response marker: the refusal was audited by the store (the auth
/// middleware audits the others).
#[derive(Debug, Clone, Copy)]
pub struct AuditedByStore;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            audited: false,
            current: None,
            cell: None,
            retry_after_secs: None,
            headers: Vec::new(),
        }
    }

    /// 403: the caller is authenticated but may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 422 for a value that parsed but is not acceptable.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                current: self.current,
                cell: self.cell,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        if self.audited {
            resp.extensions_mut().insert(AuditedByStore);
        }
        resp
    }
}

impl From<EdgeError> for ApiError {
    fn from(e: EdgeError) -> ApiError {
        match e {
            EdgeError::Misdirected { cell } => {
                let token = crate::cells::token(cell);
                ApiError {
                    cell: Some(token.clone()),
                    ..ApiError::new(
                        StatusCode::MISDIRECTED_REQUEST,
                        "misdirected",
                        format!("the point lies in S2 cell {token}, which this edge does not own"),
                    )
                }
            }
            EdgeError::Busy => ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the edge is saturated; retry shortly",
                )
            },
            // The writer logs a full disk once a spell; not once a request.
            EdgeError::Unavailable(u) if u.disk_full => ApiError {
                retry_after_secs: Some(30),
                ..ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "disk_full",
                    "the edge's disk is full: nothing was stored; retry later (operators are alerted)",
                )
            },
            EdgeError::Unavailable(u) => {
                tracing::error!(error = %u, "request failed on the server side");
                ApiError {
                    retry_after_secs: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the edge could not store the request; nothing was changed",
                    )
                }
            }
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        use StatusCode as S;
        let status = StatusCode::from_u16(r.reason.status()).unwrap_or(S::CONFLICT);
        let (code, message) = match r.reason {
            Rejected::NotFound => ("not_found", "no such surplus"),
            Rejected::UnknownProvider => (
                "unknown_provider",
                "provider_id names no registered provider",
            ),
            Rejected::UnknownRecipient => (
                "unknown_recipient",
                "recipient_id names no registered recipient",
            ),
            Rejected::Saturated => (
                "saturated",
                "too many unfinished surplus on this edge; retry later",
            ),
            Rejected::IdempotencyKeyReused => (
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ),
            Rejected::RegistryFull => ("registry_full", "this edge's registry is full"),
            Rejected::ExpiryInPast => ("expiry_in_past", "expires_at must be in the future"),
            Rejected::TooManyOpenClaims => (
                "too_many_open_claims",
                "this recipient already holds the most uncollected claims allowed; pick some up first",
            ),
            Rejected::Lifecycle(l) => match l {
                Refusal::Expired => ("expired", "the surplus has expired"),
                Refusal::StaleVersion => (
                    "stale_version",
                    "the surplus changed since that version was read",
                ),
                Refusal::AlreadyClaimed => (
                    "already_claimed",
                    "another recipient claimed the surplus first",
                ),
                Refusal::NoPendingOffer => (
                    "no_pending_offer",
                    "there is no pending offer of this surplus to this recipient",
                ),
                Refusal::NotClaimant => (
                    "not_claimant",
                    "only the recipient that claimed the surplus can do that",
                ),
                Refusal::InvalidTransition => (
                    "invalid_transition",
                    "the surplus is not in a state that allows this",
                ),
                Refusal::DeliveredExceedsQuantity => (
                    "delivered_exceeds_quantity",
                    "delivered_kg exceeds the quantity posted",
                ),
            },
        };
        ApiError {
            audited: true,
            current: r.current.as_deref().map(|v| Box::new(SurplusJson::from(v))),
            retry_after_secs: match status {
                S::SERVICE_UNAVAILABLE => Some(5),
                S::TOO_MANY_REQUESTS => Some(60),
                _ => None,
            },
            ..ApiError::new(status, code, message)
        }
    }
}
