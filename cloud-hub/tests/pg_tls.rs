//! `sslmode` with libpq's meaning, against real servers: one with a
//! certificate this test makes (a CA, a server certificate for `localhost`
//! and a client certificate), the Citus coordinator with the self-signed
//! certificate `CREATE EXTENSION citus` made, and a server without TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cloud_hub::{certs, db};
use sync_protocol::EdgeId;
use testkit::{citus, pg};

/// The role that signs in with a client certificate (its common name).
const CERT_USER: &str = "tlsclient";

/// Files the server reads must be the `postgres` user's when we are root,
/// and its key private.
fn hand_to_postgres(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let ok = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "chown to postgres");
    }
}

/// A server with TLS on, its certificate (for `localhost` only) signed by
/// the CA in `dir`; `tlsclient` must present a certificate from that CA.
fn start_tls_server(dir: &Path) -> pg::Cluster {
    certs::init(dir, &["localhost".to_string()], false).unwrap();
    certs::issue_edge(dir, &EdgeId::new(CERT_USER).unwrap()).unwrap();
    std::fs::write(
        dir.join("pg_hba.conf"),
        format!(
            "local all all trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             hostssl all {CERT_USER} ::1/128 cert\n\
             host all all 127.0.0.1/32 trust\n\
             host all all ::1/128 trust\n"
        ),
    )
    .unwrap();
    hand_to_postgres(dir);
    let p = |f: &str| dir.join(f).display().to_string();
    pg::Cluster::start(&[
        "ssl=on".into(),
        format!("ssl_cert_file={}", p(certs::HUB_CERT)),
        format!("ssl_key_file={}", p(certs::HUB_KEY)),
        format!("ssl_ca_file={}", p(certs::CA_CERT)),
        format!("hba_file={}", p("pg_hba.conf")),
    ])
    .unwrap()
}

/// Connects with `url`: whether the session is encrypted, or the error.
async fn attempt(url: &str) -> Result<bool, String> {
    let c = db::connect(url).await.map_err(|e| e.to_string())?;
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    Ok(ssl)
}

enum Expect {
    Encrypted(bool),
    Refused(&'static str),
}

async fn check(rows: Vec<(String, Expect)>) {
    let mut failures = Vec::new();
    for (url, expect) in rows {
        let got = attempt(&url).await;
        let ok = match (&expect, &got) {
            (Expect::Encrypted(want), Ok(ssl)) => want == ssl,
            (Expect::Refused(needle), Err(e)) => e.contains(needle),
            _ => false,
        };
        if !ok {
            let want = match expect {
                Expect::Encrypted(ssl) => format!("connected, ssl={ssl}"),
                Expect::Refused(needle) => format!("refused with {needle:?}"),
            };
            failures.push(format!("{url}\n    expected {want}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn every_sslmode_against_a_certificate_the_test_made() {
    use Expect::*;
    let dir = tempfile::tempdir().unwrap();
    let server = start_tls_server(dir.path());
    let other = tempfile::tempdir().unwrap();
    certs::init(other.path(), &[], false).unwrap();
    let port = server.port();
    let ca = dir.path().join(certs::CA_CERT).display().to_string();
    let other_ca = other.path().join(certs::CA_CERT).display().to_string();
    let client_cert = certs::edge_cert_path(dir.path(), &EdgeId::new(CERT_USER).unwrap());
    let client_key = certs::edge_key_path(dir.path(), &EdgeId::new(CERT_USER).unwrap());
    let kv = |host: &str, user: &str, tls: &str| {
        format!("host={host} port={port} user={user} dbname=postgres {tls}")
    };
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres{query}");
    let rows = vec![
        (
            kv("127.0.0.1", "postgres", "sslmode=disable"),
            Encrypted(false),
        ),
        // libpq's default is `prefer`: encrypted, the certificate unchecked.
        (kv("127.0.0.1", "postgres", ""), Encrypted(true)),
        (
            kv("127.0.0.1", "postgres", "sslmode=prefer"),
            Encrypted(true),
        ),
        (url("127.0.0.1", "?sslmode=require"), Encrypted(true)),
        // verify-ca checks the chain, not the name (the certificate says localhost).
        (
            kv(
                "127.0.0.1",
                "postgres",
                &format!("sslmode=verify-ca sslrootcert={ca}"),
            ),
            Encrypted(true),
        ),
        (
            url(
                "localhost",
                &format!("?sslmode=verify-full&sslrootcert={ca}"),
            ),
            Encrypted(true),
        ),
        (
            url(
                "127.0.0.1",
                &format!("?sslmode=verify-full&sslrootcert={ca}"),
            ),
            Refused("certificate not valid for name \"127.0.0.1\""),
        ),
        (
            // Another CA of the same name: its signature does not match.
            kv(
                "localhost",
                "postgres",
                &format!("sslmode=verify-ca sslrootcert={other_ca}"),
            ),
            Refused("invalid peer certificate: BadSignature"),
        ),
        (
            kv(
                "localhost",
                "postgres",
                "sslmode=verify-full sslrootcert=system",
            ),
            Refused("invalid peer certificate: UnknownIssuer"),
        ),
        (
            kv(
                "localhost",
                "postgres",
                "sslmode=verify-ca sslrootcert=/nonexistent/ca.crt",
            ),
            Refused("/nonexistent/ca.crt"),
        ),
        // The client certificate: its common name is the role.
        (
            kv(
                "localhost",
                CERT_USER,
                &format!(
                    "sslmode=verify-full sslrootcert={ca} sslcert={} sslkey={}",
                    client_cert.display(),
                    client_key.display()
                ),
            ),
            Encrypted(true),
        ),
        (
            kv(
                "localhost",
                CERT_USER,
                &format!("sslmode=verify-full sslrootcert={ca}"),
            ),
            Refused("certificate"),
        ),
        (
            kv("localhost", "postgres", "sslmode=verify-everything"),
            Refused("verify-everything"),
        ),
    ];
    // The role exists for the certificate rows.
    let admin = db::connect(&server.url("postgres")).await.unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {CERT_USER} LOGIN SUPERUSER"))
        .await
        .unwrap();
    check(rows).await;
}

#[tokio::test]
async fn citus_s_own_certificate_encrypts_and_verify_modes_refuse_it() {
    use Expect::*;
    // A fresh database on the cluster: CREATE EXTENSION citus has turned TLS
    // on with its self-signed (X.509 v1, zero-validity) certificate.
    let tdb = citus::fresh_database().await;
    let admin = db::connect(&tdb.url).await.unwrap();
    let pem: String = admin
        .query_one("SELECT pg_read_file('server.crt')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("citus-server.crt");
    std::fs::write(&own, &pem).unwrap();
    let with = |tls: &str| format!("{} {tls}", tdb.url);
    let rows = vec![
        // What stopped the hub before: `prefer` (the default) and `require`
        // must encrypt without judging the certificate.
        (with(""), Encrypted(true)),
        (with("sslmode=prefer"), Encrypted(true)),
        (with("sslmode=require"), Encrypted(true)),
        (with("sslmode=disable"), Encrypted(false)),
        (
            with("sslmode=verify-ca sslrootcert=system"),
            Refused("invalid peer certificate: Other(OtherError(UnsupportedCertVersion))"),
        ),
        // Trusting the certificate itself is not enough for rustls: webpki
        // reads only X.509 v3 (and this one expired when it was made).
        (
            with(&format!("sslmode=verify-ca sslrootcert={}", own.display())),
            Refused("invalid peer certificate: Other(OtherError(UnsupportedCertVersion))"),
        ),
        (
            with(&format!(
                "sslmode=verify-full sslrootcert={}",
                own.display()
            )),
            Refused("invalid peer certificate: Other(OtherError(UnsupportedCertVersion))"),
        ),
    ];
    check(rows).await;
}

#[tokio::test]
async fn require_refuses_a_server_without_tls_and_prefer_falls_back() {
    use Expect::*;
    let server = pg::Cluster::start(&["ssl=off".into()]).unwrap();
    let base = server.url("postgres");
    check(vec![
        (format!("{base} sslmode=require"), Refused("TLS")),
        (format!("{base} sslmode=verify-full"), Refused("TLS")),
        (format!("{base} sslmode=prefer"), Encrypted(false)),
        (base.clone(), Encrypted(false)),
    ])
    .await;
}
