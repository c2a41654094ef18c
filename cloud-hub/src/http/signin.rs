//! Minting one-time login codes (`POST /api/v1/login-codes`, admins only;
//! `pahlawan hub login-code` calls it): a person trades the code once for
//! a dashboard session.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, HttpState, error, odt, rfc3339, with_db};
use crate::auth::{self, HubPrincipal, HubRole};
use crate::db::signin;

/// A login code lives this long unless asked otherwise.
pub const DEFAULT_CODE_TTL_SECS: i64 = 600;
/// ... and at most this long.
pub const MAX_CODE_TTL_SECS: i64 = 3_600;
/// The longest subject.
pub const MAX_SUB_CHARS: usize = 128;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLoginCode {
    /// `admin` or `viewer`.
    #[schema(pattern = "^(admin|viewer)$")]
    pub role: String,
    /// Who signs in with it: a person's name or address.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub sub: String,
    /// Seconds until it expires (60 to 3,600; default 600).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 60, maximum = 3600)]
    pub ttl_secs: Option<i64>,
}

/// A whole number as JSON Schema reads one: `600` or `600.0` (not `600.5`).
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0)
                .map(|f| f as i64)
        })
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("a whole number of seconds"))
}

/// A minted code: shown once, stored only as its SHA-256.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LoginCodeCreated {
    /// `XXXX-XXXX-XXXX` (Crockford base32; case, dashes, O/0 and I/L/1 forgiven).
    pub code: String,
    pub role: String,
    pub sub: String,
    pub expires_at: String,
}

fn invalid(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// The JSON body, or the error format's 400/415/422.
pub fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(t)| t).map_err(|r| {
        let status = r.status();
        let code = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::BAD_REQUEST => "malformed_json",
            _ => "invalid_body",
        };
        ApiError::new(status, code, r.body_text())
    })
}

fn validate(body: &NewLoginCode) -> Result<(HubRole, i64), ApiError> {
    let role: HubRole = body
        .role
        .parse()
        .map_err(|_| invalid("invalid_role", "role must be admin or viewer"))?;
    let sub = body.sub.trim();
    if sub.is_empty() || sub.chars().count() > MAX_SUB_CHARS || sub.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_sub",
            "sub must be 1 to 128 characters, none of them control characters",
        ));
    }
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_CODE_TTL_SECS);
    if !(60..=MAX_CODE_TTL_SECS).contains(&ttl) {
        return Err(invalid("invalid_ttl", "ttl_secs must be 60 to 3600"));
    }
    Ok((role, ttl))
}

/// Mint a one-time login code (admins only).
#[utoipa::path(post, path = "/api/v1/login-codes", request_body = NewLoginCode,
    security(("bearer" = [])),
    responses((status = 201, body = LoginCodeCreated), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 422, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody)))]
pub async fn create(
    State(s): State<Arc<HttpState>>,
    Extension(admin): Extension<HubPrincipal>,
    body: Result<Json<NewLoginCode>, JsonRejection>,
) -> Response {
    let body = match json_body(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let (role, ttl) = match validate(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let now = s.clock.now();
    let expires = now + sync_protocol::Duration::from_secs(ttl);
    let code = auth::new_login_code();
    let sha256 = auth::login_code_digest(&code).expect("a fresh login code is well-formed");
    let sub = body.sub.trim();
    let new = signin::NewCode {
        sha256,
        role: role.as_str(),
        sub,
        created_by: &admin.sub,
        expires_at: odt(expires),
    };
    match with_db(&s, async |c| signin::insert_code(c, &new, odt(now)).await).await {
        Ok(true) => {
            tracing::info!(by = %admin.sub, role = role.as_str(), %sub, "login code minted");
            (
                StatusCode::CREATED,
                Json(LoginCodeCreated {
                    code,
                    role: role.as_str().into(),
                    sub: sub.into(),
                    expires_at: rfc3339(expires),
                }),
            )
                .into_response()
        }
        Ok(false) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_login_codes",
            "1,000 login codes are waiting to be used; wait for some to expire",
        ),
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_secs_is_read_as_json_schema_reads_an_integer() {
        let read = |body: &str| serde_json::from_str::<NewLoginCode>(body).map(|b| b.ttl_secs);
        let base = r#"{"role": "viewer", "sub": "siti""#;
        assert_eq!(read(&format!("{base}}}")).ok(), Some(None));
        assert_eq!(
            read(&format!("{base}, \"ttl_secs\": null}}")).ok(),
            Some(None)
        );
        assert_eq!(
            read(&format!("{base}, \"ttl_secs\": 338}}")).ok(),
            Some(Some(338))
        );
        assert_eq!(
            read(&format!("{base}, \"ttl_secs\": 338.0}}")).ok(),
            Some(Some(338))
        );
        for bad in ["338.5", "\"338\"", "1e300", "true"] {
            assert!(
                read(&format!("{base}, \"ttl_secs\": {bad}}}")).is_err(),
                "{bad}"
            );
        }
    }
}
