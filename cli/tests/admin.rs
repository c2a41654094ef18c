//! Administration from the command line: keys, tokens, GDPR export and
//! erasure, key rotation — against a real `pahlawan edge run` process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("PAHLAWAN_PII_KEYS")
        .output()
        .expect("run pahlawan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "pahlawan {args:?}: {err}");
    out
}

fn key_ids(db: &std::path::Path) -> Vec<u32> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let blobs: Vec<Vec<u8>> = conn
        .prepare(
            "SELECT contact_sealed FROM providers UNION ALL SELECT contact_sealed FROM recipients",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    blobs
        .iter()
        .map(|b| u32::from_be_bytes([b[1], b[2], b[3], b[4]]))
        .collect()
}

/// Each file under `<data_dir>/keys/`: its bytes and its mode.
fn key_files(data_dir: &std::path::Path) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::read_dir(data_dir.join("keys"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            let name = e.file_name().into_string().unwrap();
            (name, (std::fs::read(e.path()).unwrap(), mode))
        })
        .collect()
}

/// `keys init` makes every key the edge makes at its first start — the
/// Debian package's postinst runs it as the service user before the edge
/// ever runs: after it, a first `edge run` creates no key file and changes
/// none, and the secrets are 0600.
#[test]
fn keys_init_makes_every_key_the_edge_makes_at_its_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let (inited, fresh) = (dir.path().join("inited"), dir.path().join("fresh"));
    ok(&["keys", "init", "--data-dir", inited.to_str().unwrap()]);
    let made = key_files(&inited);
    for (name, (_, mode)) in &made {
        if name != "jwks.json" {
            assert_eq!(*mode, 0o600, "keys/{name} is a secret");
        }
    }

    for d in [&inited, &fresh] {
        let d = d.to_str().unwrap();
        let mut edge = Proc::spawn(&["edge", "run", "--data-dir", d, "--listen", "127.0.0.1:0"]);
        edge.terminate();
    }
    let names = |m: &std::collections::BTreeMap<String, (Vec<u8>, u32)>| {
        m.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        names(&key_files(&fresh)),
        names(&made),
        "keys init makes the files a first start makes"
    );
    assert!(
        key_files(&inited) == made,
        "the edge kept every key keys init made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_tokens_export_erase_and_rotation_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("edge");
    let d = d.to_str().unwrap();
    // keys init: creates, then keeps.
    let out = ok(&["keys", "init", "--data-dir", d]);
    assert_eq!(out.matches("created").count(), 4, "{out}");
    let out = ok(&["keys", "init", "--data-dir", d]);
    assert_eq!(out.matches("kept").count(), 4, "{out}");

    let edge = Proc::spawn(&["edge", "run", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    let base = edge
        .banner
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();

    // A token alone on stdout, accepted by the edge.
    let token = ok(&[
        "token",
        "issue",
        "--role",
        "admin",
        "--sub",
        "ops",
        "--data-dir",
        d,
    ]);
    assert_eq!(token.lines().count(), 1);
    let token = token.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWS");
    let c = reqwest::Client::new();
    let resp = c
        .post(format!("{base}/api/v1/providers"))
        .bearer_auth(&token)
        .json(&json!({"name": "Warung CLI", "lat": -6.2, "lon": 106.816,
                      "contact_phone": "+62 21 777 0001", "contact_email": "cli@warung.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let p: Value = resp.json().await.unwrap();
    let pid = p["id"].as_str().unwrap().to_string();
    // A provider token for that provider works for it, not for admin routes.
    let ptoken = ok(&[
        "token",
        "issue",
        "--role",
        "provider",
        "--sub",
        &pid,
        "--ttl",
        "10m",
        "--data-dir",
        d,
    ]);
    let resp = c
        .get(format!("{base}/api/v1/providers/{pid}"))
        .bearer_auth(ptoken.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(format!("{base}/api/v1/providers"))
        .bearer_auth(ptoken.trim())
        .json(&json!({"name": "Mine", "lat": -6.2, "lon": 106.816,
                      "contact_phone": "+62 21 1", "contact_email": "m@m.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Bad token requests: one line, non-zero, nothing printed on stdout.
    for (args, mention) in [
        (vec!["--role", "root", "--sub", "x"], "--role"),
        (vec!["--role", "ngo", "--sub", "not-a-uuid"], "--sub"),
        (
            vec!["--role", "admin", "--sub", "ops", "--ttl", "2h"],
            "--ttl",
        ),
        (
            vec!["--role", "admin", "--sub", "ops", "--ttl", "ten"],
            "--ttl",
        ),
        (
            vec!["--role", "admin", "--sub", "ops", "--ttl", "0"],
            "--ttl",
        ),
    ] {
        let mut all = vec!["token", "issue"];
        all.extend(args.iter());
        all.extend(["--data-dir", d]);
        let (code, out, err) = run(&all);
        assert_ne!(code, 0, "{all:?}");
        assert!(out.is_empty(), "{all:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{all:?}: {err}");
        assert!(err.contains(mention), "{all:?}: {err}");
    }
    let empty = dir.path().join("no-keys");
    let (code, _, err) = run(&[
        "token",
        "issue",
        "--role",
        "admin",
        "--sub",
        "ops",
        "--data-dir",
        empty.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("keys init"), "{err}");

    // GDPR export through the CLI: the contact, opened.
    let out = ok(&["subject", "export", &pid, "--url", &base, "--data-dir", d]);
    let export: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(export["provider"]["contact_email"], "cli@warung.example");

    // Rotation while the edge runs: it re-seals within seconds.
    let db = std::path::Path::new(d).join("edge.sqlite3");
    assert_eq!(key_ids(&db), vec![1]);
    let out = ok(&["keys", "rotate", "--data-dir", d]);
    assert!(out.contains("PII key 2 is now active"), "{out}");
    assert!(out.contains("running edge"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while key_ids(&db) != vec![2] {
        assert!(std::time::Instant::now() < deadline, "not re-sealed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Erase through the CLI; a second erase is a one-line 404.
    let out = ok(&["subject", "erase", &pid, "--url", &base, "--data-dir", d]);
    let erased: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(erased["erased"], true);
    let (code, _, err) = run(&["subject", "erase", &pid, "--url", &base, "--data-dir", d]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = run(&["subject", "export", "nope", "--url", &base, "--data-dir", d]);
    assert_ne!(code, 0);
    assert!(err.contains("UUID"), "{err}");

    // A second provider, then rotation with the edge stopped: done at once.
    let resp = c
        .post(format!("{base}/api/v1/providers"))
        .bearer_auth(&token)
        .json(&json!({"name": "Warung Dua", "lat": -6.2, "lon": 106.816,
                      "contact_phone": "+62 21 777 0002", "contact_email": "dua@warung.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    drop(edge);
    let out = ok(&["keys", "rotate", "--data-dir", d]);
    assert!(out.contains("every contact is sealed under key 3"), "{out}");
    // The erased provider has nothing sealed any more; the other is on key 3.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sealed: Vec<Vec<u8>> = conn
        .prepare("SELECT contact_sealed FROM providers ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(sealed[0].is_empty());
    assert_eq!(&sealed[1][1..5], &3u32.to_be_bytes());
}

#[test]
fn edge_run_tells_how_to_get_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(["edge", "run", "--data-dir", d, "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut hint = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("pahlawan token issue") {
            hint = line;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(hint.contains(&format!("--data-dir {d}")), "{hint}");
    // The keys it created on first start are the ones the hint points at.
    let token = ok(&[
        "token",
        "issue",
        "--role",
        "admin",
        "--sub",
        "me",
        "--data-dir",
        d,
    ]);
    assert!(!token.trim().is_empty());
}
