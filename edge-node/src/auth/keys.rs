//! Key material on disk, under `<data_dir>/keys/`: the token keys
//! (`jwt-signing.pem`, `jwks.json`, kept by [`jwt_auth::keys`]) and
//! `pii-keys.json`, the AES-256 keys that seal contact data (0600).

use std::path::Path;

use sync_protocol::Timestamp;

use super::Role;

pub use crate::keyfiles::{JWKS, KEYS_DIR, PII_KEYS, SIGNING_KEY, keys_dir};
pub use jwt_auth::keys::{Created, KeyError, public_jwk, write_file};

/// Creates whatever key material is missing: a signing key, a JWKS that
/// holds its public half, a PII key. Existing keys are kept.
pub fn init(data_dir: &Path) -> Result<Created, KeyError> {
    let dir = keys_dir(data_dir);
    let mut out = jwt_auth::keys::init(&dir)?;
    let pii = dir.join(PII_KEYS);
    if pii.exists() {
        out.kept.push(pii);
    } else {
        let keys = crate::pii::PiiKeys::generate();
        write_file(&pii, keys.to_json().as_bytes(), true)?;
        out.files.push(pii);
    }
    Ok(out)
}

fn spec<'a>(
    issuer: &'a str,
    audience: &'a str,
    role: Role,
    sub: &'a str,
    ttl_secs: i64,
) -> jwt_auth::keys::TokenSpec<'a> {
    jwt_auth::keys::TokenSpec {
        issuer,
        audience,
        role: role.as_str(),
        sub,
        ttl_secs,
    }
}

/// Signs a token with the data dir's signing key.
pub fn issue(
    data_dir: &Path,
    issuer: &str,
    audience: &str,
    role: Role,
    sub: &str,
    ttl_secs: i64,
    now: Timestamp,
) -> Result<String, KeyError> {
    let spec = spec(issuer, audience, role, sub, ttl_secs);
    jwt_auth::keys::issue(&keys_dir(data_dir), spec, now)
}

/// Signs a token with `key_pem` (PKCS#8 RSA).
pub fn sign(
    key_pem: &str,
    issuer: &str,
    audience: &str,
    role: Role,
    sub: &str,
    ttl_secs: i64,
    now: Timestamp,
) -> Result<String, KeyError> {
    jwt_auth::keys::sign(key_pem, spec(issuer, audience, role, sub, ttl_secs), now)
}
