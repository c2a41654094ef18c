//! Token keys on disk, in one directory (the edge's `<data_dir>/keys/`, the
//! hub's `[auth] keys_dir`):
//!
//! - `jwt-signing.pem` — the RSA key `pahlawan token issue` signs with (0600);
//! - `jwks.json` — the public keys the service accepts, by `kid` (several, so
//!   signing keys rotate without downtime; services re-read it when it
//!   changes).
//!
//! A `kid` is the RFC 7638 thumbprint of the public key, so it never needs a
//! file of its own.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_RSA_SHA256, PublicKeyData, RsaKeySize};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sync_protocol::Timestamp;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

pub const SIGNING_KEY: &str = "jwt-signing.pem";
pub const JWKS: &str = "jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: {1}")]
    Io(String, String),
    #[error("JWKS: {0}")]
    Jwks(String),
    #[error("key: {0}")]
    Key(String),
    #[error("no signing key at {0}; run `pahlawan keys init`")]
    NoSigningKey(String),
}

/// Writes a file atomically (temp + rename); secrets get mode 0600.
pub fn write_atomic(path: &Path, contents: &[u8], secret: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// [`write_atomic`], its error naming the file.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), KeyError> {
    write_atomic(path, contents, secret)
        .map_err(|e| KeyError::Io(path.display().to_string(), e.to_string()))
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path)
        .map_err(|e| KeyError::Io(path.display().to_string(), e.to_string()))
}

/// The RSA public key's (n, e), big-endian, without leading zero bytes.
fn rsa_components(spki_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| KeyError::Key(e.to_string()))?;
    match spki.parsed().map_err(|e| KeyError::Key(e.to_string()))? {
        PublicKey::RSA(rsa) => {
            let strip = |b: &[u8]| {
                b.iter()
                    .skip_while(|x| **x == 0)
                    .copied()
                    .collect::<Vec<u8>>()
            };
            Ok((strip(rsa.modulus), strip(rsa.exponent)))
        }
        _ => Err(KeyError::Key("not an RSA key".into())),
    }
}

/// The public JWK of an RSA key, with its RFC 7638 thumbprint as `kid`.
pub fn public_jwk(key_pem: &str) -> Result<serde_json::Value, KeyError> {
    let kp = KeyPair::from_pem(key_pem).map_err(|e| KeyError::Key(e.to_string()))?;
    let (n, e) = rsa_components(&kp.subject_public_key_info())?;
    let (n, e) = (URL_SAFE_NO_PAD.encode(n), URL_SAFE_NO_PAD.encode(e));
    // RFC 7638: the required members, lexicographic order, no whitespace.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    Ok(serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}))
}

/// What an `init` did.
#[derive(Debug, Default)]
pub struct Created {
    pub files: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// Creates whatever is missing in `dir`: a signing key, and a JWKS that
/// holds its public half. Existing keys are kept.
pub fn init(dir: &Path) -> Result<Created, KeyError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| KeyError::Io(dir.display().to_string(), e.to_string()))?;
    let mut out = Created::default();
    let signing = dir.join(SIGNING_KEY);
    let pem = if signing.exists() {
        out.kept.push(signing.clone());
        read(&signing)?
    } else {
        let kp = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)
            .map_err(|e| KeyError::Key(e.to_string()))?;
        let pem = kp.serialize_pem();
        write_file(&signing, pem.as_bytes(), true)?;
        out.files.push(signing);
        pem
    };
    let jwk = public_jwk(&pem)?;
    let jwks_path = dir.join(JWKS);
    let mut jwks: serde_json::Value = if jwks_path.exists() {
        serde_json::from_str(&read(&jwks_path)?).map_err(|e| KeyError::Jwks(e.to_string()))?
    } else {
        serde_json::json!({"keys": []})
    };
    let keys = jwks["keys"]
        .as_array_mut()
        .ok_or_else(|| KeyError::Jwks("no \"keys\" array".into()))?;
    if keys.iter().any(|k| k["kid"] == jwk["kid"]) {
        out.kept.push(jwks_path);
    } else {
        keys.insert(0, jwk);
        let text =
            serde_json::to_string_pretty(&jwks).map_err(|e| KeyError::Jwks(e.to_string()))?;
        write_file(&jwks_path, text.as_bytes(), false)?;
        out.files.push(jwks_path);
    }
    Ok(out)
}

/// What a token says: who issued it, for whom, who it names and as what.
#[derive(Debug, Clone, Copy)]
pub struct TokenSpec<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub role: &'a str,
    pub sub: &'a str,
    pub ttl_secs: i64,
}

#[derive(Serialize)]
struct IssueClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    role: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// Signs a token with the signing key in `dir`.
pub fn issue(dir: &Path, spec: TokenSpec<'_>, now: Timestamp) -> Result<String, KeyError> {
    let path = dir.join(SIGNING_KEY);
    if !path.exists() {
        return Err(KeyError::NoSigningKey(path.display().to_string()));
    }
    sign(&read(&path)?, spec, now)
}

/// Signs a token with `key_pem` (PKCS#8 RSA), valid from `now`.
pub fn sign(key_pem: &str, spec: TokenSpec<'_>, now: Timestamp) -> Result<String, KeyError> {
    let kid = public_jwk(key_pem)?["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key =
        EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| KeyError::Key(e.to_string()))?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid);
    let iat = now.unix_ms().div_euclid(1_000);
    let claims = IssueClaims {
        iss: spec.issuer,
        aud: spec.audience,
        sub: spec.sub,
        role: spec.role,
        iat,
        nbf: iat,
        exp: iat + spec.ttl_secs,
    };
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| KeyError::Key(e.to_string()))
}
