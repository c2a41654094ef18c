//! Who is calling the hub's HTTP API: RS256 bearer tokens verified by the
//! shared [`jwt_auth`] crate against the hub's own JWKS, issuer and
//! audience (an edge's token names another audience and another key, so it
//! never opens the hub), made into a [`HubPrincipal`]: an `admin` (every
//! route) or a `viewer` (the dashboard's reads only).

use std::path::Path;

use sync_protocol::Timestamp;

use crate::config::HubAuthConfig;
pub use jwt_auth::{AuthError, Claims, Keyring, VerifierConfig};

/// The hub's verifier.
pub type Verifier = jwt_auth::Verifier<HubPrincipal>;

/// What a hub principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HubRole {
    /// An operator: everything.
    Admin,
    /// A coordinator watching the fleet: reads only.
    Viewer,
}

impl HubRole {
    pub fn as_str(self) -> &'static str {
        match self {
            HubRole::Admin => "admin",
            HubRole::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for HubRole {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<HubRole, AuthError> {
        match s {
            "admin" => Ok(HubRole::Admin),
            "viewer" => Ok(HubRole::Viewer),
            _ => Err(AuthError::InvalidClaims),
        }
    }
}

/// An authenticated caller of the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubPrincipal {
    /// A person's or a tool's name.
    pub sub: String,
    pub role: HubRole,
    pub expires_at: Timestamp,
}

impl jwt_auth::FromClaims for HubPrincipal {
    fn from_claims(c: Claims) -> Result<HubPrincipal, AuthError> {
        Ok(HubPrincipal {
            role: c.role.parse()?,
            sub: c.sub,
            expires_at: c.expires_at,
        })
    }

    fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

/// Loads the keys the hub checks tokens against, creating a signing key and
/// its JWKS in `keys_dir` on first start when allowed and no JWKS exists.
pub fn verifier(
    cfg: &HubAuthConfig,
    keys_dir: &Path,
) -> Result<Verifier, jwt_auth::keys::KeyError> {
    let jwks = cfg
        .jwks_file
        .clone()
        .unwrap_or_else(|| keys_dir.join(jwt_auth::keys::JWKS));
    if cfg.create_keys && cfg.jwks_file.is_none() && !jwks.exists() {
        let created = jwt_auth::keys::init(keys_dir)?;
        for f in created.files {
            tracing::info!(file = %f.display(), "created the hub's token key material");
        }
    }
    let keyring = Keyring::from_file(&jwks)?;
    if keyring.is_empty() {
        tracing::warn!(jwks = %jwks.display(), "the hub's JWKS holds no usable RS256 key: every protected call will be refused");
    }
    Ok(Verifier::new(
        VerifierConfig {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway_secs: cfg.leeway_secs,
            max_lifetime_secs: cfg.max_token_lifetime_secs,
            cache_entries: cfg.token_cache_entries,
        },
        keyring,
    ))
}

/// Signs a hub token with the signing key in `keys_dir`
/// (`pahlawan token issue --for hub`).
pub fn issue(
    cfg: &HubAuthConfig,
    keys_dir: &Path,
    role: HubRole,
    sub: &str,
    ttl_secs: i64,
    now: Timestamp,
) -> Result<String, jwt_auth::keys::KeyError> {
    let spec = jwt_auth::keys::TokenSpec {
        issuer: &cfg.issuer,
        audience: &cfg.audience,
        role: role.as_str(),
        sub,
        ttl_secs,
    };
    jwt_auth::keys::issue(keys_dir, spec, now)
}

/// Crockford's base32 alphabet: no I, L, O or U, so a code read aloud or
/// typed from paper has one spelling.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters in a login code (60 bits), shown in groups of four.
pub const LOGIN_CODE_CHARS: usize = 12;

fn random<const N: usize>() -> [u8; N] {
    use rand::TryRngCore;
    let mut b = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random source is available");
    b
}

/// 32 bytes from the operating system's random source (session secrets).
pub fn random_bytes() -> [u8; 32] {
    random::<32>()
}

/// A fresh one-time login code, e.g. `7KQ2-MXW9-PA3D`.
pub fn new_login_code() -> String {
    let mut out = String::with_capacity(LOGIN_CODE_CHARS + 2);
    for (i, b) in random::<LOGIN_CODE_CHARS>().iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(CROCKFORD[usize::from(b & 31)]));
    }
    out
}

/// The stored digest of a login code as a person typed it: case, dashes
/// and spaces ignored, O read as 0 and I or L as 1. `None` if it cannot be
/// a code.
pub fn login_code_digest(typed: &str) -> Option<[u8; 32]> {
    let mut canonical = String::with_capacity(LOGIN_CODE_CHARS);
    for ch in typed.chars().filter(|c| !matches!(c, '-' | ' ')) {
        let ch = match ch.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !ch.is_ascii() || !CROCKFORD.contains(&(ch as u8)) || canonical.len() >= LOGIN_CODE_CHARS
        {
            return None;
        }
        canonical.push(ch);
    }
    (canonical.len() == LOGIN_CODE_CHARS).then(|| sha256(canonical.as_bytes()))
}

/// A fresh session secret for the dashboard's cookie (256 bits, URL-safe).
pub fn new_session_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>())
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_code_has_one_spelling_however_it_is_typed() {
        let code = new_login_code();
        assert_eq!(code.len(), LOGIN_CODE_CHARS + 2, "{code}");
        let digest = login_code_digest(&code).expect("a fresh code is a code");
        for typed in [
            code.to_lowercase(),
            code.replace('-', ""),
            code.replace('-', " "),
            code.replace('0', "o").replace('1', "l"),
        ] {
            assert_eq!(login_code_digest(&typed), Some(digest), "{typed}");
        }
        for bad in [
            "",
            "ABCD",
            "ABCD-EFGH-JKMNP",
            "ABCD-EFGH-JKMU",
            "ÄBCD-EFGH-JKMN",
        ] {
            assert_eq!(login_code_digest(bad), None, "{bad:?}");
        }
        assert_ne!(new_login_code(), new_login_code());
    }
}
