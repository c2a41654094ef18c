//! Signing in to the dashboard: one-time login codes and sessions, stored
//! by the SHA-256 of their secret (`migrations/hub/V5__…`). Both tables are
//! plain coordinator tables under Citus: every statement here runs on the
//! coordinator alone and touches no shard.

use time::OffsetDateTime;
use tokio_postgres::Client;

use super::DbError;

/// Live login codes, at most: minting more is refused until some expire or
/// are used.
pub const MAX_LOGIN_CODES: i64 = 1_000;

/// Forgets expired codes and stores the new one if fewer than
/// [`MAX_LOGIN_CODES`] live codes remain, in one statement (the bound may be
/// passed by as many codes as are minted at the same instant).
pub const SQL_INSERT_CODE: &str =
    "WITH forgotten AS (DELETE FROM login_codes WHERE expires_at <= $5),
    live AS (SELECT count(*) AS n FROM login_codes WHERE expires_at > $5)
    INSERT INTO login_codes (code_sha256, role, sub, created_by, created_at, expires_at)
    SELECT $1, $2, $3, $4, $5, $6 FROM live WHERE live.n < $7";
/// Taking a code deletes it: a code signs in once.
pub const SQL_TAKE_CODE: &str = "DELETE FROM login_codes
    WHERE code_sha256 = $1 AND expires_at > $2 RETURNING role, sub";

/// A code to store.
#[derive(Debug, Clone)]
pub struct NewCode<'a> {
    pub sha256: [u8; 32],
    pub role: &'a str,
    pub sub: &'a str,
    pub created_by: &'a str,
    pub expires_at: OffsetDateTime,
}

/// Stores a code, or returns `false` when [`MAX_LOGIN_CODES`] are live.
pub async fn insert_code(
    client: &Client,
    code: &NewCode<'_>,
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let stored = client
        .execute(
            SQL_INSERT_CODE,
            &[
                &&code.sha256[..],
                &code.role,
                &code.sub,
                &code.created_by,
                &now,
                &code.expires_at,
                &MAX_LOGIN_CODES,
            ],
        )
        .await?;
    Ok(stored == 1)
}

/// Takes a live code (it cannot be used again): its role and subject.
pub async fn take_code(
    client: &Client,
    sha256: &[u8; 32],
    now: OffsetDateTime,
) -> Result<Option<(String, String)>, DbError> {
    Ok(client
        .query_opt(SQL_TAKE_CODE, &[&&sha256[..], &now])
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Sessions at most: signing in is refused while this many are live.
pub const MAX_SESSIONS: i64 = 10_000;

/// Forgets expired sessions and stores the new one if fewer than
/// [`MAX_SESSIONS`] are live, in one statement.
pub const SQL_INSERT_SESSION: &str =
    "WITH forgotten AS (DELETE FROM dashboard_sessions WHERE expires_at <= $4),
    live AS (SELECT count(*) AS n FROM dashboard_sessions WHERE expires_at > $4)
    INSERT INTO dashboard_sessions (id_sha256, role, sub, created_at, expires_at)
    SELECT $1, $2, $3, $4, $5 FROM live WHERE live.n < $6";
/// A live session's role, subject and expiry.
pub const SQL_SESSION: &str = "SELECT role, sub, expires_at FROM dashboard_sessions
    WHERE id_sha256 = $1 AND expires_at > $2";
/// Signing out.
pub const SQL_END_SESSION: &str = "DELETE FROM dashboard_sessions WHERE id_sha256 = $1";

/// A session to store.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub sha256: [u8; 32],
    pub role: &'a str,
    pub sub: &'a str,
    pub expires_at: OffsetDateTime,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub role: String,
    pub sub: String,
    pub expires_at: OffsetDateTime,
}

/// Stores a session, or returns `false` when [`MAX_SESSIONS`] are live.
pub async fn insert_session(
    client: &Client,
    s: &NewSession<'_>,
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let stored = client
        .execute(
            SQL_INSERT_SESSION,
            &[
                &&s.sha256[..],
                &s.role,
                &s.sub,
                &now,
                &s.expires_at,
                &MAX_SESSIONS,
            ],
        )
        .await?;
    Ok(stored == 1)
}

/// The session behind a cookie's digest, if it is live at `now`.
pub async fn session(
    client: &Client,
    sha256: &[u8; 32],
    now: OffsetDateTime,
) -> Result<Option<Session>, DbError> {
    Ok(client
        .query_opt(SQL_SESSION, &[&&sha256[..], &now])
        .await?
        .map(|r| Session {
            role: r.get(0),
            sub: r.get(1),
            expires_at: r.get(2),
        }))
}

/// Ends a session (signing out); `true` if there was one.
pub async fn end_session(client: &Client, sha256: &[u8; 32]) -> Result<bool, DbError> {
    Ok(client.execute(SQL_END_SESSION, &[&&sha256[..]]).await? == 1)
}
