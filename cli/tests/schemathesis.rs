//! The API contract, proven from outside: schemathesis (PyPI) fuzzes a real
//! `pahlawan edge run` (a temp data dir, an admin token from `pahlawan token
//! issue --role admin`) with every check on and every phase (examples,
//! coverage, fuzzing, and the stateful phase over the document's links), and
//! any finding fails the test. `tests/schemathesis/hooks.py` says which
//! rules depend on the edge's state or clock and how the run treats them.
//! A second run against a document that understates a validator must fail:
//! the harness can see what it is there to see.
//!
//! Schemathesis is found as `$PAHLAWAN_SCHEMATHESIS`, in the virtualenv
//! `scripts/test` installs, or as `st` on `PATH`; under `CI=true` a missing
//! one fails. `PAHLAWAN_SCHEMATHESIS_SEED` and
//! `PAHLAWAN_SCHEMATHESIS_EXAMPLES` override the fixed seed and the examples
//! per operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tools;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The edge's area (south, west, north, east): its cells cover it, and the
/// hooks move schema-valid points into it.
const BOX: [f64; 4] = [-6.75, 106.35, -5.95, 107.25];

/// The endless Server-Sent Events stream is left out: a fuzzer's request to
/// it never ends. `edge-node/tests/sse_and_openapi.rs` tests it.
const NOT_FUZZED: &str = "/api/v1/recipients/{id}/offers/stream";

fn here(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemathesis")
        .join(rel)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A real edge on a free port, its data in `dir`, with an admin token.
struct Served {
    edge: common::EdgeProc,
    token: String,
}

fn serve(dir: &Path) -> Served {
    let data = dir.join("data");
    let config = dir.join("edge.toml");
    // Rate limits out of the way (the admin's via `Proc`'s environment):
    // `ignored_auth` sends refused tokens on purpose, and a refused-token
    // block would answer everything after with 429.
    let toml = format!(
        "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\n[cells]\nbbox = {BOX:?}\n\n\
         [rate_limits]\nfailed_auth_per_minute = 100000000\n",
        data.display()
    );
    std::fs::write(&config, toml).unwrap();
    let edge = common::start_edge(&config);
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(["token", "issue", "--role", "admin", "--sub", "schemathesis"])
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run pahlawan token issue");
    assert!(
        out.status.success(),
        "pahlawan token issue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!token.is_empty(), "a token on stdout");
    Served { edge, token }
}

/// `st run LOCATION` with the project's configuration and hooks, every
/// check on.
fn schemathesis(st: &OsString, dir: &Path, location: &str, token: &str, extra: &[&str]) -> Output {
    let seed = env_or("PAHLAWAN_SCHEMATHESIS_SEED", "1");
    let examples = env_or("PAHLAWAN_SCHEMATHESIS_EXAMPLES", "100");
    let mut args: Vec<String> = [
        "--no-color",
        "--config-file",
        here("schemathesis.toml").to_str().unwrap(),
        "run",
        location,
        "--checks",
        "all",
        "--max-examples",
        &examples,
        "--seed",
        &seed,
        "--exclude-path",
        NOT_FUZZED,
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--header",
    ]
    .map(String::from)
    .into();
    args.push(format!("Authorization: Bearer {token}"));
    args.extend(extra.iter().map(|s| s.to_string()));
    let shown: Vec<&str> = args
        .iter()
        .map(|a| {
            if a.starts_with("Authorization") {
                "Authorization: Bearer …"
            } else {
                a
            }
        })
        .collect();
    eprintln!("$ {} {}", st.to_string_lossy(), shown.join(" "));
    let box_text = BOX.map(|v| v.to_string()).join(",");
    Command::new(st)
        .args(&args)
        .current_dir(dir)
        .env("SCHEMATHESIS_HOOKS", here("hooks.py"))
        .env("PAHLAWAN_ST_BOX", box_text)
        .output()
        .expect("run schemathesis")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The number next to the word `label` in schemathesis' summary:
/// `Scenarios:    139` (after) or `2923 generated, …` (before).
fn count_in(output: &str, label: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == label)?;
        [at + 1, at.wrapping_sub(1)]
            .iter()
            .filter_map(|&k| words.get(k))
            .find_map(|w| w.parse().ok())
    })
}

/// Schemathesis, a temp dir and an edge serving from it; `None` (after a
/// warning) where schemathesis is missing outside CI.
fn set_up(check: &str) -> Option<(OsString, tempfile::TempDir, Served)> {
    let st = tools::outside_tool(
        tools::schemathesis_program(),
        check,
        "scripts/test installs it into a virtualenv (pip install schemathesis)",
    )?;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    Some((st, dir, served))
}

#[test]
fn schemathesis_finds_nothing_against_a_real_edge() {
    let Some((st, dir, served)) = set_up("the schemathesis run against a real edge") else {
        return;
    };
    let spec = format!("{}/api/v1/openapi.json", served.edge.base);
    let phases = "examples,coverage,fuzzing,stateful";
    let out = schemathesis(&st, dir.path(), &spec, &served.token, &["--phases", phases]);
    let output = text(&out);
    eprintln!("{output}");
    assert!(
        out.status.success(),
        "schemathesis reported findings against the edge (exit {}); see its report above",
        out.status
    );
    // The run did what it claims: cases generated, the stateful phase ran
    // scenarios over the links.
    let generated = count_in(&output, "generated,").unwrap_or(0);
    let scenarios = count_in(&output, "Scenarios:").unwrap_or(0);
    let operations = count_in(&output, "Tested:").unwrap_or(0);
    assert!(generated > 0, "schemathesis generated no test case");
    assert!(scenarios > 0, "the stateful phase ran no scenario");
    assert!(
        operations >= 18,
        "schemathesis tested only {operations} operations"
    );
    eprintln!(
        "schemathesis: {operations} operations, {generated} test cases, {scenarios} stateful scenarios, no finding"
    );
}

#[test]
fn the_summary_counts_are_read() {
    let summary = "Missing test data: the API mostly rejected generated data\n  Tested: 18\n\
                   \x20    Scenarios:    139\n  2923 generated, 2923 passed, 22 skipped\n";
    assert_eq!(count_in(summary, "generated,"), Some(2923));
    assert_eq!(count_in(summary, "Scenarios:"), Some(139));
    assert_eq!(count_in(summary, "Tested:"), Some(18));
    assert_eq!(count_in(summary, "Failures:"), None);
}

/// A copy of the edge's document with the name's pattern and length taken
/// out: schemathesis must now report a schema-valid name the edge refuses.
#[test]
fn schemathesis_reports_a_document_that_understates_a_validator() {
    let Some((st, dir, served)) = set_up("the schemathesis negative control") else {
        return;
    };
    let spec = format!("{}/api/v1/openapi.json", served.edge.base);
    let mut doc = get_json(&spec);
    let name = doc["components"]["schemas"]["Name"]
        .as_object_mut()
        .unwrap();
    for k in ["pattern", "minLength", "maxLength"] {
        assert!(name.remove(k).is_some(), "the Name schema states its {k}");
    }
    let file = dir.path().join("understated.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = schemathesis(
        &st,
        dir.path(),
        file.to_str().unwrap(),
        &served.token,
        &[
            "--url",
            &format!("{}/", served.edge.base),
            "--phases",
            "coverage,fuzzing",
            "--include-path",
            "/api/v1/providers",
            "--include-method",
            "POST",
            "--max-failures",
            "1",
        ],
    );
    let output = text(&out);
    assert!(
        !out.status.success() && output.contains("ST202") && output.contains("invalid_name"),
        "schemathesis did not report the understated name rule:\n{output}"
    );
}

/// `GET url` as JSON.
fn get_json(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .expect("the document is JSON")
    })
}

/// The hub's API contract from outside: a real `pahlawan hub run` on a
/// throwaway PostgreSQL, an admin hub token, every check, the examples,
/// coverage and fuzzing phases over its OpenAPI document (it has no links
/// for a stateful phase). Sign-in (`/dashboard/session`) is fuzzed too: its
/// refusals and the per-address limit are documented statuses.
#[test]
fn schemathesis_finds_nothing_against_a_real_hub() {
    let Some(st) = tools::outside_tool(
        tools::schemathesis_program(),
        "the schemathesis run against a real hub",
        "scripts/test installs it into a virtualenv (pip install schemathesis)",
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(testkit::pg::fresh_database());
    let certs = common::certs_for_edges(&[]);
    let hub = common::start_hub(&db.url, common::free_udp_port(), certs.path());
    let http = hub
        .banner
        .rsplit("http on ")
        .next()
        .expect("the hub's banner names its HTTP address")
        .to_string();
    let token = common::hub_token(certs.path(), cloud_hub::auth::HubRole::Admin);
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{http}/api/v1/openapi.json");
    let out = schemathesis(
        &st,
        dir.path(),
        &spec,
        &token,
        &["--phases", "examples,coverage,fuzzing"],
    );
    let output = text(&out);
    eprintln!("{output}");
    assert!(
        out.status.success(),
        "schemathesis reported findings against the hub (exit {}); see its report above",
        out.status
    );
    let generated = count_in(&output, "generated,").unwrap_or(0);
    let operations = count_in(&output, "Tested:").unwrap_or(0);
    assert!(generated > 0, "schemathesis generated no test case");
    assert!(
        operations >= 9,
        "schemathesis tested only {operations} operations of the hub"
    );
    drop(hub);
    drop(rt);
}
