//! `GET /metrics` over real HTTP: the exposition is well formed (a strict
//! line-by-line check of the OpenMetrics text format, plus `promtool check
//! metrics` where Prometheus is installed) and the values follow what
//! happened: 2,500 kg delivered reads 2.5 tonnes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use edge_node::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

/// Checks the OpenMetrics text line by line; returns samples by
/// `name{labels}`.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "info", "unknown"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "one TYPE per family"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
        let family = ["_bucket", "_count", "_sum", "_total", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        samples.insert(series.to_string(), v);
    }
    // Histogram buckets are cumulative and +Inf equals the count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (series, v) in &samples {
            if let Some(rest) = series.strip_prefix(&format!("{family}_bucket{{")) {
                let le_at = rest.find("le=\"").expect("le label");
                let le_str = &rest[le_at + 4..];
                let le_str = &le_str[..le_str.find('"').unwrap()];
                let le = if le_str == "+Inf" {
                    f64::INFINITY
                } else {
                    le_str.parse().unwrap()
                };
                let others = format!("{}{}", &rest[..le_at], &rest[le_at + 6 + le_str.len()..]);
                by_series.entry(others).or_default().push((le, *v));
            }
        }
        for (others, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family} {others}: cumulative"
            );
            assert_eq!(
                buckets.last().unwrap().0,
                f64::INFINITY,
                "{family}: +Inf bucket"
            );
        }
    }
    samples
}

async fn scrape(t: &TestEdge) -> (String, BTreeMap<String, f64>) {
    let resp = reqwest::get(format!("{}/metrics", t.base)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "public, like the probes");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().await.unwrap();
    let samples = parse_exposition(&text);
    (text, samples)
}

/// `promtool check metrics`, where Debian's `prometheus` package is installed.
fn promtool(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: the built-in format check ran alone");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // promtool reads the 0.0.4 text format: an OpenMetrics counter family
    // (`x`, samples `x_total`) is linted as "x_total no help text". That lint
    // (exit 3) is the only complaint allowed; a parse error is exit 1.
    let only_counter_lint = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.trim_end().ends_with("_total no help text"));
    assert!(
        out.status.success() || (out.status.code() == Some(3) && only_counter_lint),
        "promtool ({:?}): {said}",
        out.status.code()
    );
}

#[tokio::test]
async fn metrics_follow_what_happened() {
    let t = TestEdge::start().await;
    let (text, before) = scrape(&t).await;
    promtool(&text);
    assert_eq!(before["food_waste_prevented_tons_total"], 0.0);
    assert_eq!(before["matching_engine_saturation_ratio"], 0.0);

    let p = t.provider().await;
    let r = t
        .recipient_with(json!({"lat": -6.21, "lon": 106.82, "capacity_kg_per_day": 5000.0}))
        .await;
    let s = t
        .surplus(&p, json!({"quantity_kg": 2500.0, "food_type": "bakery"}))
        .await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(s["offer"]["recipient_id"], r.as_str());
    for (path, body) in [
        (format!("/offers/{id}/accept"), json!({"recipient_id": r})),
        (format!("/surplus/{id}/pickup"), json!({"recipient_id": r})),
        (
            format!("/surplus/{id}/deliver"),
            json!({"recipient_id": r, "delivered_kg": 2500.0}),
        ),
    ] {
        let (st, b) = t.post(&path, body).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    // A refused request is counted under its own status; a path no route
    // matches under `unmatched`.
    let (st, _) = t.get("/surplus/not-a-uuid").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = t.get("/no/such/route").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (text, after) = scrape(&t).await;
    promtool(&text);
    for family in edge_node::metrics::FAMILIES {
        let base = family.trim_end_matches("_total");
        assert!(text.contains(&format!("# TYPE {base} ")), "{family}");
    }
    assert_eq!(
        after["food_waste_prevented_tons_total"], 2.5,
        "2,500 kg delivered"
    );
    assert_eq!(after["offers_total{outcome=\"made\"}"], 1.0);
    assert_eq!(after["offers_total{outcome=\"accepted\"}"], 1.0);
    assert_eq!(after["offers_total{outcome=\"declined\"}"], 0.0);
    assert_eq!(
        after["surplus_claim_latency_seconds_count"], 1.0,
        "one claim"
    );
    assert_eq!(
        after["http_request_duration_seconds_count{route=\"/api/v1/surplus\",method=\"POST\",status=\"201\"}"],
        1.0
    );
    assert_eq!(
        after["http_request_duration_seconds_count{route=\"/api/v1/surplus/{id}\",method=\"GET\",status=\"404\"}"],
        1.0
    );
    assert_eq!(
        after["http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\",status=\"404\"}"],
        1.0
    );
    assert_eq!(after["dlq_size"], 0.0);
    assert_eq!(after["outbox_backlog_events"], 0.0, "no hub: nothing waits");
    assert_eq!(after["routing_breaker_state"], 0.0, "closed");
    let routes: BTreeSet<&str> = after
        .keys()
        .filter_map(|k| k.split("route=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .collect();
    assert!(
        routes
            .iter()
            .all(|r| r.starts_with('/') || *r == "unmatched"),
        "route templates, never raw paths with ids: {routes:?}"
    );
    assert!(!routes.iter().any(|r| r.contains(id)));
}

#[tokio::test]
async fn a_full_matching_pool_answers_503_and_the_gauge_says_so() {
    let t = TestEdge::start_with(|c| {
        c.matching_pool.workers = 1;
        c.matching_pool.queue = 0;
    })
    .await;
    let p = t.provider().await;
    t.recipient(-6.21, 106.82).await;
    let edge = t.edge.as_ref().unwrap();
    // Hold the only matching slot, as a long match would.
    let slot = edge.matching().enter().await.unwrap();
    let (_, m) = scrape(&t).await;
    assert_eq!(m["matching_engine_saturation_ratio"], 1.0);
    let counts = t.table_counts();
    let provider = t.as_role(Role::Provider, &p);
    for path in ["/surplus"] {
        let resp = provider
            .post(t.url(path))
            .json(&surplus_body(&p))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "busy");
    }
    assert_eq!(t.table_counts(), counts, "nothing was written");
    drop(slot);
    let (_, m) = scrape(&t).await;
    assert_eq!(m["matching_engine_saturation_ratio"], 0.0);
    t.surplus(&p, json!({})).await;
}

#[tokio::test]
async fn the_dead_letter_queue_and_declines_are_counted() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    // Nobody to offer to: the surplus goes to the dead-letter queue.
    let s = t.surplus(&p, json!({})).await;
    assert_eq!(s["status"], "dead_lettered");
    let (_, m) = scrape(&t).await;
    assert_eq!(m["dlq_size"], 1.0);
    // A recipient declines an offer.
    let r = t.recipient(-6.21, 106.82).await;
    let s = t.surplus(&p, json!({})).await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(s["offer"]["recipient_id"], r.as_str());
    let (st, _) = t
        .post(&format!("/offers/{id}/decline"), json!({"recipient_id": r}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, m) = scrape(&t).await;
    assert_eq!(m["offers_total{outcome=\"declined\"}"], 1.0);
    assert_eq!(m["offers_total{outcome=\"made\"}"], 1.0);
    assert_eq!(m["dlq_size"], 2.0, "declined by the only candidate");
}

#[tokio::test]
async fn each_dead_letter_alert_moves_its_kind_by_exactly_one() {
    // No DLQ retries: a surplus nobody can take goes to its cell's fallback
    // recipient at once, or raises "no fallback" when there is none.
    let t = TestEdge::start_with(|c| c.lifecycle.dlq_max_retries = 0).await;
    let p = t.provider().await;
    let alerts = |m: &BTreeMap<String, f64>| {
        (
            m["alerts_total{kind=\"fallback_offered\"}"],
            m["alerts_total{kind=\"no_fallback\"}"],
        )
    };
    let (_, m) = scrape(&t).await;
    assert_eq!(
        alerts(&m),
        (0.0, 0.0),
        "both kinds are exported from the start"
    );
    // No recipient at all: nobody to fall back to.
    let s = t.surplus(&p, json!({})).await;
    assert_eq!(s["status"], "dead_lettered");
    let (_, m) = scrape(&t).await;
    assert_eq!(alerts(&m), (0.0, 1.0), "no fallback");
    // The cell's food bank is too small for a normal offer of 12.5 kg, but
    // daily capacity does not bind the last resort.
    let fallback = t
        .recipient_with(json!({"is_fallback": true, "capacity_kg_per_day": 1.0,
            "lat": -6.2, "lon": 106.816}))
        .await;
    let s = t.surplus(&p, json!({})).await;
    assert_eq!(s["status"], "offered", "{s}");
    assert_eq!(s["offer"]["recipient_id"], fallback.as_str());
    let (_, m) = scrape(&t).await;
    assert_eq!(alerts(&m), (1.0, 1.0), "offered to the fallback");
}
