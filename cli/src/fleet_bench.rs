//! `pahlawan bench-fleet`: how fast the dashboard's fleet API answers on a
//! hub holding a million events (issue 15, point 5). It starts a real hub
//! in this process (`cloud_hub::Hub`, its default configuration: its own
//! migrations, its HTTP server), fills its database with ~90 days of ten
//! cities' history through the hub's own apply path ([`fill`]), then
//! drives every fleet endpoint the dashboard polls, one after another,
//! with the same closed-loop HTTP clients ([`load`]) that first measure
//! `/healthz` in the same run — as a viewer, with a token signed the way
//! `pahlawan token issue --for hub` signs one. Last, `EXPLAIN (ANALYZE,
//! BUFFERS)` of each statement the endpoints run (the `SQL_*` constants of
//! `cloud_hub::db::fleet`, with the parameters the endpoints pass) goes to
//! a file. `scripts/bench-fleet` runs it on plain PostgreSQL and on Citus.

mod fill;
mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cloud_hub::config::TlsFiles;
use cloud_hub::db::{self, fleet};
use cloud_hub::{Hub, HubConfig, certs};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

pub struct FleetBenchConfig {
    pub database_url: String,
    /// What the database is, for the report's title.
    pub label: String,
    /// Events in the hub's log, at least.
    pub events: u64,
    /// Days of history up to now.
    pub history_days: i64,
    /// Concurrent HTTP clients.
    pub connections: usize,
    pub warmup: Duration,
    /// Measured per endpoint.
    pub duration: Duration,
    /// Where the plans are written.
    pub explain_out: PathBuf,
    pub seed: u64,
    /// The hub's `[http] db_connections`, when not its default.
    pub hub_db_connections: Option<usize>,
}

/// The fewest events worth filling: the registries alone are ~1,100.
pub const MIN_EVENTS: u64 = 2_000;

/// The dashboard's polls (its `app.js`), in the order measured.
const PATHS: [(&str, &str); 5] = [
    ("impact", "/api/v1/fleet/impact"),
    ("daily", "/api/v1/fleet/impact/daily?days=30"),
    ("edges", "/api/v1/fleet/edges"),
    ("trouble", "/api/v1/fleet/trouble?limit=20"),
    ("cells", "/api/v1/fleet/cells"),
];
/// The rows the dashboard's trouble poll asks for (`?limit=20`).
const TROUBLE_LIMIT: i64 = 20;
/// The days the dashboard's chart asks for (`?days=30`).
const CHART_DAYS: i64 = 30;

fn hub_config(database_url: &str, certs_dir: &std::path::Path) -> HubConfig {
    HubConfig {
        database_url: database_url.to_string(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: certs_dir.join(certs::CA_CERT),
            cert: certs_dir.join(certs::HUB_CERT),
            key: certs_dir.join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    }
}

fn now() -> sync_protocol::Timestamp {
    edge_node::clock::Clock::now(&edge_node::clock::SystemClock)
}

pub async fn run(cfg: FleetBenchConfig) -> anyhow::Result<String> {
    anyhow::ensure!(cfg.events >= MIN_EVENTS, "--events: at least {MIN_EVENTS}");
    let dir = tempfile::tempdir()?;
    let certs_dir = dir.path().join("certs");
    certs::init(&certs_dir, &[], false)?;
    let mut hub_cfg = hub_config(&cfg.database_url, &certs_dir);
    if let Some(n) = cfg.hub_db_connections {
        hub_cfg.http.db_connections = n;
    }
    // The hub migrates the database (and distributes it, on Citus).
    let hub = Hub::start(hub_cfg.clone()).await?;
    let client = db::connect(&cfg.database_url).await?;
    let known: i64 = client
        .query_one("SELECT count(*) FROM edges", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        known == 0,
        "the database already holds {known} edges: bench-fleet needs an empty one"
    );
    let fill_cfg = fill::FillConfig {
        events: cfg.events,
        history_days: cfg.history_days,
        seed: cfg.seed,
    };
    let filled = fill::fill(&cfg.database_url, &fill_cfg, now())
        .await
        .context("filling the hub's database")?;
    vacuum_analyze(&client).await?;
    let data = DataFacts::read(&client).await?;
    let region = cloud_hub::http::fleet::cell_token(filled.jakarta_region);
    let results = measure(&hub, &hub_cfg, &cfg, &region).await?;
    let plans = explain_all(&client, filled.jakarta_region).await?;
    write_plans(&cfg.explain_out, &cfg.label, &plans)?;
    hub.shutdown().await;
    Ok(report(&cfg, &filled, &data, &results, &plans))
}

/// What autovacuum would have done after a bulk load: statistics for the
/// planner and the visibility map for index-only scans.
async fn vacuum_analyze(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    for table in [
        "event_log",
        "surplus",
        "matching_history",
        "audit_log",
        "impact_daily",
        "edge_progress",
        "edges",
        "providers",
        "recipients",
        "cell_leases",
    ] {
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
            .await
            .with_context(|| format!("VACUUM ANALYZE {table}"))?;
    }
    Ok(())
}

/// The scenarios: `/healthz` first (the baseline), then each fleet poll,
/// the one-region forms, and the conditional poll that gets `304`.
async fn measure(
    hub: &Hub,
    hub_cfg: &HubConfig,
    cfg: &FleetBenchConfig,
    region: &str,
) -> anyhow::Result<Vec<load::Measured>> {
    let addr = hub.http_addr();
    let schedule = load::Schedule {
        connections: cfg.connections,
        warmup: cfg.warmup,
        duration: cfg.duration,
    };
    let target = |name: &str, path: &str, tag: Option<String>| load::Target {
        name: name.to_string(),
        path: path.to_string(),
        if_none_match: tag,
    };
    let mut results =
        vec![load::drive(addr, None, target("healthz", "/healthz", None), schedule).await?];
    let mut targets: Vec<load::Target> = PATHS.iter().map(|(n, p)| target(n, p, None)).collect();
    targets.insert(
        1,
        target(
            "impact, one region",
            &format!("/api/v1/fleet/impact?region={region}"),
            None,
        ),
    );
    targets.insert(
        3,
        target(
            "daily, one region",
            &format!("/api/v1/fleet/impact/daily?days={CHART_DAYS}&region={region}"),
            None,
        ),
    );
    for t in targets {
        // A token per scenario: none outlives the hub's longest lifetime.
        let auth = bearer(hub_cfg)?;
        results.push(load::drive(addr, Some(auth), t, schedule).await?);
    }
    let auth = bearer(hub_cfg)?;
    let (status, etag, body) = load::probe(addr, Some(&auth), PATHS[0].1).await?;
    let etag = etag.ok_or_else(|| {
        anyhow::anyhow!(
            "{} answered {status} without an ETag: {}",
            PATHS[0].1,
            String::from_utf8_lossy(&body)
        )
    })?;
    results.push(
        load::drive(
            addr,
            Some(auth),
            target("impact, If-None-Match", PATHS[0].1, Some(etag)),
            schedule,
        )
        .await?,
    );
    Ok(results)
}

/// A viewer's token for the hub, signed as `pahlawan token issue --for hub`
/// signs it.
fn bearer(hub_cfg: &HubConfig) -> anyhow::Result<String> {
    let ttl = hub_cfg.auth.max_token_lifetime_secs;
    let token = crate::hub_tokens::issue(hub_cfg, "viewer", "bench-fleet", ttl)?;
    Ok(format!("Bearer {token}"))
}

/// One statement an endpoint runs, with the parameters it passes.
struct Statement {
    endpoint: &'static str,
    name: &'static str,
    sql: &'static str,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// A statement's plan and what it says.
pub struct Plan {
    endpoint: &'static str,
    name: &'static str,
    params: String,
    lines: Vec<String>,
}

impl Plan {
    fn execution_ms(&self) -> Option<f64> {
        // The statement's own line, last and not indented: on Citus each
        // task shown has its own (indented) one before it.
        self.lines.iter().rev().find_map(|l| {
            l.strip_prefix("Execution Time:")
                .and_then(|r| r.trim().strip_suffix(" ms"))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// Citus's task count (one shard: 1; fanned out: the shard count);
    /// `None` on plain PostgreSQL.
    fn tasks(&self) -> Option<u64> {
        self.lines
            .iter()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("Task Count:")
                    .and_then(|v| v.trim().parse().ok())
            })
            .max()
    }

    /// The scans, partitions and shards folded into their table's or
    /// index's name, each with how often it appears.
    fn scans(&self) -> String {
        let mut seen: Vec<(String, usize)> = Vec::new();
        for l in &self.lines {
            let Some(scan) = scan_of(l) else { continue };
            match seen.iter_mut().find(|(s, _)| *s == scan) {
                Some(entry) => entry.1 += 1,
                None => seen.push((scan, 1)),
            }
        }
        seen.iter()
            .map(|(s, n)| {
                if *n > 1 {
                    format!("{s} ×{n}")
                } else {
                    s.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `Seq Scan on surplus_p202612_102008 s` → `Seq Scan on surplus`.
fn scan_of(line: &str) -> Option<String> {
    let l = line.trim().trim_start_matches("->").trim();
    let kinds = [
        "Parallel Seq Scan on ",
        "Seq Scan on ",
        "Parallel Index Only Scan using ",
        "Parallel Index Scan using ",
        "Index Only Scan using ",
        "Index Scan Backward using ",
        "Index Scan using ",
        "Bitmap Index Scan on ",
    ];
    let kind = kinds.iter().find(|k| l.starts_with(*k))?;
    let name = l[kind.len()..].split_whitespace().next()?;
    Some(format!("{}{}", kind, base_name(name)))
}

/// A relation's name without its month (`_p202612`) and its shard id.
fn base_name(name: &str) -> String {
    let mut parts: Vec<&str> = name.split('_').collect();
    if parts.len() > 1
        && parts
            .last()
            .is_some_and(|p| p.len() >= 4 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        parts.pop();
    }
    parts
        .into_iter()
        .filter(|p| {
            !(p.len() == 7 && p.starts_with('p') && p[1..].bytes().all(|b| b.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join("_")
}

fn statements(now: OffsetDateTime, region: i64) -> Vec<Statement> {
    let today = now.date();
    let (from, first, end) = fleet::daily_window(today, CHART_DAYS);
    let rows = fleet::MAX_ROWS;
    let s = |endpoint, name, sql, params: Vec<Box<dyn ToSql + Sync + Send>>| Statement {
        endpoint,
        name,
        sql,
        params,
    };
    vec![
        s(
            "/fleet/impact",
            "SQL_IMPACT_BY_EDGE",
            fleet::SQL_IMPACT_BY_EDGE,
            vec![Box::new(today), Box::new(rows)],
        ),
        s(
            "/fleet/impact?region=",
            "SQL_REGION_IMPACT_BY_EDGE",
            fleet::SQL_REGION_IMPACT_BY_EDGE,
            vec![Box::new(today), Box::new(rows), Box::new(region)],
        ),
        s(
            "/fleet/impact/daily?days=30",
            "SQL_DAILY",
            fleet::SQL_DAILY,
            vec![Box::new(from), Box::new(first), Box::new(end)],
        ),
        s(
            "/fleet/impact/daily?days=30&region=",
            "SQL_REGION_DAILY",
            fleet::SQL_REGION_DAILY,
            vec![
                Box::new(from),
                Box::new(first),
                Box::new(end),
                Box::new(region),
            ],
        ),
        s(
            "/fleet/edges",
            "SQL_FLEET_EDGES",
            fleet::SQL_FLEET_EDGES,
            vec![Box::new(now), Box::new(rows)],
        ),
        s(
            "/fleet/edges",
            "SQL_FENCED_RECENTLY",
            fleet::SQL_FENCED_RECENTLY,
            vec![Box::new(now - fleet::FENCED_WINDOW), Box::new(rows)],
        ),
        s(
            "/fleet/trouble?limit=20",
            "SQL_TROUBLE_SURPLUS",
            fleet::SQL_TROUBLE_SURPLUS,
            vec![
                Box::new(now),
                Box::new(now + fleet::EXPIRING_WITHIN),
                Box::new(TROUBLE_LIMIT),
            ],
        ),
        s(
            "/fleet/trouble?limit=20",
            "SQL_FALLBACK_ALERTS",
            fleet::SQL_FALLBACK_ALERTS,
            vec![
                Box::new(now - fleet::ALERTS_WINDOW),
                Box::new(TROUBLE_LIMIT),
            ],
        ),
        s(
            "/fleet/trouble?limit=20",
            "SQL_UNANSWERED",
            fleet::SQL_UNANSWERED,
            vec![
                Box::new(now - fleet::UNANSWERED_WINDOW),
                Box::new(TROUBLE_LIMIT),
            ],
        ),
        s(
            "/fleet/cells",
            "SQL_CELL_MAP",
            fleet::SQL_CELL_MAP,
            vec![Box::new(today.midnight().assume_utc()), Box::new(rows)],
        ),
    ]
}

fn describe(params: &[Box<dyn ToSql + Sync + Send>]) -> String {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| format!("${} = {p:?}", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn explain(
    client: &tokio_postgres::Client,
    endpoint: &'static str,
    name: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    described: String,
) -> anyhow::Result<Plan> {
    let rows = client
        .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), params)
        .await
        .with_context(|| format!("EXPLAIN {name}"))?;
    Ok(Plan {
        endpoint,
        name,
        params: described,
        lines: rows.iter().map(|r| r.get::<_, String>(0)).collect(),
    })
}

/// Every statement's plan, run as the endpoints run it, now; the names of
/// the unanswered recipients with the ids the trouble list found.
async fn explain_all(client: &tokio_postgres::Client, region: i64) -> anyhow::Result<Vec<Plan>> {
    let now = cloud_hub::http::odt(now());
    let mut plans = Vec::new();
    for st in statements(now, region) {
        let params: Vec<&(dyn ToSql + Sync)> = st
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        plans.push(
            explain(
                client,
                st.endpoint,
                st.name,
                st.sql,
                &params,
                describe(&st.params),
            )
            .await?,
        );
    }
    let since = now - fleet::UNANSWERED_WINDOW;
    let ids: Vec<uuid::Uuid> = client
        .query(fleet::SQL_UNANSWERED, &[&since, &TROUBLE_LIMIT])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    plans.push(
        explain(
            client,
            "/fleet/trouble?limit=20",
            "SQL_RECIPIENT_NAMES",
            fleet::SQL_RECIPIENT_NAMES,
            &[&ids],
            format!("$1 = the {} ids SQL_UNANSWERED found", ids.len()),
        )
        .await?,
    );
    Ok(plans)
}

fn write_plans(path: &std::path::Path, label: &str, plans: &[Plan]) -> anyhow::Result<()> {
    let mut out = format!(
        "EXPLAIN (ANALYZE, BUFFERS) of each statement the fleet API runs, \
         by `pahlawan bench-fleet` on {label}\n\
         (the SQL_* constants of cloud-hub/src/db/fleet.rs, with the parameters the endpoints pass)\n"
    );
    for p in plans {
        out.push_str(&format!(
            "\n==== {} — {}\n     {}\n\n",
            p.endpoint, p.name, p.params
        ));
        for l in &p.lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// What the database holds after the fill.
struct DataFacts {
    version: String,
    citus: Option<String>,
    shared_buffers: String,
    bytes: i64,
    counts: Vec<(String, i64)>,
    surplus_by_status: Vec<(String, i64)>,
    partitions: usize,
}

impl DataFacts {
    async fn read(c: &tokio_postgres::Client) -> anyhow::Result<DataFacts> {
        let one = async |sql: &str| -> anyhow::Result<i64> {
            Ok(c.query_one(sql, &[])
                .await
                .with_context(|| sql.to_string())?
                .get(0))
        };
        let version: String = c.query_one("SHOW server_version", &[]).await?.get(0);
        let citus: Option<String> = c
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'citus'",
                &[],
            )
            .await?
            .map(|r| r.get(0));
        let shared_buffers: String = c.query_one("SHOW shared_buffers", &[]).await?.get(0);
        let mut bytes = one("SELECT pg_database_size(current_database())").await?;
        if citus.is_some() {
            bytes += one(
                "SELECT COALESCE(sum(result::bigint), 0)::bigint FROM run_command_on_workers(
                     'SELECT pg_database_size(current_database())') WHERE success",
            )
            .await?;
        }
        let mut counts = Vec::new();
        for (name, sql) in [
            ("events in the log", "SELECT count(*) FROM event_log"),
            ("fenced", "SELECT count(*) FROM event_log WHERE fenced"),
            ("surplus", "SELECT count(*) FROM surplus"),
            ("offers", "SELECT count(*) FROM matching_history"),
            (
                "fallback offers",
                "SELECT count(*) FROM matching_history WHERE fallback",
            ),
            (
                "timed-out offers",
                "SELECT count(*) FROM matching_history WHERE outcome = 'timed_out'",
            ),
            ("audit records", "SELECT count(*) FROM audit_log"),
            ("impact_daily rows", "SELECT count(*) FROM impact_daily"),
            ("providers", "SELECT count(*) FROM providers"),
            ("recipients", "SELECT count(*) FROM recipients"),
            ("edges", "SELECT count(*) FROM edges"),
            ("cell leases", "SELECT count(*) FROM cell_leases"),
        ] {
            counts.push((name.to_string(), one(sql).await?));
        }
        let surplus_by_status = c
            .query(
                "SELECT status, count(*) FROM surplus GROUP BY status ORDER BY count(*) DESC",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let partitions = db::partitions::list(c, "event_log").await?.len()
            + db::partitions::list(c, "surplus").await?.len();
        Ok(DataFacts {
            version,
            citus,
            shared_buffers,
            bytes,
            counts,
            surplus_by_status,
            partitions,
        })
    }
}

fn report(
    cfg: &FleetBenchConfig,
    filled: &fill::Filled,
    data: &DataFacts,
    results: &[load::Measured],
    plans: &[Plan],
) -> String {
    let database = match &data.citus {
        Some(v) => format!("PostgreSQL {} with Citus {v}", data.version),
        None => format!("PostgreSQL {}", data.version),
    };
    let counts: Vec<String> = data
        .counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let by_status: Vec<String> = data
        .surplus_by_status
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let mut out = format!(
        "### `pahlawan bench-fleet` — {}\n\n\
         Machine: {}\n\n\
         Database: {database}, shared_buffers {}, {:.0} MiB after the fill; the hub's HTTP \
         handlers share {} PostgreSQL connections.\n\n\
         Data: {} events written through the hub's apply path in {} batches in {:.1} s \
         ({:.0} events/s), {} edges, {} cells, {} days of history, {} month partitions; \
         then `VACUUM (ANALYZE)`. Holds: {}. Surplus by status: {}.\n\n\
         Load: closed loop, {} clients (a keep-alive HTTP/1.1 connection each), {:?} measured \
         per endpoint after {:?} warm-up, one endpoint after another, a viewer's bearer token; \
         latency from send to the whole body, of every request (errors included).\n\n\
         | endpoint | req/s | p50 ms | p95 ms | p99 ms | max ms | requests | errors | req/s ÷ /healthz | body bytes |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        cfg.label,
        pahlawan_cli::bench::machine(),
        data.shared_buffers,
        data.bytes as f64 / 1_048_576.0,
        cfg.hub_db_connections
            .unwrap_or_else(|| HubConfig::default().http.db_connections),
        filled.events,
        filled.batches,
        filled.took.as_secs_f64(),
        filled.events as f64 / filled.took.as_secs_f64().max(1e-9),
        filled.edges,
        filled.cells,
        cfg.history_days,
        data.partitions,
        counts.join(", "),
        by_status.join(", "),
        cfg.connections,
        cfg.duration,
        cfg.warmup,
    );
    let baseline = results
        .first()
        .map_or(1.0, load::Measured::per_sec)
        .max(1e-9);
    for r in results {
        let answered = if r.not_modified > 0 {
            format!("{} ({} × 304)", r.answered, r.not_modified)
        } else {
            r.answered.to_string()
        };
        out.push_str(&format!(
            "| {} `{}` | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {answered} | {} | {:.3} | {} |\n",
            r.name,
            r.path,
            r.per_sec(),
            r.ms(0.5),
            r.ms(0.95),
            r.ms(0.99),
            r.max_ms(),
            r.errors_text(),
            r.per_sec() / baseline,
            r.body_bytes,
        ));
    }
    out.push_str(&format!(
        "\nPlans (`EXPLAIN (ANALYZE, BUFFERS)`, in full in `{}`):\n\n\
         | endpoint | statement | execution ms | Citus tasks | scans |\n|---|---|---|---|---|\n",
        cfg.explain_out.display()
    ));
    for p in plans {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            p.endpoint,
            p.name,
            p.execution_ms().map_or("?".into(), |ms| format!("{ms:.2}")),
            p.tasks().map_or("—".into(), |t| t.to_string()),
            p.scans(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plans_execution_time_is_the_statements_not_a_tasks() {
        let plan = Plan {
            endpoint: "/fleet/edges",
            name: "SQL_FLEET_EDGES",
            params: String::new(),
            lines: [
                "Custom Scan (Citus Adaptive)  (actual time=111.678..111.684 rows=11 loops=1)",
                "  Task Count: 32",
                "        Planning Time: 0.300 ms",
                "        Execution Time: 0.713 ms",
                "Planning Time: 2.100 ms",
                "Execution Time: 111.773 ms",
            ]
            .map(String::from)
            .to_vec(),
        };
        assert_eq!(plan.execution_ms(), Some(111.773));
    }

    #[test]
    fn scans_fold_months_and_shards_into_their_table() {
        for (line, want) in [
            (
                "  ->  Seq Scan on surplus_p202612_102008 surplus",
                Some("Seq Scan on surplus"),
            ),
            (
                "->  Index Scan using surplus_p202611_delivered_idx on surplus_p202611",
                Some("Index Scan using surplus_delivered_idx"),
            ),
            (
                "Bitmap Index Scan on matching_history_pkey_102040",
                Some("Bitmap Index Scan on matching_history_pkey"),
            ),
            (
                "Seq Scan on cell_leases_102100 l",
                Some("Seq Scan on cell_leases"),
            ),
            ("Hash Join  (cost=1..2)", None),
        ] {
            assert_eq!(scan_of(line).as_deref(), want, "{line}");
        }
    }
}
