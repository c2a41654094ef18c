//! The bad-token table (RFC 8725's classes) against a real RS256 key pair.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::keys::{self, KEYS_DIR, SIGNING_KEY};
use super::*;

const NOW: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);
const ISS: &str = "pahlawan";
const AUD: &str = "pahlawan-edge";

struct Fixture {
    _dir: tempfile::TempDir,
    pem: String,
    other_pem: String,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    keys::init(dir.path()).expect("keys");
    let pem = std::fs::read_to_string(dir.path().join(KEYS_DIR).join(SIGNING_KEY)).expect("pem");
    let other = tempfile::tempdir().expect("tempdir");
    keys::init(other.path()).expect("other keys");
    let other_pem =
        std::fs::read_to_string(other.path().join(KEYS_DIR).join(SIGNING_KEY)).expect("pem");
    let keyring = Keyring::from_file(&dir.path().join(KEYS_DIR).join(keys::JWKS)).expect("jwks");
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

const PROVIDER: &str = "01a20e12-b9f0-76f3-8dd0-daa7d90501b5";

fn token(pem: &str, role: Role, sub: &str, ttl: i64, at: Timestamp) -> String {
    keys::sign(pem, ISS, AUD, role, sub, ttl, at).expect("signs")
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
    let good = token(&f.pem, Role::Provider, PROVIDER, 900, NOW);
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
        crafted(&f.pem, h, claims(ISS, AUD, "provider", PROVIDER, 900))
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
                Role::Provider,
                PROVIDER,
                900,
                NOW + sync_protocol::Duration::from_mins(-60),
            ))),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            Some(bearer(&token(
                &f.pem,
                Role::Provider,
                PROVIDER,
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
                    serde_json::json!({"iss": ISS, "aud": AUD, "sub": PROVIDER, "role": "provider",
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
                claims("evil", AUD, "provider", PROVIDER, 900),
            ))),
            AuthError::WrongIssuer,
        ),
        (
            "wrong audience",
            Some(bearer(&crafted(
                &f.pem,
                rs256(&k),
                claims(ISS, "other-api", "provider", PROVIDER, 900),
            ))),
            AuthError::WrongAudience,
        ),
        (
            "unknown kid",
            Some(bearer(&token(
                &f.other_pem,
                Role::Provider,
                PROVIDER,
                900,
                NOW,
            ))),
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
                claims(ISS, AUD, "superuser", PROVIDER, 900),
            ))),
            AuthError::InvalidClaims,
        ),
        (
            "provider sub not an id",
            Some(bearer(&crafted(
                &f.pem,
                rs256(&k),
                claims(ISS, AUD, "provider", "bob", 900),
            ))),
            AuthError::InvalidClaims,
        ),
        (
            "a week-long token",
            Some(bearer(&token(&f.pem, Role::Admin, "ops", 7 * 86_400, NOW))),
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
    assert!(f.verifier.cache.is_empty(), "nothing refused was cached");
}

#[test]
fn a_good_token_names_its_principal_and_is_cached_until_it_expires() {
    let f = fixture();
    let t = format!("Bearer {}", token(&f.pem, Role::Ngo, PROVIDER, 900, NOW));
    let p = f.verifier.verify(Some(&t), NOW).expect("valid");
    assert_eq!(
        (p.role, p.subject.map(|u| u.to_string())),
        (Role::Ngo, Some(PROVIDER.to_string()))
    );
    assert_eq!(
        p.recipient().map(|r| r.to_string()).as_deref(),
        Some(PROVIDER)
    );
    assert_eq!(p.provider(), None);
    assert_eq!(f.verifier.cache.len(), 1);
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
        let t = format!("Bearer {}", token(pem, Role::Admin, "ops", 900, NOW));
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
    let t = format!("Bearer {}", token(&f.pem, Role::Admin, "ops", 900, NOW));
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

#[test]
fn a_subject_has_one_spelling_whatever_the_token_says() {
    let f = fixture();
    let v = &f.verifier;
    let canonical = PROVIDER.to_lowercase();
    let spellings = [
        PROVIDER.to_uppercase(),
        PROVIDER.replace('-', ""),
        format!("{{{PROVIDER}}}"),
        format!("urn:uuid:{PROVIDER}"),
    ];
    for s in spellings {
        let t = token(&f.pem, Role::Provider, &s, 900, NOW);
        let p = v
            .verify(Some(&format!("Bearer {t}")), NOW)
            .expect("a valid token");
        assert_eq!(p.sub, canonical, "{s}: rate-limit and audit keys agree");
    }
}
