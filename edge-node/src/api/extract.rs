//! Extractors whose rejections speak the API's error format: JSON bodies
//! (400 malformed, 415 wrong content type, 413 too large, 408 too slow,
//! 422 wrong shape),
//! ids in paths (404), query strings (422), and request headers.

use std::str::FromStr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sync_protocol::TraceContext;

use super::error::ApiError;

/// `axum::Json` with our rejections.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            ApiError::invalid("invalid_field", data_error_message(&e.body_text()))
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body exceeds the size limit",
            )
        }
        JsonRejection::BytesRejection(e) if http_listener::conn::is_body_timeout(&e) => {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time",
            )
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
    }
}

/// serde's message names the field and the expected type; drop the prefix
/// axum adds, and drop quoted values so nothing a client sent (a phone
/// number, say) is echoed into errors or logs.
fn data_error_message(body: &str) -> String {
    let msg = body
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(body);
    // serde quotes strings with `"` and numbers, booleans and the like
    // with backticks: both are dropped.
    let mut out = String::with_capacity(msg.len());
    let mut open: Option<char> = None;
    for c in msg.chars() {
        match (open, c) {
            (None, '"' | '`') => {
                open = Some(c);
                out.push(c);
                out.push('…');
            }
            (Some(q), _) if c == q => {
                open = None;
                out.push(c);
            }
            (Some(_), _) => {}
            (None, _) => out.push(c),
        }
    }
    out
}

/// A typed id from the path, spelt as the document's `format: uuid` says
/// (hyphenated); anything else is simply not found.
pub struct IdPath<T>(pub T);

impl<S: Send + Sync, T: FromStr> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("resource"))?;
        super::dto::parse_hyphenated(&raw)
            .and_then(|_| raw.parse().ok())
            .map(IdPath)
            .ok_or_else(|| ApiError::not_found("resource (the id is not a UUID)"))
    }
}

/// `axum::extract::Query` with a 422 rejection.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::invalid("invalid_query", data_error_message(&e.body_text())))
    }
}

/// The most an `Idempotency-Key` may hold.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// The optional `Idempotency-Key` header: 1–255 visible ASCII characters.
pub struct IdempotencyKeyHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKeyHeader(None));
        };
        let ok = v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= MAX_IDEMPOTENCY_KEY_CHARS)
            .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()));
        match ok {
            Some(s) => Ok(IdempotencyKeyHeader(Some(s.to_string()))),
            None => Err(ApiError::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )),
        }
    }
}

/// The W3C `traceparent` header, if present and well-formed.
pub struct Traceparent(pub Option<TraceContext>);

impl<S: Send + Sync> FromRequestParts<S> for Traceparent {
    type Rejection = std::convert::Infallible;

    /// The request span's context when OpenTelemetry records spans (so what
    /// the request causes is its child, on the edge and at the hub), else
    /// the caller's `traceparent` as sent.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Traceparent(
            sync_protocol::trace::otel::of(&tracing::Span::current()).or_else(|| {
                parts
                    .headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .and_then(TraceContext::from_traceparent)
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_do_not_echo_values() {
        let m = data_error_message(
            "Failed to deserialize the JSON body into the target type: contact_phone: invalid type: string \"+62 812\", expected u32 at line 1 column 9",
        );
        assert!(!m.contains("812"), "{m}");
        assert!(m.starts_with("contact_phone: invalid type"), "{m}");
        let n = data_error_message(
            "Failed to deserialize the JSON body into the target type: contact_phone: invalid type: integer `6281234567890`, expected a string at line 1 column 30",
        );
        assert!(!n.contains("628123"), "numbers are not echoed either: {n}");
        assert!(
            n.starts_with("contact_phone: invalid type: integer `…`"),
            "{n}"
        );
    }
}
