//! Who is calling: RS256 bearer tokens (JWT) checked against a JWKS, with
//! the classes of RFC 8725 refused outright — `alg: none`, HS256 signed with
//! the public key, `jku`/`x5u`/embedded keys (never followed), hostile `kid`s,
//! tampered payloads, wrong issuer or audience, expired or not-yet-valid
//! tokens. Time is checked against the caller's `now`, not the system clock.
//! Verified tokens are cached (by SHA-256) until they expire.
//!
//! Shared by the edge and the hub: each names its own issuer, audience and
//! JWKS, and turns verified [`Claims`] into its own principal
//! ([`FromClaims`]) — so a token made for one is refused by the other.

pub mod cache;
pub mod keys;

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;
use sync_protocol::Timestamp;

use self::cache::TokenCache;

/// A token's claims once its signature, issuer, audience and times have
/// been checked: what a caller's principal is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The token's subject: at most 128 characters, none of them control
    /// characters, never empty.
    pub sub: String,
    /// The `role` claim as written; the service decides what it means.
    pub role: String,
    pub expires_at: Timestamp,
}

/// A service's idea of an authenticated caller, made from verified claims.
/// `from_claims` refuses roles (or subjects) the service does not know
/// with [`AuthError::InvalidClaims`].
pub trait FromClaims: Clone {
    fn from_claims(claims: Claims) -> Result<Self, AuthError>;
    /// When the token ends: the cache forgets it then.
    fn expires_at(&self) -> Timestamp;
}

/// Why a request is not authenticated (HTTP 401). Each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token names a key this service does not know")]
    UnknownKid,
    #[error("the token's key id is not acceptable")]
    InvalidKid,
    #[error("only RS256 tokens are accepted")]
    UnsupportedAlgorithm,
    #[error("tokens may not name or embed keys (jku, x5u, jwk, x5c) or critical extensions")]
    ForbiddenHeader,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's claims are not acceptable")]
    InvalidClaims,
}

impl AuthError {
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed => "malformed_token",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::InvalidKid => "invalid_kid",
            AuthError::UnsupportedAlgorithm => "unsupported_algorithm",
            AuthError::ForbiddenHeader => "forbidden_header",
            AuthError::BadSignature => "invalid_signature",
            AuthError::InvalidClaims => "invalid_claims",
        }
    }
}

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: i64,
    /// Tokens living longer than this (`exp - iat`) are refused.
    pub max_lifetime_secs: i64,
    pub cache_entries: usize,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    role: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
}

/// The public keys tokens may be signed with, by `kid`.
#[derive(Default)]
pub struct Keyring {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Parses a JWKS document; keys that are not RSA / RS256 are skipped.
    pub fn from_jwks(json: &str) -> Result<Keyring, keys::KeyError> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(json).map_err(|e| keys::KeyError::Jwks(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone().filter(|k| valid_kid(k)) else {
                continue;
            };
            let rsa = matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
            );
            let rs256 = jwk
                .common
                .key_algorithm
                .is_none_or(|a| a == jsonwebtoken::jwk::KeyAlgorithm::RS256);
            if !rsa || !rs256 {
                continue;
            }
            if let Ok(k) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, k);
            }
        }
        Ok(Keyring { keys })
    }

    pub fn from_file(path: &Path) -> Result<Keyring, keys::KeyError> {
        let json = std::fs::read_to_string(path)
            .map_err(|e| keys::KeyError::Io(path.display().to_string(), e.to_string()))?;
        Keyring::from_jwks(&json)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A `kid` is a short token of safe characters: nothing that could become a
/// path, a query or a URL when some other component uses it.
pub fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks bearer tokens and names their principals `P`.
pub struct Verifier<P> {
    cfg: VerifierConfig,
    keyring: RwLock<Keyring>,
    cache: TokenCache<P>,
}

impl<P> std::fmt::Debug for Verifier<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.cfg.issuer)
            .finish()
    }
}

fn segments(token: &str) -> Result<[&str; 3], AuthError> {
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(AuthError::Malformed);
    };
    let b64 = |x: &str| {
        x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    // An empty signature is allowed through to the header check, so an
    // `alg: none` token is named for what it is.
    if h.is_empty() || p.is_empty() || !b64(h) || !b64(p) || !b64(s) {
        return Err(AuthError::Malformed);
    }
    Ok([h, p, s])
}

/// Vets the header before any key is looked up or any signature checked.
fn vet_header(encoded: &str) -> Result<String, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| AuthError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    if ["jku", "x5u", "jwk", "x5c", "crit"]
        .iter()
        .any(|k| header.contains_key(*k))
    {
        return Err(AuthError::ForbiddenHeader);
    }
    match header.get("alg").and_then(|a| a.as_str()) {
        Some("RS256") => {}
        Some(_) => return Err(AuthError::UnsupportedAlgorithm),
        None => return Err(AuthError::Malformed),
    }
    let kid = header
        .get("kid")
        .and_then(|k| k.as_str())
        .ok_or(AuthError::InvalidKid)?;
    if !valid_kid(kid) {
        return Err(AuthError::InvalidKid);
    }
    Ok(kid.to_string())
}

impl<P: FromClaims> Verifier<P> {
    pub fn new(cfg: VerifierConfig, keyring: Keyring) -> Verifier<P> {
        let cache = TokenCache::new(cfg.cache_entries);
        Verifier {
            cfg,
            keyring: RwLock::new(keyring),
            cache,
        }
    }

    /// Swaps in a new set of public keys (a rotated JWKS). Cached tokens
    /// signed by a key that is gone are dropped.
    pub fn replace_keys(&self, keyring: Keyring) {
        *self.keyring.write() = keyring;
        self.cache.clear();
    }

    pub fn kids(&self) -> Vec<String> {
        let mut k: Vec<String> = self.keyring.read().keys.keys().cloned().collect();
        k.sort();
        k
    }

    /// Verifies an `Authorization` header value at `now`.
    pub fn verify(&self, authorization: Option<&str>, now: Timestamp) -> Result<P, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?
            .trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        if let Some(p) = self.cache.get(token, now) {
            return Ok(p);
        }
        let [header, _, _] = segments(token)?;
        let kid = vet_header(header)?;
        let claims = {
            let keys = self.keyring.read();
            let key = keys.keys.get(&kid).ok_or(AuthError::UnknownKid)?;
            let mut v = Validation::new(Algorithm::RS256);
            v.algorithms = vec![Algorithm::RS256];
            v.set_issuer(&[&self.cfg.issuer]);
            v.set_audience(&[&self.cfg.audience]);
            v.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
            v.validate_exp = false; // checked below, against `now`
            v.validate_nbf = false;
            jsonwebtoken::decode::<RawClaims>(token, key, &v)
                .map_err(map_jwt_error)?
                .claims
        };
        let principal = self.check_claims(claims, now)?;
        self.cache.insert(token, principal.clone(), now);
        Ok(principal)
    }

    fn check_claims(&self, c: RawClaims, now: Timestamp) -> Result<P, AuthError> {
        let now_s = now.unix_ms().div_euclid(1_000);
        let leeway = self.cfg.leeway_secs;
        if now_s >= c.exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        if c.nbf.is_some_and(|nbf| now_s.saturating_add(leeway) < nbf) {
            return Err(AuthError::NotYetValid);
        }
        // A token "issued" in the future would stretch its lifetime: the
        // lifetime counts from the earliest of iat, nbf and now.
        if c.iat.is_some_and(|iat| iat > now_s.saturating_add(leeway)) {
            return Err(AuthError::NotYetValid);
        }
        let issued = [c.iat, c.nbf, Some(now_s)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now_s);
        if c.exp.saturating_sub(issued) > self.cfg.max_lifetime_secs {
            return Err(AuthError::InvalidClaims);
        }
        if c.sub.is_empty() || c.sub.len() > 128 || c.sub.chars().any(char::is_control) {
            return Err(AuthError::InvalidClaims);
        }
        P::from_claims(Claims {
            sub: c.sub,
            role: c.role,
            expires_at: Timestamp::from_unix_ms(c.exp.saturating_mul(1_000)),
        })
    }

    /// Verified tokens cached now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthError::BadSignature,
        K::InvalidIssuer => AuthError::WrongIssuer,
        K::InvalidAudience => AuthError::WrongAudience,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm,
        K::MissingRequiredClaim(_) | K::InvalidSubject | K::Json(_) => AuthError::InvalidClaims,
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests;
