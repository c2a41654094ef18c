//! The deployment examples under `deploy/` stay true to the code: every
//! metric the Grafana dashboard and the hub's HorizontalPodAutoscaler name is
//! one a running edge or hub exports on `GET /metrics`; the example edge
//! configuration loads and validates; the systemd unit runs that edge and
//! passes `systemd-analyze verify`; the Kubernetes manifests agree with the
//! hub's configuration on ports and on where the database URL comes from.
//! `promtool` and `systemd-analyze` check what only they can; a missing one
//! fails its test under `CI=true` (`scripts/test` installs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use cloud_hub::HubConfig;
use common::{admin_client, post, seed, surplus_body, sync_status};
use edge_node::{Edge, EdgeConfig, StartOptions};
use serde_json::{Value, json};
use testkit::{pg, until};

/// The metrics issue 6 asks the dashboard to show; the dashboard must name
/// each of them (as a family: histograms without `_bucket`/`_count`/`_sum`).
const DASHBOARD_MUST_SHOW: [&str; 12] = [
    "surplus_claim_latency_seconds",
    "food_waste_prevented_tons_total",
    "matching_engine_saturation_ratio",
    "http_request_duration_seconds",
    "outbox_backlog_events",
    "sync_lag_seconds",
    "dlq_size",
    "offers_total",
    "routing_breaker_state",
    "hub_events_applied_total",
    "hub_apply_duration_seconds",
    "hub_sessions_open",
];

/// Labels Prometheus attaches to every scraped series (not the exporter's).
const TARGET_LABELS: [&str; 3] = ["job", "instance", "__name__"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(rel: &str) -> String {
    let p = deploy_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// PromQL: which metrics, label matchers and grouping labels an expression uses.

/// PromQL functions (Prometheus 3) and Grafana's `label_values`.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "info",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
    // Aggregation operators.
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "limit_ratio",
    "limitk",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
    // Grafana's template variable query.
    "label_values",
];

/// Keywords followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords and literals that are neither metrics nor labels (PromQL
/// keywords are case-insensitive).
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "start", "end", "inf", "nan",
];

/// What one or more PromQL expressions reference.
#[derive(Debug, Default, Clone, PartialEq)]
struct PromRefs {
    /// Metric names as written (`foo_bucket`, `bar_total`).
    metrics: BTreeSet<String>,
    /// `(metric, label, value)` for each matcher in a selector's braces.
    matchers: Vec<(String, String, String)>,
    /// Labels named in `by`, `without`, `on`, `ignoring`, `group_left`,
    /// `group_right` and Grafana's `label_values(…, label)`.
    grouping: BTreeSet<String>,
    /// Identifiers called like functions that PromQL does not have.
    unknown_functions: BTreeSet<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Skips a string literal starting at `b[i]`; returns the index after it
/// and its (unescaped) content.
fn string_at(b: &[char], mut i: usize) -> (usize, String) {
    let quote = b[i];
    i += 1;
    let mut s = String::new();
    while i < b.len() && b[i] != quote {
        if b[i] == '\\' && quote != '`' && i + 1 < b.len() {
            i += 1;
        }
        s.push(b[i]);
        i += 1;
    }
    (i + 1, s)
}

fn skip_ws(b: &[char], mut i: usize) -> usize {
    while i < b.len() && b[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Label names in `( a, b, "c" )` starting at `b[i] == '('`.
fn label_list(b: &[char], mut i: usize, out: &mut BTreeSet<String>) -> usize {
    i += 1;
    let mut cur = String::new();
    while i < b.len() && b[i] != ')' {
        match b[i] {
            '"' | '\'' | '`' => {
                let (next, s) = string_at(b, i);
                cur = s;
                i = next;
                continue;
            }
            ',' if !cur.is_empty() => {
                out.insert(std::mem::take(&mut cur));
            }
            c if is_ident_char(c) => cur.push(c),
            _ => {}
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.insert(cur);
    }
    i + 1
}

/// The matchers in `{ l op "v", … }` starting at `b[i] == '{'`.
fn matchers_at(b: &[char], mut i: usize) -> (usize, Vec<(String, String)>) {
    i += 1;
    let mut out = Vec::new();
    loop {
        i = skip_ws(b, i);
        while i < b.len() && (b[i] == ',' || b[i].is_whitespace()) {
            i += 1;
        }
        if i >= b.len() || b[i] == '}' {
            return (i + 1, out);
        }
        let label = if matches!(b[i], '"' | '\'' | '`') {
            let (next, s) = string_at(b, i);
            i = next;
            s
        } else {
            let start = i;
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
            if i == start {
                i += 1; // not a matcher: step over it
                continue;
            }
            b[start..i].iter().collect()
        };
        i = skip_ws(b, i);
        while i < b.len() && matches!(b[i], '=' | '!' | '~') {
            i += 1;
        }
        i = skip_ws(b, i);
        if i < b.len() && matches!(b[i], '"' | '\'' | '`') {
            let (next, value) = string_at(b, i);
            i = next;
            out.push((label, value));
        } else {
            // A bare quoted metric name (`{"my.metric"}`) has no operator.
            out.push((label, String::new()));
        }
    }
}

/// Scans one PromQL expression (Grafana variables allowed).
fn scan_promql(expr: &str, refs: &mut PromRefs) {
    let b: Vec<char> = expr.chars().collect();
    let mut i = 0;
    // The metric whose selector braces may follow.
    let mut selector_of: Option<String> = None;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if matches!(c, '"' | '\'' | '`') {
            i = string_at(&b, i).0;
            selector_of = None;
            continue;
        }
        if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '$' {
            // Grafana: $var, ${var}, ${var:fmt}, $__rate_interval.
            i += 1;
            if i < b.len() && b[i] == '{' {
                while i < b.len() && b[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
            }
            selector_of = None;
            continue;
        }
        if c == '[' {
            // A range or subquery: durations and variables only.
            while i < b.len() && b[i] != ']' {
                i += 1;
            }
            i += 1;
            selector_of = None;
            continue;
        }
        if c == '{' {
            let (next, ms) = matchers_at(&b, i);
            for (label, value) in ms {
                let metric = if label == "__name__" {
                    refs.metrics.insert(value.clone());
                    Some(value.clone())
                } else {
                    selector_of.clone()
                };
                match metric {
                    Some(m) if label != "__name__" => refs.matchers.push((m, label, value)),
                    Some(_) => {}
                    None if value.is_empty() => {
                        refs.metrics.insert(label); // {"metric.name"}
                    }
                    None => refs.matchers.push((String::new(), label, value)),
                }
            }
            i = next;
            selector_of = None;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or a duration: 0.95, 1e3, 0x1f, 5m, 1h30m.
            while i < b.len() && (is_ident_char(b[i]) || b[i] == '.') {
                let exp = matches!(b[i], 'e' | 'E');
                i += 1;
                if exp && i < b.len() && matches!(b[i], '+' | '-') {
                    i += 1;
                }
            }
            selector_of = None;
            continue;
        }
        if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
            let ident: String = b[start..i].iter().collect();
            let lower = ident.to_ascii_lowercase();
            let next = skip_ws(&b, i);
            let called = next < b.len() && b[next] == '(';
            selector_of = None;
            if GROUPING.contains(&lower.as_str()) {
                if called {
                    i = label_list(&b, next, &mut refs.grouping);
                }
            } else if KEYWORDS.contains(&lower.as_str()) {
            } else if called || FUNCTIONS.contains(&ident.as_str()) {
                if !FUNCTIONS.contains(&ident.as_str()) {
                    refs.unknown_functions.insert(ident);
                }
            } else {
                refs.metrics.insert(ident.clone());
                selector_of = Some(ident);
            }
            continue;
        }
        // Operators, parentheses, commas, `@`.
        selector_of = None;
        i += 1;
    }
}

/// Grafana's `label_values(selector, label)` / `label_values(label)`, or
/// plain PromQL.
fn scan_variable_query(q: &str, refs: &mut PromRefs) {
    let t = q.trim();
    let Some(inner) = t
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    else {
        scan_promql(t, refs);
        return;
    };
    // The last comma outside braces and strings separates the label.
    let (mut depth, mut quote, mut split) = (0i32, None, None);
    for (k, ch) in inner.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(ch),
            (None, '{' | '(' | '[') => depth += 1,
            (None, '}' | ')' | ']') => depth -= 1,
            (None, ',') if depth == 0 => split = Some(k),
            _ => {}
        }
    }
    match split {
        Some(k) => {
            scan_promql(&inner[..k], refs);
            refs.grouping.insert(inner[k + 1..].trim().to_string());
        }
        None => {
            refs.grouping.insert(inner.trim().to_string());
        }
    }
}

/// `foo_bucket` → `foo`, so a histogram is checked as its family.
fn family_of(name: &str) -> &str {
    ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[test]
fn promql_scanning_keeps_metrics_and_drops_functions_labels_and_variables() {
    let mut r = PromRefs::default();
    scan_promql(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{job=~"$job", status!~"5.."}[$__rate_interval])))
           / ignoring (status) group_left sum without(instance) (irate(foo:bar_total [5m] offset 1h)) > bool 1e-3
           and on(instance) up{__name__="x"} unless absent(nope) or vector(1) * Inf + NaN
           # a comment naming not_a_metric
           + sum(rate(x_count{le=~"1(\\.0)?"}[${interval}]))"#,
        &mut r,
    );
    let metrics: Vec<_> = r.metrics.iter().map(String::as_str).collect();
    assert_eq!(
        metrics,
        [
            "foo:bar_total",
            "http_request_duration_seconds_bucket",
            "nope",
            "up",
            "x",
            "x_count"
        ]
    );
    let grouping: Vec<_> = r.grouping.iter().map(String::as_str).collect();
    assert_eq!(grouping, ["instance", "le", "route", "status"]);
    assert!(r.matchers.contains(&(
        "http_request_duration_seconds_bucket".into(),
        "status".into(),
        "5..".into()
    )));
    assert!(
        r.matchers
            .contains(&("x_count".into(), "le".into(), r"1(\.0)?".into()))
    );
    assert!(r.unknown_functions.is_empty(), "{:?}", r.unknown_functions);

    let mut r = PromRefs::default();
    scan_promql("histogram_quantil(0.9, a)", &mut r);
    assert!(r.unknown_functions.contains("histogram_quantil"));

    let mut r = PromRefs::default();
    scan_variable_query("label_values(hub_sessions_open{x=\"a,b\"}, job)", &mut r);
    assert_eq!(r.metrics.iter().collect::<Vec<_>>(), ["hub_sessions_open"]);
    assert_eq!(r.grouping.iter().collect::<Vec<_>>(), ["job"]);

    assert_eq!(family_of("a_bucket"), "a");
    assert_eq!(family_of("a_total"), "a_total");
}

// ---------------------------------------------------------------------------
// The dashboard.

/// Where a name is referenced: `"<file>: <panel title>"`.
type Sites = BTreeMap<String, BTreeSet<String>>;

#[derive(Debug, Default)]
struct DeployRefs {
    refs: PromRefs,
    /// Metric name (as written) → where.
    sites: Sites,
    /// `(metric, label, value)` of each selector matcher → where.
    matcher_sites: BTreeMap<(String, String, String), BTreeSet<String>>,
}

impl DeployRefs {
    fn add(&mut self, site: &str, f: impl FnOnce(&mut PromRefs)) {
        let mut one = PromRefs::default();
        f(&mut one);
        for m in &one.metrics {
            self.sites
                .entry(m.clone())
                .or_default()
                .insert(site.to_string());
        }
        for m in &one.matchers {
            self.matcher_sites
                .entry(m.clone())
                .or_default()
                .insert(site.to_string());
        }
        self.refs.metrics.extend(one.metrics);
        self.refs.matchers.extend(one.matchers);
        self.refs.grouping.extend(one.grouping);
        self.refs.unknown_functions.extend(one.unknown_functions);
    }
}

/// Every `expr` under the panels, with the title of the panel holding it.
fn panel_exprs(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            let title = o.get("title").and_then(Value::as_str).unwrap_or(title);
            if let Some(Value::String(e)) = o.get("expr") {
                out.push((title.to_string(), e.clone()));
            }
            for (k, child) in o {
                if k != "templating" {
                    panel_exprs(child, title, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| panel_exprs(c, title, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read("grafana/pahlawan.json")).expect("the dashboard is JSON")
}

/// Checks the dashboard's shape and returns what its queries reference.
fn dashboard_refs(d: &Value, into: &mut DeployRefs) {
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion ≥ 36"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(
        ds["query"], "prometheus",
        "a Prometheus datasource variable"
    );
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .or_else(|| v["definition"].as_str())
            .expect("a variable query");
        let site = format!("grafana/pahlawan.json: variable ${}", v["name"]);
        into.add(&site, |r| scan_variable_query(q, r));
    }

    let mut ids = BTreeSet::new();
    let mut stack: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    let mut queried = 0;
    while let Some(p) = stack.pop() {
        assert!(
            ids.insert(p["id"].as_u64().expect("a panel id")),
            "duplicate panel id {}",
            p["id"]
        );
        if p["type"] == "row" {
            stack.extend(p["panels"].as_array().into_iter().flatten());
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?");
        assert_eq!(
            p["datasource"]["uid"], ds_ref,
            "panel {title:?} uses the datasource variable"
        );
        let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "panel {title:?} has queries");
        for t in targets {
            let e = t["expr"].as_str().unwrap_or("");
            assert!(!e.trim().is_empty(), "panel {title:?}: an empty query");
            assert_eq!(t["datasource"]["uid"], ds_ref, "panel {title:?}");
            queried += 1;
        }
    }
    assert!(queried >= DASHBOARD_MUST_SHOW.len(), "{queried} queries");

    let mut exprs = Vec::new();
    panel_exprs(&d["panels"], "?", &mut exprs);
    for (title, e) in exprs {
        let site = format!("grafana/pahlawan.json: panel {title:?}");
        into.add(&site, |r| scan_promql(&e, r));
    }
}

#[test]
fn the_dashboard_shows_every_metric_of_issue_6_with_valid_promql() {
    let mut refs = DeployRefs::default();
    dashboard_refs(&dashboard(), &mut refs);
    assert!(
        refs.refs.unknown_functions.is_empty(),
        "not PromQL functions: {:?}",
        refs.refs.unknown_functions
    );
    let families: BTreeSet<&str> = refs.refs.metrics.iter().map(|m| family_of(m)).collect();
    let missing: Vec<_> = DASHBOARD_MUST_SHOW
        .iter()
        .filter(|m| !families.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard does not show {missing:?}"
    );
    // `histogram_quantile` needs buckets: each histogram is used through them.
    for h in [
        "surplus_claim_latency_seconds",
        "http_request_duration_seconds",
        "hub_apply_duration_seconds",
    ] {
        assert!(
            refs.refs.metrics.contains(&format!("{h}_bucket")),
            "{h} is read through {h}_bucket"
        );
    }
}

/// Grafana's variables replaced by what Prometheus would see: `$__…`
/// intervals by a duration, the others by a plain value.
fn without_variables(expr: &str) -> String {
    let b: Vec<char> = expr.chars().collect();
    let (mut out, mut i) = (String::new(), 0);
    while i < b.len() {
        if b[i] != '$' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let start = i + 1;
        i = start;
        if b.get(i) == Some(&'{') {
            while i < b.len() && b[i] != '}' {
                i += 1;
            }
            i += 1;
        } else {
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
        }
        let name: String = b[start..i.min(b.len())].iter().collect();
        out.push_str(if name.trim_start_matches('{').starts_with("__") {
            "5m"
        } else {
            "x"
        });
    }
    out
}

#[test]
fn a_missing_tool_fails_its_check_under_ci_and_skips_it_loudly_elsewhere() {
    let problem = tools::probe("pahlawan-no-such-tool".into()).expect_err("no such program");
    assert!(problem.contains("pahlawan-no-such-tool"), "{problem}");
    assert!(tools::missing("a check", &problem, "install it", false).is_none());
    let under_ci =
        std::panic::catch_unwind(|| tools::missing("a check", &problem, "install it", true));
    let message = under_ci.expect_err("a missing tool fails under CI");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("a check") && message.contains("install it"),
        "{message}"
    );
    assert!(
        tools::probe("true".into()).is_ok(),
        "a tool that runs is found"
    );
}

/// Prometheus' own parser: every panel query as a recording rule for
/// `promtool check rules`.
#[test]
fn promtool_parses_every_dashboard_query() {
    let Some(promtool) = tools::outside_tool(
        "promtool",
        "the PromQL syntax check of the dashboard",
        "install Debian's `prometheus` package (scripts/test does)",
    ) else {
        return;
    };
    let mut exprs = Vec::new();
    panel_exprs(&dashboard()["panels"], "?", &mut exprs);
    assert!(!exprs.is_empty());
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(k, (_, e))| json!({"record": format!("dashboard:query{k}"), "expr": without_variables(e)}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml"); // JSON is YAML
    let check_rules = |group: &str, rules: Value| {
        let doc = json!({"groups": [{"name": group, "rules": rules}]});
        std::fs::write(&file, doc.to_string()).unwrap();
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .expect("run promtool")
    };
    let out = check_rules("dashboard", Value::Array(rules));
    assert!(
        out.status.success(),
        "promtool check rules on the dashboard's queries:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same check refuses a broken query: it is not a no-op.
    let refused = check_rules(
        "broken",
        json!([{"record": "dashboard:broken", "expr": "sum(rate(http_request_duration_seconds_bucket[5m])"}]),
    );
    assert!(
        !refused.status.success(),
        "promtool accepted an unbalanced query"
    );
    assert_eq!(
        without_variables(r#"rate(x{job=~"$edge_job"}[$__rate_interval]) / ${v}"#),
        r#"rate(x{job=~"x"}[5m]) / x"#
    );
}

// ---------------------------------------------------------------------------
// YAML by text: documents, kinds, the HPA's metric names, block scalars.

fn yaml_docs(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().unwrap();
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
    });
    docs
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The value of a top-level (unindented) `key: value` in one document.
fn top_value<'a>(doc: &'a str, key: &str) -> Option<&'a str> {
    doc.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().trim_matches('"'))
    })
}

/// `name:` values nested under each `metric:` key.
fn metric_names(doc: &str) -> Vec<String> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for (k, l) in lines.iter().enumerate() {
        if l.trim() != "metric:" {
            continue;
        }
        let base = indent(l);
        for next in &lines[k + 1..] {
            if next.trim().is_empty() || next.trim_start().starts_with('#') {
                continue;
            }
            if indent(next) <= base {
                break;
            }
            if let Some(v) = next.trim().strip_prefix("name:") {
                out.push(v.trim().trim_matches(['"', '\'']).to_string());
            }
        }
    }
    out
}

/// The content of `key: |` (a literal block scalar), dedented.
fn block_scalar(doc: &str, key: &str) -> Option<String> {
    let lines: Vec<&str> = doc.lines().collect();
    let k = lines.iter().position(|l| l.trim() == format!("{key}: |"))?;
    let base = indent(lines[k]);
    let body: Vec<&str> = lines[k + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .copied()
        .collect();
    let cut = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()?;
    Some(
        body.iter()
            .map(|l| l.get(cut..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn hub_yaml() -> Vec<String> {
    yaml_docs(&read("kubernetes/hub.yaml"))
}

fn doc_of_kind(docs: &[String], kind: &str) -> String {
    docs.iter()
        .find(|d| top_value(d, "kind") == Some(kind))
        .unwrap_or_else(|| panic!("hub.yaml has no {kind}"))
        .clone()
}

fn hpa_refs(into: &mut DeployRefs) {
    let hpa = doc_of_kind(&hub_yaml(), "HorizontalPodAutoscaler");
    let names = metric_names(&hpa);
    assert!(!names.is_empty(), "the HPA names a metric");
    for n in names {
        into.add("kubernetes/hub.yaml: HorizontalPodAutoscaler", |r| {
            r.metrics.insert(n);
        });
    }
}

/// Series Prometheus makes itself for every target, which no scrape holds.
const SYNTHETIC_SERIES: [&str; 1] = ["up"];

/// Each alerting rule's `expr` in `prometheus/alerts.yml` (written one
/// line each), with the alert's name.
fn alert_rules() -> Vec<(String, String)> {
    let text = read("prometheus/alerts.yml");
    let mut rules = Vec::new();
    let mut alert = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            assert!(alert.is_none(), "alert {alert:?} has no one-line expr");
            alert = Some(name.trim().to_string());
        } else if let Some(expr) = line.strip_prefix("expr:") {
            let name = alert.take().expect("an expr belongs to an alert");
            assert!(!expr.trim().is_empty(), "{name}: expr on one line");
            rules.push((name, expr.trim().to_string()));
        }
    }
    assert!(alert.is_none(), "alert {alert:?} has no expr");
    rules
}

fn alert_rule_refs(into: &mut DeployRefs) {
    let rules = alert_rules();
    assert!(rules.len() >= 10, "{} alerting rules", rules.len());
    for (name, expr) in rules {
        into.add(&format!("prometheus/alerts.yml: {name}"), |r| {
            scan_promql(&expr, r);
            for s in SYNTHETIC_SERIES {
                r.metrics.remove(s);
                r.matchers.retain(|(m, _, _)| m != s);
            }
        });
    }
}

/// The alerting rules parse (`promtool check rules`), their unit tests pass
/// (`promtool test rules`: each alert fires on its series, at its
/// threshold and after its `for`, with its labels and annotations, and not
/// on the others), and the same tests fail on rules with a threshold moved
/// — they test something. The rules name only exported metrics: see
/// `every_metric_the_deploy_examples_name_is_exported`.
#[test]
fn promtool_checks_and_unit_tests_the_alerting_rules() {
    let Some(promtool) = tools::outside_tool(
        "promtool",
        "the alerting rules' check and unit tests",
        "install Debian's `prometheus` package (scripts/test does)",
    ) else {
        return;
    };
    let dir = deploy_dir().join("prometheus");
    let run = |dir: &Path, args: &[&str]| {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run promtool");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(&dir, &["check", "rules", "alerts.yml"]);
    assert!(ok, "promtool check rules alerts.yml:\n{text}");
    let rules = alert_rules().len();
    assert!(
        text.contains(&format!("{rules} rules found")),
        "promtool found other rules than the {rules} alerts: {text}"
    );
    let (ok, text) = run(&dir, &["test", "rules", "alerts.test.yml"]);
    assert!(ok, "promtool test rules alerts.test.yml:\n{text}");

    // Moved thresholds and a shorter `for` must each fail the unit tests.
    let rules_text = read("prometheus/alerts.yml");
    let tests_text = read("prometheus/alerts.test.yml");
    for (from, to) in [
        ("dlq_size > 10", "dlq_size > 20"),
        ("sync_lag_seconds > 600", "sync_lag_seconds > 60"),
        ("for: 2m", "for: 5m"),
        ("kind=\"no_fallback\"", "kind=\"fallback_offered\""),
    ] {
        assert!(rules_text.contains(from), "alerts.yml has {from:?}");
        let mutant = tempfile::tempdir().unwrap();
        std::fs::write(
            mutant.path().join("alerts.yml"),
            rules_text.replacen(from, to, 1),
        )
        .unwrap();
        std::fs::write(mutant.path().join("alerts.test.yml"), &tests_text).unwrap();
        let (ok, _) = run(mutant.path(), &["test", "rules", "alerts.test.yml"]);
        assert!(
            !ok,
            "the unit tests still pass with {from:?} changed to {to:?}"
        );
    }
}

#[test]
fn the_hub_manifests_agree_with_the_hub_configuration() {
    let docs = hub_yaml();
    for d in &docs {
        assert!(
            top_value(d, "apiVersion").is_some() && top_value(d, "kind").is_some(),
            "every document has apiVersion and kind:\n{d}"
        );
        assert!(
            !d.lines().any(|l| l.trim_start().starts_with("namespace:")),
            "no namespace: the operator picks it"
        );
    }
    let hpa = doc_of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(top_value(&hpa, "apiVersion"), Some("autoscaling/v2"));
    assert_eq!(metric_names(&hpa), ["matching_engine_saturation_ratio"]);
    for needle in [
        "type: Pods",
        "averageValue: \"0.7\"",
        "name: cpu",
        "averageUtilization: 70",
        "scaleUp:",
        "type: Percent",
        "value: 100",
        "value: 50",
        "periodSeconds: 60",
        "selectPolicy: Max",
        "scaleDown:",
        "stabilizationWindowSeconds: 300",
        "minReplicas:",
        "maxReplicas:",
    ] {
        assert!(hpa.contains(needle), "the HPA has {needle:?}");
    }

    // The hub.toml in the ConfigMap is a valid hub configuration, and the
    // ports everything else names are the ones it listens on.
    let cm = doc_of_kind(&docs, "ConfigMap");
    let toml = block_scalar(&cm, "hub.toml").expect("a hub.toml in the ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(&file, &toml).unwrap();
    let mut cfg = HubConfig::load(Some(&file)).expect("the ConfigMap's hub.toml loads");
    // The database URL (a password) comes from the Secret, through
    // $DATABASE_URL, which the hub reads only when no configuration layer
    // names a database: so the ConfigMap must name none.
    let table: toml::Table = toml.parse().expect("the ConfigMap's hub.toml is TOML");
    assert!(
        !table.contains_key("database_url"),
        "the ConfigMap's hub.toml names a database; it must come from the Secret: {table:?}"
    );
    assert!(
        !cm.contains("postgres://") && !cm.contains("postgresql://"),
        "no database URL anywhere in the ConfigMap"
    );
    cfg.database_url = "postgres://placeholder/pahlawan".into();
    cfg.validate().expect("the ConfigMap's hub.toml validates");
    assert!(
        cfg.listen_http.ip().is_unspecified() && cfg.listen_quic.ip().is_unspecified(),
        "the hub listens on every interface in a pod: {cfg:?}"
    );
    let (quic, http) = (cfg.listen_quic.port(), cfg.listen_http.port());
    assert_eq!(cfg.tls.cert, Path::new("/etc/pahlawan/certs/hub.crt"));

    let deploy = doc_of_kind(&docs, "Deployment");
    for needle in [
        format!("containerPort: {quic}\n              protocol: UDP"),
        format!("containerPort: {http}\n              protocol: TCP"),
        format!("prometheus.io/port: \"{http}\""),
        "prometheus.io/path: /metrics".to_string(),
        "prometheus.io/scrape: \"true\"".to_string(),
        "path: /healthz".to_string(),
        "path: /readyz".to_string(),
        "- name: DATABASE_URL\n              valueFrom:\n                secretKeyRef:".to_string(),
        "\"hub\", \"run\", \"--config\", \"/etc/pahlawan/hub.toml\"".to_string(),
        "mountPath: /etc/pahlawan/certs".to_string(),
        "requests:".to_string(),
    ] {
        assert!(deploy.contains(&needle), "the Deployment has {needle:?}");
    }
    let services: Vec<&String> = docs
        .iter()
        .filter(|d| top_value(d, "kind") == Some("Service"))
        .collect();
    assert!(
        services
            .iter()
            .any(|s| s.contains(&format!("port: {quic}")) && s.contains("protocol: UDP")),
        "a UDP Service for QUIC on {quic}"
    );
    assert!(
        services
            .iter()
            .any(|s| s.contains(&format!("port: {http}")) && s.contains("protocol: TCP")),
        "a TCP Service for HTTP on {http}"
    );
}

// ---------------------------------------------------------------------------
// systemd and the edge's example configuration.

/// `Key=value` lines of a unit file, by key (repeated keys keep every value).
fn unit_entries(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in text.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') || l.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

#[test]
fn the_example_edge_config_loads_and_validates() {
    let path = deploy_dir().join("systemd/edge.toml");
    let cfg = EdgeConfig::load(Some(&path)).expect("deploy/systemd/edge.toml loads");
    assert_eq!(
        cfg.data_dir,
        Path::new("/var/lib/pahlawan"),
        "the unit's StateDirectory"
    );
    assert!(cfg.listen.ip().is_unspecified(), "serves kiosks on the LAN");
    let tls = cfg.http.tls.clone().expect("the LAN gets HTTPS");
    for f in [&tls.cert, &tls.key] {
        assert!(f.is_absolute(), "{} is absolute", f.display());
    }
    assert!(
        cfg.http.plain_listen.is_some_and(|a| a.ip().is_loopback()),
        "plain HTTP on loopback only"
    );
    let hub = cfg.hub.clone().expect("the example syncs with a hub");
    for f in [&hub.ca_cert, &hub.cert, &hub.key] {
        assert!(f.is_absolute(), "{} is absolute", f.display());
    }
    let v = cfg.validate().expect("deploy/systemd/edge.toml validates");
    assert!(
        hub.cert.to_string_lossy().contains(v.edge_id.as_str()),
        "the certificate is the edge's"
    );
}

/// The Debian package's `/etc/pahlawan/edge.toml` (deploy/debian/edge.toml)
/// starts an edge on a fresh box — alone, on loopback, no certificate
/// needed — and is otherwise the example: the same file with `listen`,
/// `[http.tls]`, `plain_listen` and `[hub]` filled in.
#[test]
fn the_packaged_edge_config_starts_on_a_fresh_box_and_is_the_example_otherwise() {
    let path = deploy_dir().join("debian/edge.toml");
    let packaged = EdgeConfig::load(Some(&path)).expect("deploy/debian/edge.toml loads");
    packaged
        .clone()
        .validate()
        .expect("deploy/debian/edge.toml validates");
    assert!(
        packaged.listen.ip().is_loopback(),
        "plain HTTP: loopback only"
    );
    assert!(packaged.http.tls.is_none(), "no certificate on a fresh box");
    assert!(packaged.hub.is_none(), "no hub certificates on a fresh box");
    assert!(packaged.auth.create_keys, "keys made on first start");
    let example = EdgeConfig::load(Some(&deploy_dir().join("systemd/edge.toml"))).unwrap();
    let mut filled = packaged.clone();
    filled.listen = example.listen;
    filled.http.tls = example.http.tls.clone();
    filled.http.plain_listen = example.http.plain_listen;
    filled.hub = example.hub.clone();
    assert!(
        filled == example,
        "deploy/debian/edge.toml and deploy/systemd/edge.toml differ beyond listen, [http.tls], plain_listen and [hub]:\n{}\n---\n{}",
        filled.to_toml(),
        example.to_toml()
    );
}

/// `[package.metadata.deb]` in cli/Cargo.toml: every asset's source exists,
/// the binary lands where the unit runs it, the unit where systemd looks,
/// the packaged configuration where the unit reads it, and the maintainer
/// scripts are there (scripts/lib/deb.sh installs the package and checks
/// what they do).
#[test]
fn the_debian_package_ships_what_the_unit_needs() {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(cli.join("Cargo.toml"))
        .unwrap()
        .parse()
        .expect("cli/Cargo.toml is TOML");
    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(deb["name"].as_str(), Some("pahlawan"));
    let assets: BTreeMap<String, String> = deb["assets"]
        .as_array()
        .expect("assets listed")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("[source, dest, mode]");
            let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
            // A destination ending in `/` is a directory: the file keeps its name.
            let dest = match dest.strip_suffix('/') {
                Some(dir) => format!("{dir}/{}", src.rsplit('/').next().unwrap()),
                None => dest.to_string(),
            };
            (
                format!("/{}", dest.trim_start_matches('/')),
                src.to_string(),
            )
        })
        .collect();
    for (dest, src) in &assets {
        if !src.starts_with("target/") {
            assert!(cli.join(src).is_file(), "{dest}: no file {src}");
        }
    }
    let unit = unit_entries(&read("systemd/pahlawan-edge.service"));
    let exec = unit["ExecStart"].last().unwrap();
    let binary = exec.split_whitespace().next().unwrap();
    assert_eq!(
        assets.get(binary).map(String::as_str),
        Some("target/release/pahlawan"),
        "the package puts the binary at the unit's {binary}"
    );
    assert!(exec.ends_with("--config /etc/pahlawan/edge.toml"), "{exec}");
    assert_eq!(
        assets.get("/etc/pahlawan/edge.toml").map(String::as_str),
        Some("../deploy/debian/edge.toml")
    );
    assert_eq!(
        assets
            .get("/lib/systemd/system/pahlawan-edge.service")
            .map(String::as_str),
        Some("../deploy/systemd/pahlawan-edge.service")
    );
    assert_eq!(
        assets
            .get("/usr/lib/sysusers.d/pahlawan.conf")
            .map(String::as_str),
        Some("../deploy/systemd/pahlawan.sysusers.conf")
    );
    let scripts = cli.join(
        deb["maintainer-scripts"]
            .as_str()
            .expect("maintainer-scripts"),
    );
    for s in ["postinst", "prerm", "postrm"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(scripts.join(s))
            .unwrap_or_else(|e| panic!("{}/{s}: {e}", scripts.display()))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{s} is executable");
    }
}

#[test]
fn the_systemd_unit_runs_the_example_edge_hardened() {
    let unit_path = deploy_dir().join("systemd/pahlawan-edge.service");
    let text = read("systemd/pahlawan-edge.service");
    let e = unit_entries(&text);
    let one = |k: &str| -> &str {
        let v = e.get(k).unwrap_or_else(|| panic!("the unit sets {k}="));
        v.last().unwrap()
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/pahlawan edge run --config /etc/pahlawan/edge.toml",
        "where the Debian package puts the binary"
    );
    assert_eq!(one("User"), "pahlawan");
    // sd_notify: READY=1 when serving, watchdog pings from the writer's loop.
    assert_eq!(one("Type"), "notify", "the edge says when it is ready");
    assert_eq!(one("NotifyAccess"), "main");
    let watchdog_s = one("WatchdogSec")
        .strip_suffix('s')
        .and_then(|n| n.parse::<u64>().ok())
        .expect("WatchdogSec in seconds, e.g. 30s");
    assert!(
        watchdog_s > 5,
        "WatchdogSec outlasts the writer's SQLite busy timeout (5 s)"
    );
    assert_eq!(one("Restart"), "always");
    assert_eq!(one("StateDirectory"), "pahlawan");
    assert_eq!(one("KillSignal"), "SIGTERM", "the edge drains on SIGTERM");
    assert!(!one("TimeoutStopSec").is_empty());
    assert!(one("LimitNOFILE").parse::<u64>().is_ok_and(|n| n >= 16_384));
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    assert!(
        one("ReadWritePaths")
            .split_whitespace()
            .any(|p| p == "/var/lib/pahlawan"),
        "the state directory is writable"
    );
    // The unit and the example config agree on where the data lives.
    let cfg = EdgeConfig::load(Some(&deploy_dir().join("systemd/edge.toml"))).unwrap();
    assert_eq!(cfg.data_dir, Path::new("/var/lib/pahlawan"));

    // systemd's own opinion. It insists that ExecStart's binary exists, so
    // the copy it checks runs the one this test was built with. A misspelt
    // directive is only a warning (exit 0), hence the empty stderr.
    let Some(systemd_analyze) = tools::outside_tool(
        "systemd-analyze",
        "`systemd-analyze verify` of the edge's unit",
        "install Debian's `systemd` package (scripts/test does)",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pahlawan-edge.service");
    let verify = |unit: &str| {
        let unit = unit.replace("/usr/bin/pahlawan", env!("CARGO_BIN_EXE_pahlawan"));
        std::fs::write(&copy, unit).unwrap();
        Command::new(&systemd_analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("run systemd-analyze verify")
    };
    let out = verify(&text);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {}: {}\n{}",
        unit_path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The same check speaks up on a misspelt directive: it is not a no-op.
    let misspelt = verify(&text.replace("NoNewPrivileges=", "NoNewPrivilege="));
    assert!(
        !misspelt.stderr.is_empty(),
        "systemd-analyze said nothing of NoNewPrivilege="
    );
}

// ---------------------------------------------------------------------------
// The scrape: Prometheus text / OpenMetrics exposition.

#[derive(Debug, Default)]
struct Scrape {
    /// `# TYPE name kind` (OpenMetrics names a counter without `_total`).
    families: BTreeMap<String, String>,
    /// Sample name → the label names seen on it.
    samples: BTreeMap<String, BTreeSet<String>>,
    /// Histogram sample `…_bucket` → its `le` bounds.
    buckets: BTreeMap<String, Vec<f64>>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    s.families.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = line[..name_end].to_string();
            let labels = s.samples.entry(name.clone()).or_default();
            if line[name_end..].starts_with('{') {
                let b: Vec<char> = line[name_end..].chars().collect();
                for (label, value) in matchers_at(&b, 0).1 {
                    if label == "le"
                        && let Ok(bound) = value.parse::<f64>()
                    {
                        s.buckets.entry(name.clone()).or_default().push(bound);
                    }
                    labels.insert(label);
                }
            }
        }
        s
    }

    /// Whether a PromQL name is a series Prometheus will store: a sample
    /// seen, or one its `# TYPE` promises — a gauge's own name, a counter's
    /// `_total` (OpenMetrics types the counter without it), a histogram's
    /// or summary's `_bucket`/`_count`/`_sum`. A counter's bare family name
    /// is not a series.
    fn exports(&self, name: &str) -> bool {
        let kind = |n: &str| self.families.get(n).map(String::as_str);
        self.samples.contains_key(name)
            || matches!(kind(name), Some("gauge" | "unknown" | "untyped"))
            || (name.ends_with("_total") && kind(name) == Some("counter"))
            || name
                .strip_suffix("_total")
                .is_some_and(|f| kind(f) == Some("counter"))
            || (family_of(name) != name
                && matches!(kind(family_of(name)), Some("histogram" | "summary")))
    }

    /// Every name exported, for messages.
    fn names(&self) -> BTreeSet<String> {
        self.families
            .keys()
            .chain(self.samples.keys())
            .cloned()
            .collect()
    }
}

#[test]
fn a_scrape_exports_the_series_prometheus_stores() {
    let s = Scrape::parse(
        "# HELP offers Offers by outcome.\n# TYPE offers counter\noffers_total{outcome=\"made\"} 3\n\
         # TYPE g gauge\n# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
         h_sum 1.5\nh_count 2\n# TYPE c_total counter\n# EOF\n",
    );
    for yes in [
        "offers_total",
        "g",
        "h_bucket",
        "h_count",
        "h_sum",
        "c_total",
    ] {
        assert!(s.exports(yes), "{yes}");
    }
    for no in ["offers", "h", "g_total", "nothing"] {
        assert!(!s.exports(no), "{no}");
    }
    assert_eq!(s.buckets["h_bucket"], [1.0, f64::INFINITY]);
    assert!(s.samples["offers_total"].contains("outcome"));
}

async fn get_metrics(what: &str, url: String) -> (Scrape, String) {
    let r = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    if !status.is_success() {
        return (
            Scrape::default(),
            format!("the {what}'s GET /metrics answered {status}: {body}"),
        );
    }
    let s = Scrape::parse(&body);
    let note = if s.families.is_empty() && s.samples.is_empty() {
        format!("the {what}'s /metrics held no metric:\n{body}")
    } else {
        String::new()
    };
    (s, note)
}

/// A hub and an edge syncing to it, some traffic through the whole
/// lifecycle, then both scrapes: every metric `deploy/` names is exported,
/// the HPA's on the hub, with the labels and buckets the queries rely on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_deploy_examples_name_is_exported() {
    let mut named = DeployRefs::default();
    dashboard_refs(&dashboard(), &mut named);
    hpa_refs(&mut named);
    alert_rule_refs(&mut named);

    let db = pg::fresh_database().await;
    let edge_id = "deploy-check";
    let certs_dir = common::certs_for_edges(&[edge_id]);
    let hub = common::hub_in_process(&db.url, certs_dir.path(), |_| {}).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = EdgeConfig {
        edge_id: edge_id.into(),
        data_dir: data.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hub: Some(common::hub_link(&hub, certs_dir.path(), edge_id)),
        ..EdgeConfig::default()
    };
    cfg.rate_limits.admin_per_minute = 1_000_000;
    let edge = Edge::start(cfg, StartOptions::default()).await.unwrap();
    let base = format!("http://{}", edge.local_addr().unwrap());

    // Traffic: offers made, accepted, declined; a direct claim; a pickup and
    // a delivery (tonnes saved); so labelled series exist.
    let c = admin_client(data.path());
    let provider = seed(&c, &base, 2).await;
    let act = async |path: String, body: Value| -> Value {
        let (s, v) = post(&c, format!("{base}/api/v1{path}"), body)
            .await
            .unwrap();
        assert_eq!(s, 200, "{path}: {v}");
        v
    };
    let mut posted = Vec::new();
    for i in 0..3 {
        let (s, v) = post(
            &c,
            format!("{base}/api/v1/surplus"),
            surplus_body(&provider, i),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{v}");
        posted.push(v);
    }
    let offered = |v: &Value| json!({"recipient_id": v["offer"]["recipient_id"]});
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    act(
        format!("/offers/{}/accept", id(&posted[0])),
        offered(&posted[0]),
    )
    .await;
    act(
        format!("/surplus/{}/pickup", id(&posted[0])),
        offered(&posted[0]),
    )
    .await;
    let mut deliver = offered(&posted[0]);
    deliver["delivered_kg"] = json!(2.5);
    act(format!("/surplus/{}/deliver", id(&posted[0])), deliver).await;
    act(
        format!("/surplus/{}/claim", id(&posted[1])),
        json!({"recipient_id": posted[1]["offer"]["recipient_id"], "version": posted[1]["version"]}),
    )
    .await;
    act(
        format!("/offers/{}/decline", id(&posted[2])),
        offered(&posted[2]),
    )
    .await;
    let r = c
        .get(format!("{base}/api/v1/surplus/{}", id(&posted[2])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    until(
        "the hub has applied everything the edge committed",
        async || {
            sync_status(&c, &base).await.is_some_and(|s| {
                s["backlog"] == 0 && s["acked_seq"].as_u64().is_some_and(|n| n > 0)
            })
        },
    )
    .await;

    // The hub's HTTP face too, so its request series exist.
    let hub_token = common::hub_token(certs_dir.path(), cloud_hub::auth::HubRole::Viewer);
    for path in ["/healthz", "/readyz", "/api/v1/edges"] {
        let r = reqwest::Client::new()
            .get(format!("http://{}{path}", hub.http_addr()))
            .bearer_auth(&hub_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the hub's {path}");
    }

    let (edge_scrape, edge_note) = get_metrics(
        "edge",
        format!("http://{}/metrics", edge.local_addr().unwrap()),
    )
    .await;
    let (hub_scrape, hub_note) =
        get_metrics("hub", format!("http://{}/metrics", hub.http_addr())).await;

    let mut problems: Vec<String> = [edge_note, hub_note]
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    let exported = |n: &str| edge_scrape.exports(n) || hub_scrape.exports(n);
    let missing: Vec<&String> = named.refs.metrics.iter().filter(|m| !exported(m)).collect();
    if !missing.is_empty() {
        let mut families: BTreeMap<&str, BTreeSet<&String>> = BTreeMap::new();
        for m in &missing {
            families
                .entry(family_of(m))
                .or_default()
                .extend(named.sites.get(*m).into_iter().flatten());
        }
        let list: Vec<String> = families
            .iter()
            .map(|(f, sites)| {
                let sites: Vec<&str> = sites.iter().map(|s| s.as_str()).collect();
                format!("  {f}  (used by {})", sites.join("; "))
            })
            .collect();
        problems.push(format!(
            "{} metric famil{} named in deploy/ but exported by neither the edge nor the hub:\n{}",
            families.len(),
            if families.len() == 1 {
                "y is"
            } else {
                "ies are"
            },
            list.join("\n")
        ));
    }
    let hpa_metric = "matching_engine_saturation_ratio";
    if !hub_scrape.exports(hpa_metric) {
        problems.push(format!(
            "the hub does not export {hpa_metric}, which the HorizontalPodAutoscaler scales its pods on"
        ));
    }
    // A series the dashboard selects from one side (`job=~"$edge_job"` or
    // `job=~"$hub_job"`) must be exported by that side.
    let mut sided: BTreeMap<(&str, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    for ((metric, label, value), sites) in &named.matcher_sites {
        if label != "job" || metric.is_empty() {
            continue;
        }
        for (var, what, s) in [
            ("$edge_job", "edge", &edge_scrape),
            ("$hub_job", "hub", &hub_scrape),
        ] {
            // (Exported by neither: already reported above.)
            if value.contains(var) && !s.exports(metric) && exported(metric) {
                sided
                    .entry((metric, what, var))
                    .or_default()
                    .extend(sites.iter().map(String::as_str));
            }
        }
    }
    for ((metric, what, var), sites) in sided {
        problems.push(format!(
            "{metric} is read from the {what} (job=~\"{var}\") but the {what} does not export it (used by {})",
            sites.into_iter().collect::<Vec<_>>().join("; ")
        ));
    }
    // Histograms read through `_bucket` must be histograms.
    for m in named.refs.metrics.iter().filter(|m| m.ends_with("_bucket")) {
        for (what, s) in [("edge", &edge_scrape), ("hub", &hub_scrape)] {
            if let Some(kind) = s.families.get(family_of(m))
                && kind != "histogram"
            {
                problems.push(format!(
                    "{m}: the {what} exports {} as a {kind}, the dashboard reads it as a histogram",
                    family_of(m)
                ));
            }
        }
    }
    // Label matchers name labels the metric has; `le` matchers name a bucket
    // bound the histogram has (the SLA panel needs one at 1 s).
    for (metric, label, value) in &named.refs.matchers {
        if metric.is_empty() || TARGET_LABELS.contains(&label.as_str()) {
            continue;
        }
        let scrapes = [&edge_scrape, &hub_scrape];
        let carriers: Vec<&&Scrape> = scrapes
            .iter()
            .filter(|s| s.samples.contains_key(metric))
            .collect();
        if carriers.is_empty() {
            continue; // reported above, or a histogram without observations
        }
        if !carriers.iter().any(|s| s.samples[metric].contains(label)) {
            problems.push(format!(
                "{metric}{{{label}=…}}: no exported {metric} sample has the label {label:?}"
            ));
        } else if label == "le" {
            let bound: String = value
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let bound: f64 = bound.parse().unwrap_or(f64::NAN);
            let has = carriers.iter().any(|s| {
                s.buckets
                    .get(metric)
                    .is_some_and(|bs| bs.iter().any(|b| (b - bound).abs() < 1e-9))
            });
            if !has {
                let bounds: Vec<&Vec<f64>> = carriers
                    .iter()
                    .filter_map(|s| s.buckets.get(metric))
                    .collect();
                problems.push(format!(
                    "{metric}{{le=~{value:?}}}: no bucket bound {bound} (exported bounds: {bounds:?}); \
                     the query matches no series"
                ));
            }
        }
    }
    // Grouping labels (`by (route)`, `label_values(…, job)`) exist somewhere.
    let all_labels: BTreeSet<&String> = [&edge_scrape, &hub_scrape]
        .iter()
        .flat_map(|s| s.samples.values().flatten())
        .collect();
    for l in &named.refs.grouping {
        if !TARGET_LABELS.contains(&l.as_str()) && !all_labels.contains(l) {
            problems.push(format!(
                "the dashboard groups by {l:?}, a label no exported sample has"
            ));
        }
    }

    edge.shutdown().await;
    hub.shutdown().await;
    assert!(
        problems.is_empty(),
        "deploy/ and the /metrics endpoints disagree:\n- {}\n\nthe edge exports: {:?}\nthe hub exports: {:?}",
        problems.join("\n- "),
        edge_scrape.names(),
        hub_scrape.names()
    );
    let names: Vec<&str> = named.refs.metrics.iter().map(String::as_str).collect();
    eprintln!("deploy/ names, all exported: {names:?}");
}
