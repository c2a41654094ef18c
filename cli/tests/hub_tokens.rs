//! `pahlawan token issue --for hub` and `pahlawan hub login-code` against a
//! real hub: the token opens the hub's API as its role, and the code is
//! minted by the running hub, stored only as a digest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use testkit::pg;

fn pahlawan(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "off")
        .output()
        .expect("run pahlawan");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// The CLI runs as a blocking child process while the hub serves in this
// process: the hub needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_token_opens_the_hub_as_its_role_and_a_login_code_is_minted_by_it() {
    let db = pg::fresh_database().await;
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path().to_str().unwrap();
    let (ok, _, err) = pahlawan(&["certs", "init", "--dir", c]);
    assert!(ok, "{err}");
    assert!(
        certs.path().join("tokens/jwks.json").exists(),
        "certs init makes the hub's token keys"
    );
    let hub = common::hub_in_process(&db.url, certs.path(), |_| {}).await;
    let base = format!("http://{}", hub.http_addr());
    let http = reqwest::Client::new();

    let (ok, viewer, err) = pahlawan(&[
        "token",
        "issue",
        "--for",
        "hub",
        "--role",
        "viewer",
        "--sub",
        "siti",
        "--certs-dir",
        c,
    ]);
    assert!(ok, "{err}");
    let (ok, admin, err) = pahlawan(&[
        "token",
        "issue",
        "--for",
        "hub",
        "--role",
        "admin",
        "--sub",
        "ops",
        "--ttl",
        "5m",
        "--certs-dir",
        c,
    ]);
    assert!(ok, "{err}");
    let status = |r: reqwest::Response| r.status().as_u16();
    let edges = format!("{base}/api/v1/edges");
    let codes = format!("{base}/api/v1/login-codes");
    let body = serde_json::json!({"role": "viewer", "sub": "siti"});
    for (token, get, post) in [(&viewer, 200, 403), (&admin, 200, 201)] {
        let r = http.get(&edges).bearer_auth(token).send().await.unwrap();
        assert_eq!(status(r), get);
        let r = http
            .post(&codes)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(status(r), post);
    }

    let (ok, code, err) = pahlawan(&[
        "hub",
        "login-code",
        "--sub",
        "siti@example.org",
        "--url",
        &base,
        "--certs-dir",
        c,
    ]);
    assert!(ok, "{err}");
    let digest = cloud_hub::auth::login_code_digest(&code).expect("the code alone on stdout");
    assert!(
        err.contains("siti@example.org") && err.contains("viewer"),
        "{err}"
    );
    let pg = cloud_hub::db::connect(&db.url).await.unwrap();
    let stored: Vec<(String, String, String)> = pg
        .query(
            "SELECT role, sub, created_by FROM login_codes WHERE code_sha256 = $1",
            &[&&digest[..]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        stored,
        [(
            "viewer".into(),
            "siti@example.org".into(),
            "pahlawan-cli".into()
        )],
        "stored by its digest, minted by the CLI's admin token"
    );
    hub.shutdown().await;
}
