//! The bad-token table (RFC 8725's classes) against a real RS256 key pair.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::keys::{self, SIGNING_KEY, TokenSpec};
use super::*;

/// The principal of these tests: a name and one of two roles.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Who {
    sub: String,
    role: String,
    expires_at: Timestamp,
}

impl FromClaims for Who {
    fn from_claims(c: Claims) -> Result<Who, AuthError> {
        if !["admin", "viewer"].contains(&c.role.as_str()) {
            return Err(AuthError::InvalidClaims);
        }
        Ok(Who {
            sub: c.sub,
            role: c.role,
            expires_at: c.expires_at,
        })
    }
    fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

const NOW: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);
const ISS: &str = "pahlawan";
const AUD: &str = "pahlawan-edge";

struct Fixture {
    _dir: tempfile::TempDir,
    pem: String,
    other_pem: String,
    verifier: Verifier<Who>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    keys::init(dir.path()).expect("keys");
    let pem = std::fs::read_to_string(dir.path().join(SIGNING_KEY)).expect("pem");
    let other = tempfile::tempdir().expect("tempdir");
    keys::init(other.path()).expect("other keys");
    let other_pem = std::fs::read_to_string(other.path().join(SIGNING_KEY)).expect("pem");
    let keyring = Keyring::from_file(&dir.path().join(keys::JWKS)).expect("jwks");
    let verifier = Verifier::new(
        VerifierConfig {
            issuer: ISS.into(),
            audience: AUD.into(),
            leeway_secs: 30,
            max_lifetime_secs: 24 * 3_600,
            cache_entries: 1_000,
        },
        keyring,
    );
    Fixture {
        _dir: dir,
        pem,
        other_pem,
        verifier,
    }
}

const SUB: &str = "ops";

fn token(pem: &str, role: &str, sub: &str, ttl_secs: i64, at: Timestamp) -> String {
    let spec = TokenSpec {
        issuer: ISS,
        audience: AUD,
        role,
        sub,
        ttl_secs,
    };
    keys::sign(pem, spec, at).expect("signs")
}

fn kid(pem: &str) -> String {
    keys::public_jwk(pem).expect("jwk")["kid"]
        .as_str()
        .expect("kid")
        .to_string()
}

/// Signs arbitrary claims with an arbitrary header, RS256.
fn crafted(pem: &str, header: Header, claims: serde_json::Value) -> String {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("encodes")
}

fn claims(iss: &str, aud: &str, role: &str, sub: &str, exp_in: i64) -> serde_json::Value {
    let now = NOW.unix_ms() / 1_000;
    serde_json::json!({"iss": iss, "aud": aud, "sub": sub, "role": role, "iat": now, "nbf": now, "exp": now + exp_in})
}

fn rs256(kid: &str) -> Header {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    h
}

#[test]
fn the_bad_token_table() {
    let f = fixture();
    let k = kid(&f.pem);
    let good = token(&f.pem, "viewer", SUB, 900, NOW);
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let [_, good_payload, good_sig] = {
        let parts: Vec<&str> = good.split('.').collect();
        [
            parts[0].to_string(),
            parts[1].to_string(),
            parts[2].to_string(),
        ]
    };
    let alg_none = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "kid": k})),
        good_payload
    );
    let hs256_with_public_key = {
        let public_pem = keys::public_jwk(&f.pem).expect("jwk").to_string();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(k.clone());
        jsonwebtoken::encode(
            &h,
            &claims(ISS, AUD, "admin", "mallory", 900),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .expect("encodes")
    };
    let tampered = {
        let forged = b64(claims(ISS, AUD, "admin", "mallory", 900));
        let header = good.split('.').next().expect("header");
        format!("{header}.{forged}.{good_sig}")
    };
    let with = |edit: fn(&mut Header)| {
        let mut h = rs256(&k);
        edit(&mut h);
        crafted(&f.pem, h, claims(ISS, AUD, "viewer", SUB, 900))
    };
    let bearer = |t: &str| format!("Bearer {t}");
    let table: Vec<(&str, Option<String>, AuthError)> = vec![
        ("missing", None, AuthError::Missing),
        (
            "wrong scheme",
            Some(format!("Basic {good}")),
            AuthError::Malformed,
        ),
        ("not a JWT", Some(bearer("hello")), AuthError::Malformed),
        ("two segments", Some(bearer("a.b")), AuthError::Malformed),
        (
            "garbage segments",
            Some(bearer("a.b.c")),
            AuthError::Malformed,
        ),
        (
            "oversized",
            Some(bearer(&"a".repeat(MAX_TOKEN_BYTES + 1))),
            AuthError::Malformed,
        ),
        (
            "expired",
            Some(bearer(&token(
                &f.pem,
                "viewer",
                SUB,
                900,
                NOW + sync_protocol::Duration::from_mins(-60),
            ))),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            Some(bearer(&token(
                &f.pem,
                "viewer",
                SUB,
                900,
                NOW + sync_protocol::Duration::from_mins(10),
            ))),
            AuthError::NotYetValid,
        ),
        (
            "issued in the future to stretch its lifetime (iat = now + 30 days)",
            Some(bearer(&{
                let now = NOW.unix_ms() / 1_000;
                let later = now + 30 * 86_400;
                crafted(
                    &f.pem,
                    rs256(&k),
                    serde_json::json!({"iss": ISS, "aud": AUD, "sub": SUB, "role": "viewer",
                        "iat": later, "exp": later + 900}),
                )
            })),
            AuthError::NotYetValid,
        ),
        (
            "wrong issuer",
            Some(bearer(&crafted(
                &f.pem,
                rs256(&k),
                claims("evil", AUD, "viewer", SUB, 900),
            ))),
            AuthError::WrongIssuer,
        ),
        (
            "wrong audience",
            Some(bearer(&crafted(
                &f.pem,
                rs256(&k),
                claims(ISS, "other-api", "viewer", SUB, 900),
            ))),
            AuthError::WrongAudience,
        ),
        (
            "unknown kid",
            Some(bearer(&token(&f.other_pem, "viewer", SUB, 900, NOW))),
            AuthError::UnknownKid,
        ),
        (
            "alg none",
            Some(bearer(&alg_none)),
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "HS256 with the public key as secret",
            Some(bearer(&hs256_with_public_key)),
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "tampered payload",
            Some(bearer(&tampered)),
            AuthError::BadSignature,
        ),
        (
            "jku header",
            Some(bearer(&with(|h| {
                h.jku = Some("https://evil.example/jwks.json".into())
            }))),
            AuthError::ForbiddenHeader,
        ),
        (
            "x5u header",
            Some(bearer(&with(|h| {
                h.x5u = Some("https://evil.example/cert.pem".into())
            }))),
            AuthError::ForbiddenHeader,
        ),
        (
            "no kid",
            Some(bearer(&with(|h| h.kid = None))),
            AuthError::InvalidKid,
        ),
        (
            "path in kid",
            Some(bearer(&with(|h| {
                h.kid = Some("../../../../etc/passwd".into())
            }))),
            AuthError::InvalidKid,
        ),
        (
            "SQL in kid",
            Some(bearer(&with(|h| h.kid = Some("x' OR '1'='1".into())))),
            AuthError::InvalidKid,
        ),
        (
            "unknown role",
            Some(bearer(&crafted(
                &f.pem,
                rs256(&k),
                claims(ISS, AUD, "superuser", SUB, 900),
            ))),
            AuthError::InvalidClaims,
        ),
        (
            "an empty subject",
            Some(bearer(&crafted(
                &f.pem,
                rs256(&k),
                claims(ISS, AUD, "viewer", "", 900),
            ))),
            AuthError::InvalidClaims,
        ),
        (
            "a control character in the subject",
            Some(bearer(&crafted(
                &f.pem,
                rs256(&k),
                claims(ISS, AUD, "viewer", "ops\nadmin", 900),
            ))),
            AuthError::InvalidClaims,
        ),
        (
            "a week-long token",
            Some(bearer(&token(&f.pem, "admin", "ops", 7 * 86_400, NOW))),
            AuthError::InvalidClaims,
        ),
    ];
    let mut failures = Vec::new();
    for (name, header, want) in &table {
        let got = f.verifier.verify(header.as_deref(), NOW);
        if got.as_ref().err() != Some(want) {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(f.verifier.cached(), 0, "nothing refused was cached");
}

#[test]
fn a_good_token_names_its_principal_and_is_cached_until_it_expires() {
    let f = fixture();
    let t = format!("Bearer {}", token(&f.pem, "viewer", "ops", 900, NOW));
    let p = f.verifier.verify(Some(&t), NOW).expect("valid");
    assert_eq!((p.sub.as_str(), p.role.as_str()), ("ops", "viewer"));
    assert_eq!(p.expires_at, NOW + sync_protocol::Duration::from_secs(900));
    assert_eq!(f.verifier.cached(), 1);
    assert_eq!(
        f.verifier.verify(Some(&t), NOW),
        Ok(p),
        "served from the cache"
    );
    let later = NOW + sync_protocol::Duration::from_secs(900 + 30);
    assert_eq!(
        f.verifier.verify(Some(&t), later),
        Err(AuthError::Expired),
        "the cache does not outlive the token"
    );
}

#[test]
fn several_keys_rotate_without_downtime() {
    let f = fixture();
    let both = format!(
        r#"{{"keys":[{},{}]}}"#,
        keys::public_jwk(&f.pem).expect("jwk"),
        keys::public_jwk(&f.other_pem).expect("jwk")
    );
    f.verifier
        .replace_keys(Keyring::from_jwks(&both).expect("jwks"));
    for pem in [&f.pem, &f.other_pem] {
        let t = format!("Bearer {}", token(pem, "admin", "ops", 900, NOW));
        assert!(f.verifier.verify(Some(&t), NOW).is_ok());
    }
    assert_eq!(f.verifier.kids().len(), 2);
    // Dropping a key drops its tokens, cached or not.
    let only_other = format!(
        r#"{{"keys":[{}]}}"#,
        keys::public_jwk(&f.other_pem).expect("jwk")
    );
    f.verifier
        .replace_keys(Keyring::from_jwks(&only_other).expect("jwks"));
    let t = format!("Bearer {}", token(&f.pem, "admin", "ops", 900, NOW));
    assert_eq!(f.verifier.verify(Some(&t), NOW), Err(AuthError::UnknownKid));
}

#[test]
fn hostile_jwks_entries_are_skipped() {
    let f = fixture();
    let mut jwk = keys::public_jwk(&f.pem).expect("jwk");
    jwk["kid"] = serde_json::json!("../evil");
    let ring = Keyring::from_jwks(&format!(r#"{{"keys":[{jwk}]}}"#)).expect("parses");
    assert!(ring.is_empty());
    assert!(Keyring::from_jwks("not json").is_err());
}
