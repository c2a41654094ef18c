//! Bad invocations of `pahlawan`: a non-zero exit and one readable line on
//! stderr, never a panic or a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pahlawan"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "off");
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

#[test]
fn bad_invocations_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, _) = run(&["certs", "init", "--dir", d], &[]);
    assert_eq!(code, 0, "the first init works");
    let missing = format!("{d}/missing.toml");
    let bad_toml = format!("{d}/bad.toml");
    std::fs::write(&bad_toml, "edge_id = \"Not Valid\"\n").unwrap();
    // (arguments, environment, what the one line must mention, exit code:
    // 1 failure, 2 usage, 3 not reachable, 4 credentials)
    type Row<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, i32);
    let table: Vec<Row> = vec![
        (
            vec!["certs", "init", "--dir", d],
            vec![],
            "already exists",
            1,
        ),
        (
            vec!["certs", "issue-edge", "--dir", d, "--edge-id", "Bad Id"],
            vec![],
            "--edge-id",
            2,
        ),
        (
            vec![
                "certs",
                "issue-edge",
                "--dir",
                "/nonexistent/dir",
                "--edge-id",
                "ok-1",
            ],
            vec![],
            "ca.key",
            1,
        ),
        (vec!["hub", "run"], vec![], "DATABASE_URL", 1),
        (
            vec![
                "token",
                "issue",
                "--for",
                "hub",
                "--role",
                "ngo",
                "--sub",
                "x",
                "--certs-dir",
                d,
            ],
            vec![],
            "admin or viewer",
            2,
        ),
        (
            vec![
                "token",
                "issue",
                "--for",
                "hub",
                "--role",
                "viewer",
                "--sub",
                "x",
                "--ttl",
                "2h",
                "--certs-dir",
                d,
            ],
            vec![],
            "max_token_lifetime_secs",
            2,
        ),
        (
            vec![
                "token",
                "issue",
                "--for",
                "hub",
                "--role",
                "viewer",
                "--sub",
                "x",
                "--certs-dir",
                "/nonexistent/dir",
            ],
            vec![],
            "no signing key",
            1,
        ),
        (
            vec![
                "hub",
                "login-code",
                "--sub",
                "siti",
                "--certs-dir",
                d,
                "--url",
                "http://127.0.0.1:1",
            ],
            vec![],
            "reaching the hub",
            3,
        ),
        (
            vec![
                "hub",
                "login-code",
                "--sub",
                "siti",
                "--role",
                "owner",
                "--certs-dir",
                d,
            ],
            vec![],
            "admin or viewer",
            2,
        ),
        (
            vec!["edge", "run", "--config", &missing],
            vec![],
            "does not exist",
            1,
        ),
        (
            vec!["edge", "run", "--config", &bad_toml, "--data-dir", d],
            vec![],
            "edge_id",
            1,
        ),
        (
            vec!["edge", "config"],
            vec![("PAHLAWAN_EDGE_MATCHING__RADIUS_KM", "far")],
            "radius_km",
            1,
        ),
        (
            vec!["simulate", "--providers", "0"],
            vec![],
            "--providers",
            2,
        ),
        (vec!["bench-sync"], vec![], "DATABASE_URL", 2),
        (
            vec!["hub", "export", "--before", "2026-09-01", "--to", d],
            vec![],
            "DATABASE_URL",
            1,
        ),
        (
            vec!["hub", "export", "--before", "2026-13-01", "--to", d],
            vec![],
            "YYYY-MM-DD",
            2,
        ),
        (
            vec!["hub", "export", "--before", "2026-09-01", "--to", d],
            vec![(
                "DATABASE_URL",
                "postgres://nobody@127.0.0.1:1/none?sslmode=disable",
            )],
            "connecting to PostgreSQL",
            1,
        ),
        (
            vec!["hub", "export", "--before", "2026-09-01", "--to", d],
            vec![(
                "DATABASE_URL",
                "postgres://db/none?sslmode=verify-everything",
            )],
            "sslmode",
            1,
        ),
        (vec!["recipients", "show"], vec![], "required", 2),
        (
            vec!["status", "--url", "http://127.0.0.1:1", "--token", "t"],
            vec![],
            "did not answer",
            3,
        ),
        (
            vec!["status", "--url", "http://127.0.0.1:1", "--data-dir", d],
            vec![],
            "no credentials",
            4,
        ),
        (
            vec![
                "token",
                "issue",
                "--role",
                "chef",
                "--sub",
                "x",
                "--data-dir",
                d,
            ],
            vec![],
            "--role",
            2,
        ),
    ];
    for (args, env, needle, expected) in table {
        let (code, _, stderr) = run(&args, &env);
        assert_eq!(
            code, expected,
            "{args:?}: the documented exit code ({stderr})"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{args:?} panicked: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr:?}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {stderr:?}");
        assert!(
            lines[0].to_lowercase().contains(&needle.to_lowercase()),
            "{args:?}: {stderr:?} should mention {needle}"
        );
        let body = lines[0].trim_start_matches("error: ");
        let prefix: String = body.chars().take(30).collect();
        assert_eq!(
            body.matches(prefix.as_str()).count(),
            1,
            "{args:?} repeats itself: {stderr:?}"
        );
    }
}

#[test]
fn edge_config_prints_every_setting() {
    let (code, stdout, _) = run(
        &["edge", "config"],
        &[("PAHLAWAN_EDGE_EDGE_ID", "bandung-1")],
    );
    assert_eq!(code, 0);
    for key in [
        "edge_id = \"bandung-1\"",
        "[matching]",
        "radius_km",
        "[lifecycle]",
        "ack_timeout_secs",
        "[store]",
        "[http]",
    ] {
        assert!(stdout.contains(key), "missing {key} in:\n{stdout}");
    }
}

#[test]
fn an_edge_refuses_a_database_written_by_a_newer_binary_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join(edge_node::store::DB_FILE);
    drop(edge_node::store::open_writer(&db).expect("a current database"));
    let newer = edge_node::store::latest_schema() + 1;
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (?1, 'from_a_newer_binary', '2027-01-01T00:00:00Z', '0')",
            [newer],
        )
        .unwrap();
    let (code, _, stderr) = run(
        &[
            "edge",
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(
        last.contains(&format!("schema {newer}, newer than this binary's")),
        "{stderr}"
    );
    // Nothing was migrated or copied.
    let copies = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(edge_node::store::PRE_MIGRATION_PREFIX)
        })
        .count();
    assert_eq!(copies, 0);
}
