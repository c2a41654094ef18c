//! The operator's verbs against a real `pahlawan edge run`: status, the
//! registries, surplus, cells — tables for people, `--json` with the API's
//! field names — and the refusals that need a live edge (bad and expired
//! credentials), each one line and its documented exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// (exit code, stdout, stderr) of `pahlawan ARGS`.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pahlawan"));
    cmd.args(args)
        .env("RUST_LOG", "off")
        .env_remove("PAHLAWAN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run pahlawan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run(args, &[]);
    assert_eq!(code, 0, "pahlawan {args:?}: {err}");
    out
}

fn json_of(args: &[&str]) -> Value {
    let out = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// One line on stderr starting `error: `, mentioning `needle`, and `code`.
pub fn assert_refused(args: &[&str], env: &[(&str, &str)], code: i32, needle: &str) {
    let (got, _, stderr) = run(args, env);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr:?}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {stderr:?} should mention {needle}"
    );
    assert_eq!(got, code, "{args:?}: exit code ({stderr})");
}

struct Edge {
    _dir: tempfile::TempDir,
    _proc: Proc,
    base: String,
    data: String,
}

fn start(dir: tempfile::TempDir) -> Edge {
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap().to_string();
    let proc = Proc::spawn(&[
        "edge",
        "run",
        "--data-dir",
        &data_s,
        "--listen",
        "127.0.0.1:0",
    ]);
    let base = proc
        .banner
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    Edge {
        _dir: dir,
        _proc: proc,
        base,
        data: data_s,
    }
}

/// `ARGS --url BASE --data-dir DATA`.
fn at<'a>(edge: &'a Edge, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend([
        "--url",
        edge.base.as_str(),
        "--data-dir",
        edge.data.as_str(),
    ]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_verb_against_a_real_edge() {
    let edge = start(tempfile::tempdir().unwrap());
    let admin = admin_client(Path::new(&edge.data));
    let provider = seed(&admin, &edge.base, 3).await;
    let (s, posted) = post(
        &admin,
        format!("{}/api/v1/surplus", edge.base),
        surplus_body(&provider, 1),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{posted}");
    let surplus_id = posted["id"].as_str().unwrap().to_string();

    // status: every field, as JSON and as lines.
    let status = json_of(&at(&edge, &["status", "--json"]));
    for key in [
        "edge_id",
        "version",
        "ready",
        "started_at",
        "uptime_seconds",
        "committed_seq",
        "hub_enabled",
        "hub_connected",
        "acked_seq",
        "outbox_backlog",
        "replication_lag_seconds",
        "last_sync_at",
        "lease_epoch",
        "live_surplus",
        "dlq_size",
        "data_dir_bytes",
    ] {
        assert!(status.get(key).is_some(), "status lacks {key}: {status}");
    }
    assert_eq!(status["ready"], true);
    assert_eq!(status["live_surplus"], 1);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["committed_seq"].as_u64().unwrap() >= 6, "{status}");
    assert!(
        status["data_dir_bytes"].as_u64().unwrap() > 4096,
        "{status}"
    );
    let text = ok(&at(&edge, &["status"]));
    assert!(text.contains("health") && text.contains("ready"), "{text}");
    assert!(
        text.contains("live surplus") && text.contains("dlq size"),
        "{text}"
    );

    // recipients: pages follow `next`; the table has a header and a row each.
    let page = json_of(&at(
        &edge,
        &["recipients", "list", "--limit", "2", "--json"],
    ));
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    let next = page["next"].as_str().unwrap().to_string();
    let rest = json_of(&at(
        &edge,
        &["recipients", "list", "--after", &next, "--json"],
    ));
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["next"], Value::Null);
    let all = json_of(&at(
        &edge,
        &["recipients", "list", "--limit", "1", "--all", "--json"],
    ));
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(
        all["items"][0]["contact_phone"],
        Value::Null,
        "no contact in lists"
    );
    let table = ok(&at(&edge, &["recipients", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("NAME"),
        "{table}"
    );
    let name_at = lines[0].find("NAME").unwrap();
    for l in &lines[1..] {
        assert_eq!(l.find("Panti"), Some(name_at), "aligned columns:\n{table}");
    }
    let rid = all["items"][0]["id"].as_str().unwrap().to_string();
    let one = json_of(&at(&edge, &["recipients", "show", &rid, "--json"]));
    assert_eq!(
        one["contact_phone"], "+62 21 555 0000",
        "show has contact: {one}"
    );
    assert!(ok(&at(&edge, &["recipients", "show", &rid])).contains("contact_email"));

    // providers.
    let providers = json_of(&at(&edge, &["providers", "list", "--json"]));
    assert_eq!(providers["items"][0]["id"], provider.as_str());
    let p = json_of(&at(&edge, &["providers", "show", &provider, "--json"]));
    assert_eq!(p["name"], "Toko Roti");

    // surplus: all, by status, near a point, one.
    let listed = json_of(&at(&edge, &["surplus", "list", "--json"]));
    assert_eq!(listed["items"][0]["id"], surplus_id.as_str());
    let offered = json_of(&at(
        &edge,
        &["surplus", "list", "--status", "offered", "--json"],
    ));
    assert_eq!(offered["items"].as_array().unwrap().len(), 1, "{offered}");
    let none = json_of(&at(
        &edge,
        &["surplus", "list", "--status", "delivered", "--json"],
    ));
    assert_eq!(none["items"], json!([]));
    let near = json_of(&at(
        &edge,
        &[
            "surplus",
            "list",
            "--near",
            "-6.2,106.816",
            "--radius-km",
            "5",
            "--json",
        ],
    ));
    assert!(
        near["items"][0]["distance_km"].as_f64().unwrap() < 1.0,
        "{near}"
    );
    let far = ok(&at(&edge, &["surplus", "list", "--near", "-6.2,106.816"]));
    assert!(far.lines().next().unwrap().contains("KM"), "{far}");
    let s = json_of(&at(&edge, &["surplus", "show", &surplus_id, "--json"]));
    assert_eq!(s["status"], "offered");

    // cells.
    let cells = json_of(&at(&edge, &["cells", "list", "--json"]));
    assert_eq!(cells["level"], 9);
    assert_eq!(cells["lease_epoch"], 0, "no hub, no lease yet");
    let token = cells["cells"][0]["token"].as_str().unwrap().to_string();
    assert_eq!(cells["cells"][0]["lease"], "none", "no hub, nothing leased");
    let shown = json_of(&at(&edge, &["cells", "show", &token, "--json"]));
    assert_eq!(shown["token"], token.as_str());
    assert!(ok(&at(&edge, &["cells", "list"])).contains("LEASE"));
    assert_refused(
        &at(&edge, &["cells", "show", "ffff"]),
        &[],
        1,
        "does not own",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_and_unreachable_edges_are_one_line_and_their_code() {
    let edge = start(tempfile::tempdir().unwrap());
    let base = edge.base.as_str();
    // An expired admin token, signed with the edge's own key.
    let past = (time::OffsetDateTime::now_utc().unix_timestamp() - 7_200) * 1_000;
    let expired = edge_node::auth::keys::issue(
        Path::new(&edge.data),
        "pahlawan",
        "pahlawan-edge",
        edge_node::auth::Role::Admin,
        "ops",
        60,
        sync_protocol::Timestamp::from_unix_ms(past),
    )
    .unwrap();
    let ngo = token(
        Path::new(&edge.data),
        edge_node::auth::Role::Ngo,
        &uuid::Uuid::now_v7().to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let not_data = dir.path().to_str().unwrap();
    // (arguments, environment, exit code, what the line mentions)
    type Row<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let table: Vec<Row> = vec![
        (
            vec!["status", "--url", base, "--token", "garbage"],
            vec![],
            4,
            "401",
        ),
        (
            vec!["status", "--url", base],
            vec![("PAHLAWAN_TOKEN", &expired)],
            4,
            "expired",
        ),
        (
            vec!["recipients", "list", "--url", base, "--token", &ngo],
            vec![],
            4,
            "403",
        ),
        (
            vec!["status", "--url", base, "--data-dir", not_data],
            vec![],
            4,
            "no credentials",
        ),
        (
            vec!["status", "--url", "http://127.0.0.1:1", "--token", "t"],
            vec![],
            3,
            "did not answer",
        ),
        (
            vec![
                "surplus",
                "show",
                "not-a-uuid",
                "--url",
                base,
                "--token",
                "t",
            ],
            vec![],
            2,
            "UUID",
        ),
        (
            vec![
                "surplus", "list", "--near", "north", "--url", base, "--token", "t",
            ],
            vec![],
            2,
            "LAT,LON",
        ),
        (
            vec![
                "surplus", "list", "--status", "eaten", "--url", base, "--token", "t",
            ],
            vec![],
            2,
            "--status",
        ),
        (
            vec![
                "recipients",
                "list",
                "--limit",
                "0",
                "--url",
                base,
                "--token",
                "t",
            ],
            vec![],
            2,
            "--limit",
        ),
        (vec!["recipients", "show"], vec![], 2, "required"),
        (
            vec!["surplus", "list", "--radius-km", "3"],
            vec![],
            2,
            "--near",
        ),
        (vec!["nonsense"], vec![], 2, "unrecognized"),
    ];
    for (args, env, code, needle) in table {
        assert_refused(&args, &env, code, needle);
    }
    // An unknown surplus: the edge's 404, exit 1.
    let missing = uuid::Uuid::now_v7().to_string();
    assert_refused(&at(&edge, &["surplus", "show", &missing]), &[], 1, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_import_export_and_the_dead_letter_queue_against_a_real_edge() {
    let edge = start(tempfile::tempdir().unwrap());
    let admin = admin_client(Path::new(&edge.data));
    let provider = seed(&admin, &edge.base, 1).await;
    let dir = tempfile::tempdir().unwrap();

    // CSV import: a bad row is reported with its line number, nothing imported.
    let csv = dir.path().join("banks.csv");
    std::fs::write(
        &csv,
        "name,lat,lon,capacity_kg_per_day,accepted_food_types,is_fallback,contact_phone,contact_email\n\
         Bank A,-6.22,106.83,100,bakery;produce,false,+62 21 555 0001,a@example.org\n\
         Bank B,-95,106.83,100,bakery,false,+62 21 555 0002,b@example.org\n\
         Bank C,-6.23,106.84,100,dairy,no,+62 21 555 0003,c@example.org\n\
         Bank D,48.85,2.35,100,dairy,false,+62 21 555 0004,d@example.org\n\
         Bank E,-6.24,106.85,lots,dairy,false,+62 21 555 0005,e@example.org\n",
    )
    .unwrap();
    let f = csv.to_str().unwrap();
    let (code, _, err) = run(&at(&edge, &["recipients", "import", f]), &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in [
        "3 bad row",
        "line 3",
        "line 5",
        "not own",
        "line 6",
        "nothing imported",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let before = json_of(&at(&edge, &["recipients", "list", "--json"]));
    assert_eq!(
        before["items"].as_array().unwrap().len(),
        1,
        "nothing imported"
    );
    let done = json_of(&at(
        &edge,
        &["recipients", "import", f, "--skip-bad", "--json"],
    ));
    assert_eq!(done["imported"], 2, "{done}");
    assert_eq!(done["skipped"].as_array().unwrap().len(), 3, "{done}");
    let export = ok(&at(&edge, &["recipients", "export"]));
    assert_eq!(export.lines().count(), 4, "header + 3: {export}");
    assert!(
        export.contains("bakery;produce") && export.contains("Bank C"),
        "{export}"
    );

    // add: one provider, one recipient (a recipient needs capacity and food types).
    let added = json_of(&at(
        &edge,
        &[
            "providers",
            "add",
            "--name",
            "Warung",
            "--lat",
            "-6.2",
            "--lon",
            "106.816",
            "--phone",
            "+62 21 555 1234",
            "--email",
            "w@example.org",
            "--json",
        ],
    ));
    assert!(added["id"].is_string(), "{added}");
    assert_refused(
        &at(
            &edge,
            &[
                "recipients",
                "add",
                "--name",
                "X",
                "--lat",
                "-6.2",
                "--lon",
                "106.8",
                "--phone",
                "+62 21 555 1234",
                "--email",
                "x@example.org",
            ],
        ),
        &[],
        2,
        "--capacity-kg-per-day",
    );

    // DLQ: frozen food nobody accepts is dead-lettered.
    let mut body = surplus_body(&provider, 1);
    body["food_type"] = json!("frozen");
    let (s, posted) = post(&admin, format!("{}/api/v1/surplus", edge.base), body)
        .await
        .unwrap();
    assert_eq!(
        (s, posted["status"].as_str()),
        (201, Some("dead_lettered")),
        "{posted}"
    );
    let sid = posted["id"].as_str().unwrap().to_string();
    let listed = json_of(&at(&edge, &["dlq", "list", "--json"]));
    assert_eq!(listed["items"][0]["id"], sid.as_str(), "{listed}");
    assert!(ok(&at(&edge, &["dlq", "list"])).contains(&sid));
    let retried = json_of(&at(&edge, &["dlq", "retry", &sid, "--json"]));
    assert_eq!(
        retried["status"], "dead_lettered",
        "nobody takes frozen food yet: {retried}"
    );
    let freezer = json_of(&at(
        &edge,
        &[
            "recipients",
            "add",
            "--name",
            "Freezer",
            "--lat",
            "-6.201",
            "--lon",
            "106.816",
            "--capacity-kg-per-day",
            "100",
            "--food-types",
            "frozen",
            "--phone",
            "+62 21 555 7777",
            "--email",
            "f@example.org",
            "--json",
        ],
    ));
    let retried = json_of(&at(&edge, &["dlq", "retry", &sid, "--json"]));
    assert_eq!(retried["status"], "offered", "{retried}");
    assert_eq!(retried["offer"]["recipient_id"], freezer["id"]);
    assert_refused(&at(&edge, &["dlq", "retry", &sid]), &[], 1, "409");
    // Resolve by hand: offered to the operator's choice, food type or not.
    let mut body = surplus_body(&provider, 2);
    body["food_type"] = json!("meat_fish");
    let (_, posted) = post(&admin, format!("{}/api/v1/surplus", edge.base), body)
        .await
        .unwrap();
    let sid = posted["id"].as_str().unwrap().to_string();
    let bank = before["items"][0]["id"].as_str().unwrap().to_string();
    let resolved = ok(&at(&edge, &["dlq", "resolve", &sid, "--to", &bank]));
    assert!(
        resolved.contains("offered to") && resolved.contains(&bank),
        "{resolved}"
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_refused(
        &at(&edge, &["dlq", "resolve", &sid, "--to", &unknown]),
        &[],
        1,
        "unknown_recipient",
    );
    assert_refused(&at(&edge, &["dlq", "retry", &unknown]), &[], 1, "404");
    assert_refused(&at(&edge, &["dlq", "resolve", &sid]), &[], 2, "--to");
}

#[test]
fn config_show_names_the_source_of_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    std::fs::write(
        &file,
        "edge_id = \"bandung-1\"\n[backup]\nevery_hours = 24\n",
    )
    .unwrap();
    let (code, out, err) = run(
        &[
            "config",
            "show",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            "/srv/edge",
            "--json",
        ],
        &[("PAHLAWAN_EDGE_MATCHING__RADIUS_KM", "10")],
    );
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let source = |key: &str| {
        shown["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {shown}"))
            .clone()
    };
    for (key, value, from) in [
        ("edge_id", json!("bandung-1"), "file"),
        ("backup.every_hours", json!(24), "file"),
        ("matching.radius_km", json!(10.0), "env"),
        ("data_dir", json!("/srv/edge"), "flag"),
        ("lifecycle.max_offers", json!(3), "default"),
    ] {
        let s = source(key);
        assert_eq!(
            (&s["value"], s["source"].as_str()),
            (&value, Some(from)),
            "{key}: {s}"
        );
    }
    let (code, table, _) = run(&["config", "show"], &[]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("KEY") && table.contains("default"),
        "{table}"
    );
}

/// `cells list --json` of the edge at `edge` with configuration `cfg`.
fn cells_of(edge: &EdgeProc, cfg: &Path) -> Value {
    json_of(&[
        "cells",
        "list",
        "--json",
        "--url",
        &edge.base,
        "--config",
        cfg.to_str().unwrap(),
    ])
}

/// Every cell's lease column, deduplicated.
fn leases(cells: &Value) -> Vec<String> {
    let mut l: Vec<String> = cells["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lease"].as_str().unwrap().to_string())
        .collect();
    l.dedup();
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_and_status_show_the_lease_and_the_sync_as_the_hub_has_them() {
    let db = testkit::pg::fresh_database().await;
    let certs = certs_for_edges(&["jkt-1", "jkt-2"]);
    let port = free_udp_port();
    let work = tempfile::tempdir().unwrap();
    let hub_addr = format!("127.0.0.1:{port}");
    let cfg1 = edge_config(
        work.path(),
        &work.path().join("e1"),
        certs.path(),
        "jkt-1",
        &hub_addr,
    );
    // The hub is not up yet: nothing granted.
    let first = start_edge(&cfg1);
    let cells = cells_of(&first, &cfg1);
    assert_eq!(
        (cells["lease_epoch"].as_u64(), leases(&cells)),
        (Some(0), vec!["pending".to_string()]),
        "{cells}"
    );
    let _hub = start_hub(&db.url, port, certs.path());
    let granted = testkit::eventually("the hub to grant jkt-1 its cells", async || {
        let c = cells_of(&first, &cfg1);
        (c["lease_epoch"].as_u64() > Some(0) && leases(&c) == ["held"]).then_some(c)
    })
    .await;
    assert_eq!(granted["hub_connected"], true, "{granted}");
    // `status` reports the sync with the hub, once there is something to sync.
    seed(&admin_client(&work.path().join("e1")), &first.base, 1).await;
    let status = testkit::eventually("status to show the hub caught up", async || {
        let s = json_of(&[
            "status",
            "--json",
            "--url",
            &first.base,
            "--config",
            cfg1.to_str().unwrap(),
        ]);
        let synced = s["acked_seq"].as_u64() > Some(0) && s["acked_seq"] == s["committed_seq"];
        (synced && s["last_sync_at"].is_string()).then_some(s)
    })
    .await;
    assert_eq!(
        (
            &status["hub_enabled"],
            &status["hub_connected"],
            &status["outbox_backlog"]
        ),
        (&json!(true), &json!(true), &json!(0)),
        "{status}"
    );
    assert_eq!(status["lease_epoch"], granted["lease_epoch"], "{status}");
    let table = ok(&[
        "cells",
        "list",
        "--url",
        &first.base,
        "--config",
        cfg1.to_str().unwrap(),
    ]);
    let epoch = granted["lease_epoch"].to_string();
    assert!(
        table.contains(&format!("lease epoch {epoch}")) && table.contains("held"),
        "{table}"
    );

    // A second edge claiming the same cells is told another edge holds them.
    let cfg2 = edge_config(
        work.path(),
        &work.path().join("e2"),
        certs.path(),
        "jkt-2",
        &hub_addr,
    );
    let second = start_edge(&cfg2);
    testkit::until("jkt-2 to see jkt-1's leases as conflicts", async || {
        leases(&cells_of(&second, &cfg2)) == ["conflict"]
    })
    .await;
    let still = cells_of(&first, &cfg1);
    assert_eq!(leases(&still), ["held"], "jkt-1 keeps its cells: {still}");
    drop((first, second));
}
