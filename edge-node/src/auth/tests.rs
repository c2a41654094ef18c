//! The edge's half of the token rules: roles and subjects (the verifier's
//! RFC 8725 table lives in `jwt-auth`).

use super::keys::{self, KEYS_DIR, SIGNING_KEY};
use super::*;

const NOW: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);
const ISS: &str = "pahlawan";
const AUD: &str = "pahlawan-edge";
const PROVIDER: &str = "01a20e12-b9f0-76f3-8dd0-daa7d90501b5";

struct Fixture {
    _dir: tempfile::TempDir,
    pem: String,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    keys::init(dir.path()).expect("keys");
    let pem = std::fs::read_to_string(dir.path().join(KEYS_DIR).join(SIGNING_KEY)).expect("pem");
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
        verifier,
    }
}

fn bearer(pem: &str, role: &str, sub: &str) -> String {
    let spec = jwt_auth::keys::TokenSpec {
        issuer: ISS,
        audience: AUD,
        role,
        sub,
        ttl_secs: 900,
    };
    format!(
        "Bearer {}",
        jwt_auth::keys::sign(pem, spec, NOW).expect("signs")
    )
}

#[test]
fn roles_and_subjects_the_edge_refuses() {
    let f = fixture();
    for (name, role, sub) in [
        ("unknown role", "superuser", PROVIDER),
        ("a hub viewer", "viewer", "ops"),
        ("provider sub not an id", "provider", "bob"),
        ("ngo sub not an id", "ngo", "a food bank"),
    ] {
        assert_eq!(
            f.verifier.verify(Some(&bearer(&f.pem, role, sub)), NOW),
            Err(AuthError::InvalidClaims),
            "{name}"
        );
    }
}

#[test]
fn a_good_token_names_its_principal() {
    let f = fixture();
    let t = bearer(&f.pem, "ngo", PROVIDER);
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
    let admin = f
        .verifier
        .verify(Some(&bearer(&f.pem, "admin", "ops")), NOW)
        .expect("valid");
    assert!(admin.is_admin() && admin.subject.is_none());
}

#[test]
fn a_subject_has_one_spelling_whatever_the_token_says() {
    let f = fixture();
    let canonical = PROVIDER.to_lowercase();
    let spellings = [
        PROVIDER.to_uppercase(),
        PROVIDER.replace('-', ""),
        format!("{{{PROVIDER}}}"),
        format!("urn:uuid:{PROVIDER}"),
    ];
    for s in spellings {
        let p = f
            .verifier
            .verify(Some(&bearer(&f.pem, "provider", &s)), NOW)
            .expect("a valid token");
        assert_eq!(p.sub, canonical, "{s}: rate-limit and audit keys agree");
    }
}
