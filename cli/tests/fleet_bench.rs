//! `pahlawan bench-fleet` end to end on a small history (2,000 events, a
//! second per endpoint) against the test PostgreSQL (or Citus, with
//! `PAHLAWAN_TEST_DB=citus`): every endpoint of the report answered
//! requests and none failed, the conditional poll got its 304s, and the
//! plans file holds an `EXPLAIN ANALYZE` of every statement. A smoke test
//! of the benchmark: no figure is asserted (the figures are BENCHMARKS.md's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use testkit::pg;

/// The report's rows, as the name column says them.
const ROWS: [&str; 9] = [
    "healthz",
    "impact",
    "impact, one region",
    "daily",
    "daily, one region",
    "edges",
    "trouble",
    "cells",
    "impact, If-None-Match",
];

/// Every statement the fleet endpoints run.
const STATEMENTS: [&str; 11] = [
    "SQL_IMPACT_BY_EDGE",
    "SQL_REGION_IMPACT_BY_EDGE",
    "SQL_DAILY",
    "SQL_REGION_DAILY",
    "SQL_FLEET_EDGES",
    "SQL_FENCED_RECENTLY",
    "SQL_TROUBLE_SURPLUS",
    "SQL_FALLBACK_ALERTS",
    "SQL_UNANSWERED",
    "SQL_RECIPIENT_NAMES",
    "SQL_CELL_MAP",
];

/// The cells of the endpoint table's row named `name`.
fn row<'a>(report: &'a str, name: &str) -> Vec<&'a str> {
    report
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find(|cells| {
            cells.len() > 10 && cells[1].split(" `").next() == Some(name) && cells[1].contains('`')
        })
        .unwrap_or_else(|| panic!("no row {name:?} in the report:\n{report}"))
}

#[tokio::test]
async fn bench_fleet_answers_every_endpoint_without_errors_and_explains_every_statement() {
    let db = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let plans = dir.path().join("plans.txt");
    let url = db.url.clone();
    let plans_arg = plans.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pahlawan"))
            .args([
                "bench-fleet",
                "--events",
                "2000",
                "--duration-secs",
                "1",
                "--warmup-secs",
                "0",
                "--connections",
                "4",
                "--label",
                "smoke",
            ])
            .arg("--database-url")
            .arg(url)
            .arg("--explain-out")
            .arg(plans_arg)
            .output()
            .expect("run pahlawan bench-fleet")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench-fleet failed:\n{}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ROWS {
        let cells = row(&report, name);
        let answered: u64 = cells[7]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}: requests {:?}", cells[7]));
        assert!(answered > 0, "{name} answered no request:\n{report}");
        assert_eq!(cells[8], "0", "{name} had errors:\n{report}");
    }
    let conditional = row(&report, "impact, If-None-Match");
    assert!(
        conditional[7].contains("× 304)"),
        "the conditional poll got no 304: {conditional:?}"
    );
    let events: u64 = report
        .split("Data: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in:\n{report}"));
    assert!(events >= 2_000, "{events} events filled");

    let text = std::fs::read_to_string(&plans).unwrap();
    let sections: Vec<&str> = text.split("\n==== ").skip(1).collect();
    for name in STATEMENTS {
        let section = sections
            .iter()
            .find(|s| {
                s.lines()
                    .next()
                    .is_some_and(|h| h.ends_with(&format!("— {name}")))
            })
            .unwrap_or_else(|| panic!("no plan of {name} in:\n{text}"));
        assert!(
            section.contains("Execution Time:"),
            "{name}: not an EXPLAIN ANALYZE:\n{section}"
        );
    }
    assert_eq!(sections.len(), STATEMENTS.len(), "one plan per statement");
}
