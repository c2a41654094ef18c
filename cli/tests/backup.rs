//! Backups of a real `pahlawan edge run`: taken while a load of posts runs,
//! restored into the stopped edge (refused while it runs), every post
//! acknowledged before the backup began present and `integrity_check` ok;
//! kill -9 of a backup half way leaves the edge serving and the earlier
//! backup intact; a restored edge resumes its outbox after the hub's
//! high-water mark, and the hub takes its next batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use std::sync::Mutex;

fn pahlawan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("PAHLAWAN_TOKEN")
        .output()
        .expect("run pahlawan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn integrity(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn surplus_ids(db: &Path) -> HashSet<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    c.prepare("SELECT id FROM surplus")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| uuid::Uuid::from_slice(&b.unwrap()).unwrap().to_string())
        .collect()
}

/// Posts from `workers` tasks until `stop`; every acknowledged id goes into `acked`.
fn load(
    c: &reqwest::Client,
    base: &str,
    provider: &str,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8u64)
        .map(|w| {
            let (c, base, provider) = (c.clone(), base.to_string(), provider.to_string());
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = w * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let (s, v) = post(
                        &c,
                        format!("{base}/api/v1/surplus"),
                        surplus_body(&provider, i),
                    )
                    .await
                    .unwrap();
                    assert_eq!(s, 201, "{v}");
                    acked
                        .lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_string());
                    i += 1;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_every_post_acknowledged_before_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap().to_string();
    let mut edge = Proc::spawn(&["edge", "run", "--data-dir", &d, "--listen", "127.0.0.1:0"]);
    let base = edge
        .banner
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let c = admin_client(&data);
    let provider = seed(&c, &base, 20).await;
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let workers = load(&c, &base, &provider, &stop, &acked);
    testkit::until("500 posts before the backup", async || {
        acked.lock().unwrap().len() >= 500
    })
    .await;

    let before: Vec<String> = acked.lock().unwrap().clone();
    let file = dir.path().join("edge.pahlbak");
    let f = file.to_str().unwrap().to_string();
    let d2 = d.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        pahlawan(&["backup", "--to", &f, "--data-dir", &d2, "--json"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "backup: {err}");
    let during = acked.lock().unwrap().len() - before.len();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let last_seq = shown["manifest"]["last_seq"].as_u64().unwrap();
    assert!(last_seq >= 2 * before.len() as u64, "{shown}");
    eprintln!(
        "backup of {} bytes ({} compressed) at seq {last_seq}; {} posts before it, {during} while it ran",
        shown["manifest"]["db_bytes"],
        shown["file_bytes"],
        before.len()
    );

    // A live edge is not restored over.
    let (code, _, err) = pahlawan(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        &d,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is running") && err.lines().count() == 1,
        "{err}"
    );

    edge.terminate();
    let (code, out, err) = pahlawan(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        &d,
        "--json",
    ]);
    assert_eq!(code, 0, "restore: {err}");
    let restored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["next_seq"], last_seq + 1, "{restored}");
    let db = data.join("edge.sqlite3");
    assert_eq!(integrity(&db), "ok");
    let ids = surplus_ids(&db);
    let missing: Vec<&String> = before.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged posts missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(
        data.join("edge.sqlite3.before-restore").exists(),
        "the replaced database is kept"
    );

    // The restored edge serves and numbers on from the backup.
    let edge = Proc::spawn(&["edge", "run", "--data-dir", &d, "--listen", "127.0.0.1:0"]);
    let base = edge
        .banner
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let (s, v) = post(
        &c,
        format!("{base}/api/v1/surplus"),
        surplus_body(&provider, 7),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let (code, out, err) = pahlawan(&["status", "--url", &base, "--data-dir", &d, "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        status["committed_seq"].as_u64().unwrap() >= last_seq + 2,
        "numbering goes on after the backup's last seq {last_seq}: {status}"
    );
    let conn = rusqlite::Connection::open(data.join("edge.sqlite3")).unwrap();
    let (n, max): (i64, i64) = conn
        .query_row("SELECT count(*), max(seq) FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(n, max, "the outbox is dense from 1, nothing numbered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_backup_leaves_the_edge_and_the_earlier_backup_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap().to_string();
    // A large database (incompressible padding) so that a backup takes a while.
    {
        let edge = Proc::spawn(&["edge", "run", "--data-dir", &d, "--listen", "127.0.0.1:0"]);
        drop(edge);
        let conn = rusqlite::Connection::open(data.join("edge.sqlite3")).unwrap();
        conn.execute_batch("CREATE TABLE padding (b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) INSERT INTO padding SELECT randomblob(16384) FROM n;").unwrap();
    }
    let edge = Proc::spawn(&["edge", "run", "--data-dir", &d, "--listen", "127.0.0.1:0"]);
    let base = edge
        .banner
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let c = admin_client(&data);
    let provider = seed(&c, &base, 2).await;
    let file = dir.path().join("edge.pahlbak");
    let f = file.to_str().unwrap();
    let (code, _, err) = pahlawan(&["backup", "--to", f, "--data-dir", &d]);
    assert_eq!(code, 0, "the earlier backup: {err}");
    let earlier = std::fs::read(&file).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(["backup", "--to", f, "--data-dir", &d])
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = dir.path().join("edge.pahlbak.partial");
    let snapshot = dir.path().join("edge.pahlbak.snapshot");
    testkit::until("the backup to be half way", async || {
        partial.exists() || snapshot.exists()
    })
    .await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "killed half way, not finished");

    assert_eq!(
        std::fs::read(&file).unwrap(),
        earlier,
        "the earlier backup is untouched"
    );
    let (s, v) = post(
        &c,
        format!("{base}/api/v1/surplus"),
        surplus_body(&provider, 1),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "the edge still serves: {v}");
    assert_eq!(integrity(&data.join("edge.sqlite3")), "ok");
    // The earlier backup restores; the next backup replaces the leftovers.
    let other = dir.path().join("other");
    let (code, _, err) = pahlawan(&[
        "restore",
        "--from",
        f,
        "--data-dir",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(integrity(&other.join("edge.sqlite3")), "ok");
    let (code, _, err) = pahlawan(&["backup", "--to", f, "--data-dir", &d]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !partial.exists() && !snapshot.exists(),
        "no leftovers after a good backup"
    );
    drop(edge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_edge_resumes_after_the_hubs_high_water_mark() {
    let db = testkit::pg::fresh_database().await;
    let certs = common::certs_for_edges(&["jkt-1"]);
    let port = free_udp_port();
    let hub = start_hub(&db.url, port, certs.path());
    let hub_http = hub
        .banner
        .split("http on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let cfg = edge_config(
        work.path(),
        &data,
        certs.path(),
        "jkt-1",
        &format!("127.0.0.1:{port}"),
    );
    let cfg_s = cfg.to_str().unwrap().to_string();
    let mut edge = start_edge(&cfg);
    let c = admin_client(&data);
    let provider = seed(&c, &edge.base, 2).await;
    wait_caught_up(&c, &edge.base, "before the backup").await;
    let file = work.path().join("b.pahlbak");
    let f = file.to_str().unwrap().to_string();
    let (code, _, err) = pahlawan(&["backup", "--to", &f, "--config", &cfg_s]);
    assert_eq!(code, 0, "{err}");
    // Posts after the backup reach the hub, then the edge's disk is lost.
    for i in 0..5 {
        let (s, _) = post(
            &c,
            format!("{}/api/v1/surplus", edge.base),
            surplus_body(&provider, i),
        )
        .await
        .unwrap();
        assert_eq!(s, 201);
    }
    let mark = wait_caught_up(&c, &edge.base, "after the backup").await["acked_seq"]
        .as_u64()
        .unwrap();
    edge.proc.kill9();

    // Without the hub's mark a syncing edge is not restored.
    let (code, _, err) = pahlawan(&["restore", "--from", &f, "--config", &cfg_s]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--hub-url"), "{err}");
    let ask = [
        "restore",
        "--from",
        &f,
        "--config",
        &cfg_s,
        "--hub-url",
        &hub_http,
    ];
    // The hub's API wants a token: without one, a usage error naming the flag.
    let (code, _, err) = pahlawan(&ask);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--hub-token"), "{err}");
    let certs_dir = certs.path().to_str().unwrap();
    let (code, token, err) = pahlawan(&[
        "token",
        "issue",
        "--for",
        "hub",
        "--role",
        "viewer",
        "--sub",
        "restore",
        "--certs-dir",
        certs_dir,
    ]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    let (code, out, err) = pahlawan(&[&ask[..], &["--hub-token", &token, "--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let restored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        restored["next_seq"],
        mark + 1,
        "numbering resumes after the hub's mark: {restored}"
    );

    // The restored edge's next events are taken by the hub, right after its mark.
    let edge = start_edge(&cfg);
    let (s, v) = post(
        &c,
        format!("{}/api/v1/surplus", edge.base),
        surplus_body(&provider, 99),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let status = wait_caught_up(&c, &edge.base, "after the restore").await;
    let acked = status["acked_seq"].as_u64().unwrap();
    assert!(
        acked >= mark + 2,
        "the hub took the restored edge's events: {status}"
    );
    let hub_db = cloud_hub::db::connect(&db.url).await.unwrap();
    let seqs: Vec<i64> = hub_db
        .query(
            "SELECT seq FROM event_log WHERE edge_id = 'jkt-1' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (1..=(acked as i64)).collect();
    assert_eq!(
        seqs, expected,
        "dense at the hub, nothing taken for a replay"
    );
    drop(hub);
}

/// The hub's backup as the README describes it: `pg_basebackup` of the
/// running PostgreSQL (WAL streamed with it), restored into a throwaway
/// cluster, holds every event the hub had applied, and a hub starts on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pg_basebackup_of_the_hubs_database_restores_into_another_cluster() {
    let cluster = tokio::task::spawn_blocking(|| testkit::pg::Cluster::start(&[]))
        .await
        .unwrap()
        .unwrap();
    let admin = testkit::pg::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE hub").await.unwrap();
    let url = cluster.url("hub");
    let certs = common::certs_for_edges(&["jkt-1"]);
    let port = free_udp_port();
    let hub = start_hub(&url, port, certs.path());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("edge");
    let cfg = edge_config(
        work.path(),
        &data,
        certs.path(),
        "jkt-1",
        &format!("127.0.0.1:{port}"),
    );
    let edge = start_edge(&cfg);
    let c = admin_client(&data);
    let provider = seed(&c, &edge.base, 2).await;
    for i in 0..20 {
        let (s, _) = post(
            &c,
            format!("{}/api/v1/surplus", edge.base),
            surplus_body(&provider, i),
        )
        .await
        .unwrap();
        assert_eq!(s, 201);
    }
    let acked = wait_caught_up(&c, &edge.base, "before the base backup").await["acked_seq"]
        .as_i64()
        .unwrap();
    let restored = tokio::task::spawn_blocking(move || cluster.base_backup().map(|r| (r, cluster)))
        .await
        .unwrap()
        .unwrap();
    let (restored, _original) = restored;
    let copy = testkit::pg::connect(&restored.url("hub")).await.unwrap();
    let (events, mark): (i64, i64) = {
        let r = copy
            .query_one(
                "SELECT (SELECT count(*) FROM event_log WHERE edge_id = 'jkt-1'),
                        (SELECT high_water FROM edge_progress WHERE edge_id = 'jkt-1')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (events, mark),
        (acked, acked),
        "the copy holds every applied event"
    );
    // A hub runs on the restored copy.
    let copy_hub = start_hub(&restored.url("hub"), free_udp_port(), certs.path());
    drop((copy_hub, hub, edge));
}

/// `pahlawan` with extra environment variables.
fn pahlawan_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "off")
        .env_remove("PAHLAWAN_TOKEN")
        .output()
        .expect("run pahlawan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Backups and restores that cannot be done, each one line on stderr and
/// the documented exit code, the data directory untouched; and a good
/// backup and restore with stderr not a terminal draw no progress bar.
#[test]
fn bad_backups_and_restores_are_one_line_and_their_code_and_a_good_one_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap().to_string();
    drop(Proc::spawn(&[
        "edge",
        "run",
        "--data-dir",
        &d,
        "--listen",
        "127.0.0.1:0",
    ]));
    let file = dir.path().join("edge.pahlbak");
    let f = file.to_str().unwrap().to_string();
    // stderr is a pipe here: the progress bar draws nothing.
    let (code, out, err) = pahlawan(&["backup", "--to", &f, "--data-dir", &d]);
    assert_eq!((code, err.as_str()), (0, ""), "backup: {out}");
    assert!(out.contains("integrity") && out.contains("ok"), "{out}");
    let (code, out, err) = pahlawan(&["restore", "--from", &f, "--data-dir", &d]);
    assert_eq!((code, err.as_str()), (0, ""), "restore: {out}");

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let garbage = dir.path().join("garbage.pahlbak");
    std::fs::write(&garbage, b"not a backup at all").unwrap();
    let good = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.pahlbak");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    let e = empty.to_str().unwrap();
    let (g, c) = (garbage.to_str().unwrap(), cut.to_str().unwrap());
    let missing = dir.path().join("missing.pahlbak");
    let m = missing.to_str().unwrap();
    let db_before = std::fs::read(data.join("edge.sqlite3")).unwrap();
    // (arguments, environment, exit code, what the line mentions)
    type Row<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let table: Vec<Row> = vec![
        (vec!["backup", "--data-dir", &d], vec![], 2, "--to"),
        (vec!["restore", "--data-dir", &d], vec![], 2, "--from"),
        (
            vec!["backup", "--to", &f, "--data-dir", e],
            vec![],
            1,
            "not an edge data directory",
        ),
        (
            vec!["restore", "--from", g, "--data-dir", &d],
            vec![],
            1,
            "not a pahlawan backup",
        ),
        (
            vec!["restore", "--from", c, "--data-dir", &d],
            vec![],
            1,
            "damaged",
        ),
        (
            vec!["restore", "--from", m, "--data-dir", &d],
            vec![],
            1,
            "missing.pahlbak",
        ),
        (
            vec!["restore", "--from", &f, "--data-dir", &d],
            vec![("PAHLAWAN_EDGE_EDGE_ID", "bandung-1")],
            1,
            "is a backup of edge",
        ),
        (
            vec![
                "restore",
                "--from",
                &f,
                "--data-dir",
                &d,
                "--hub-seq",
                "3",
                "--hub-url",
                "http://x",
            ],
            vec![],
            2,
            "cannot be used with",
        ),
    ];
    for (args, env, code, needle) in table {
        let (got, out, err) = pahlawan_env(&args, &env);
        assert_eq!(got, code, "pahlawan {args:?}: {err}{out}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "pahlawan {args:?}: {needle:?} in {err}"
        );
    }
    assert_eq!(
        std::fs::read(data.join("edge.sqlite3")).unwrap(),
        db_before,
        "no refused restore touched the database"
    );
    assert!(
        std::fs::read(&file).unwrap() == good,
        "the refused backup left the earlier file as it was"
    );
}
