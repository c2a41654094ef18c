//! Criterion benches for what security costs per request: verifying an RS256
//! token (a cache miss) against finding it in the cache of verified tokens,
//! and sealing and opening a contact with AES-256-GCM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_node::auth::{Keyring, Role, Verifier, VerifierConfig, keys};
use edge_node::pii::PiiKeys;
use sync_protocol::{Contact, Timestamp};

fn verifier(dir: &std::path::Path, cache_entries: usize) -> Verifier {
    let ring = Keyring::from_file(&dir.join("keys").join(keys::JWKS)).unwrap();
    Verifier::new(
        VerifierConfig {
            issuer: "pahlawan".into(),
            audience: "pahlawan-edge".into(),
            leeway_secs: 30,
            max_lifetime_secs: 3_600,
            cache_entries,
        },
        ring,
    )
}

fn auth(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    keys::init(dir.path()).unwrap();
    let now = Timestamp::from_unix_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let token = keys::issue(
        dir.path(),
        "pahlawan",
        "pahlawan-edge",
        Role::Provider,
        "01960000-0000-7000-8000-000000000001",
        900,
        now,
    )
    .unwrap();
    let header = format!("Bearer {token}");
    let cold = verifier(dir.path(), 0);
    let warm = verifier(dir.path(), 65_536);
    warm.verify(Some(&header), now).unwrap();
    let mut g = c.benchmark_group("auth");
    g.bench_function("rs256_verify_cache_miss", |b| {
        b.iter(|| cold.verify(black_box(Some(&header)), now).unwrap())
    });
    g.bench_function("verified_token_cache_hit", |b| {
        b.iter(|| warm.verify(black_box(Some(&header)), now).unwrap())
    });
    g.finish();

    let pii = PiiKeys::generate();
    let contact = Contact {
        phone: "+62 812 3456 7890".into(),
        email: "ibu.sari@warung-sari.example".into(),
    };
    let subject = [7u8; 16];
    let sealed = pii.seal(&contact, &subject);
    let mut g = c.benchmark_group("pii");
    g.bench_function("seal_contact", |b| {
        b.iter(|| pii.seal(black_box(&contact), &subject))
    });
    g.bench_function("open_contact", |b| {
        b.iter(|| pii.open(black_box(&sealed), &subject).unwrap())
    });
    g.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
