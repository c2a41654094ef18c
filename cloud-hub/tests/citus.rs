//! The hub on a real Citus cluster — a coordinator and two workers, each its
//! own PostgreSQL (the test command's cluster, or one this process starts):
//! the tables are distributed with their shards on the workers; every hot
//! statement is routed as its comment says (`EXPLAIN`), per-region ones to
//! one shard; a city edge's batch commits on one worker, a batch spanning
//! workers by two-phase commit, atomically; a query naming a region and a
//! month is pruned to one partition of one shard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use cloud_hub::db::{self, apply, partitions, queries};
use cloud_hub::region::region_of;
use common::{cell, log_of, offer, posted_at, sid};
use futures::StreamExt;
use sync_protocol::EdgeId;
use testkit::citus;
use testkit::pg::TestDb;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client};

const JAKARTA: (f64, f64) = (-6.2, 106.8);

/// Places far enough from Jakarta to be other regions (level-4 S2 cells).
const ELSEWHERE: [(f64, f64); 10] = [
    (3.59, 98.67),   // Medan
    (-7.25, 112.75), // Surabaya
    (-5.14, 119.42), // Makassar
    (-8.65, 115.22), // Denpasar
    (1.35, 103.82),  // Singapore
    (-0.95, 100.35), // Padang
    (-3.0, 104.75),  // Palembang
    (1.47, 124.84),  // Manado
    (-2.53, 140.72), // Jayapura
    (-10.17, 123.6), // Kupang
];

/// A migrated database on the cluster with `edge` registered in Jakarta;
/// its home region.
async fn setup(edge: &EdgeId) -> (TestDb, Client, i64) {
    let tdb = citus::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    assert!(db::migrate(&mut c).await.unwrap(), "Citus is in effect");
    let home = queries::register(&c, edge, &[cell(JAKARTA.0, JAKARTA.1)])
        .await
        .unwrap()
        .home_region;
    (tdb, c, home)
}

/// The port of the node holding `table`'s shard for `region`.
async fn placement(c: &Client, table: &str, region: i64) -> i32 {
    c.query_one(
        &format!(
            "SELECT nodeport FROM citus_shards
             WHERE shardid = get_shard_id_for_distribution_column('{table}', {region})"
        ),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// A place whose region's shards sit on another worker than `region`'s.
async fn on_the_other_worker(c: &Client, region: i64) -> (f64, f64) {
    let home = placement(c, "surplus", region).await;
    for (lat, lon) in ELSEWHERE {
        let r = region_of(cell(lat, lon));
        if r != region && placement(c, "surplus", r).await != home {
            return (lat, lon);
        }
    }
    panic!("none of {ELSEWHERE:?} hashes to the other worker");
}

/// A connection whose notices are kept: with `citus.log_remote_commands`,
/// every command the coordinator sends to a worker, and the server it went to.
async fn logging_client(url: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let kept = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notice(n) = m {
                let line = format!("{} [{}]", n.message(), n.detail().unwrap_or(""));
                kept.lock().unwrap().push(line);
            }
        }
    });
    client
        .batch_execute("SET citus.log_remote_commands TO on")
        .await
        .unwrap();
    (client, notices)
}

/// The worker ports named by "on server user@host:port" in `notices`.
fn servers(notices: &[String]) -> BTreeSet<i32> {
    notices
        .iter()
        .filter_map(|n| {
            let at = n.split("on server ").nth(1)?;
            let port = at.split(':').nth(1)?.split_whitespace().next()?;
            port.parse().ok()
        })
        .collect()
}

fn count(notices: &[String], needle: &str) -> usize {
    notices.iter().filter(|n| n.contains(needle)).count()
}

#[tokio::test]
async fn the_tables_are_distributed_with_their_shards_on_the_workers() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let (tdb, c, _) = setup(&edge).await;
    let rows = c
        .query(
            "SELECT table_name::text, citus_table_type, distribution_column, colocation_id
             FROM citus_tables",
            &[],
        )
        .await
        .unwrap();
    let kind = |t: &str| {
        rows.iter().find(|r| r.get::<_, &str>(0) == t).map(|r| {
            (
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, i32>(3),
            )
        })
    };
    let (_, _, group) = kind("surplus").expect("surplus is distributed");
    for (table, ddl) in db::CITUS_DDL {
        let (ty, column, colocation) =
            kind(table).unwrap_or_else(|| panic!("{table} is not a Citus table"));
        if ddl.contains("create_reference_table") {
            assert_eq!(ty, "reference", "{table}");
        } else {
            assert_eq!(
                (ty.as_str(), column.as_str(), colocation),
                ("distributed", "geo_region_id", group),
                "{table}: distributed by geo_region_id, colocated with surplus"
            );
        }
    }
    // Each month is a distributed table of its own, in the same group.
    for table in partitions::PARTITIONED {
        for month in partitions::list(&c, table).await.unwrap() {
            let name = month.partition_of(table);
            let (ty, column, colocation) =
                kind(&name).unwrap_or_else(|| panic!("{name} is not distributed"));
            assert_eq!(
                (ty.as_str(), column.as_str(), colocation),
                ("distributed", "geo_region_id", group),
                "{name}"
            );
        }
    }
    // Shards of distributed tables live on the workers only.
    let ports: BTreeSet<i32> = c
        .query(
            "SELECT DISTINCT nodeport FROM citus_shards WHERE citus_table_type = 'distributed'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let workers: BTreeSet<i32> = c
        .query("SELECT nodeport FROM pg_dist_node WHERE groupid <> 0", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(workers.len(), 2);
    assert_eq!(
        ports, workers,
        "every worker holds shards, the coordinator none"
    );
    drop(tdb);
}

/// `EXPLAIN` of `sql` with `params`: the plan's lines.
async fn explain(c: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<String> {
    c.query(&format!("EXPLAIN (COSTS OFF) {sql}"), params)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e:?}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

fn task_count(plan: &[String]) -> Option<u32> {
    plan.iter()
        .find_map(|l| l.trim().strip_prefix("Task Count: "))
        .and_then(|n| n.parse().ok())
}

#[tokio::test]
async fn each_hot_statement_is_routed_as_its_comment_says() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let (_tdb, c, home) = setup(&edge).await;
    let e = edge.as_str();
    let ids = vec![*sid(1).as_uuid()];
    let now = OffsetDateTime::now_utc();
    let texts = vec!["claimed"];
    let numbers = vec![2i64];
    let no_uuid: Vec<Option<uuid::Uuid>> = vec![None];
    let no_number: Vec<Option<i64>> = vec![None];
    let times = vec![now];
    let newest: Option<OffsetDateTime> = Some(now);
    let cells = vec![cell(JAKARTA.0, JAKARTA.1) as i64];
    let after = (OffsetDateTime::UNIX_EPOCH, uuid::Uuid::nil());
    let limit = 100i64;
    // (what, statement, parameters): one shard each.
    let routed: Vec<(&str, &str, Vec<&(dyn ToSql + Sync)>)> = vec![
        (
            "apply: lock the high-water mark",
            apply::SQL_LOCK_PROGRESS,
            vec![&home, &e],
        ),
        (
            "apply: move the high-water mark",
            apply::SQL_MOVE_PROGRESS,
            vec![&home, &e, &limit, &newest],
        ),
        (
            "apply: surplus already held",
            apply::SQL_EXISTING_SURPLUS,
            vec![&home, &ids],
        ),
        (
            "apply: later states of surplus",
            apply::SQL_UPDATE_SURPLUS,
            vec![
                &home, &e, &ids, &texts, &numbers, &no_uuid, &no_number, &times,
            ],
        ),
        (
            "apply: offer outcomes",
            apply::SQL_OFFER_OUTCOMES,
            vec![&home, &e, &ids, &ids, &texts, &times],
        ),
        (
            "apply: close pending offers",
            apply::SQL_CLOSE_PENDING,
            vec![&home, &e, &ids, &texts, &times],
        ),
        (
            "apply: the batch's leases (reference table)",
            apply::SQL_LEASES,
            vec![&cells],
        ),
        (
            "session: home region (reference table)",
            queries::SQL_HOME_REGION,
            vec![&e],
        ),
        ("session: progress", queries::SQL_PROGRESS, vec![&home, &e]),
        (
            "registry feed (reference table)",
            queries::SQL_REGISTRY,
            vec![&cells, &cells, &e, &after.0, &after.1, &limit],
        ),
        (
            "impact of one region",
            queries::SQL_REGION_IMPACT,
            vec![&home],
        ),
    ];
    let mut wrong = Vec::new();
    for (what, sql, params) in &routed {
        let plan = explain(&c, sql, params).await;
        if task_count(&plan) != Some(1) {
            wrong.push(format!("{what}: not one shard\n{}", plan.join("\n")));
        }
    }
    // Multi-row inserts from UNNEST: the coordinator evaluates the rows and
    // copies them to the shards their region names — one region, one shard
    // (the batch test below sees them reach one worker).
    for (what, sql) in [
        ("apply: log rows", apply::SQL_INSERT_LOG),
        ("apply: new surplus", apply::SQL_INSERT_SURPLUS),
        ("apply: new offers", apply::SQL_INSERT_OFFERS),
        ("apply: audit records", apply::SQL_INSERT_AUDIT),
    ] {
        let params = c.prepare(sql).await.unwrap().params().len();
        let plan = explain_insert(&c, sql, params).await;
        if !plan
            .iter()
            .any(|l| l.contains("INSERT/SELECT method: pull to coordinator"))
        {
            wrong.push(format!(
                "{what}: not an insert from the coordinator\n{}",
                plan.join("\n")
            ));
        }
    }
    // The fleet-wide reads fan out to every shard, as documented (bounded
    // by the number of edges; dashboards only).
    let shards = citus::TEST_SHARD_COUNT;
    for (what, sql) in [
        ("fleet: every edge", queries::SQL_EDGE_STATUS),
        ("impact of the world", queries::SQL_GLOBAL_IMPACT),
    ] {
        let plan = explain(&c, sql, &[]).await;
        if task_count(&plan).is_none_or(|n| n < shards) {
            wrong.push(format!(
                "{what}: expected a fan-out to {shards} shards\n{}",
                plan.join("\n")
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n\n"));
}

/// EXPLAIN of an UNNEST insert with `n` parameters, all NULL but the region
/// and edge (the plan does not depend on the rows).
async fn explain_insert(c: &Client, sql: &str, n: usize) -> Vec<String> {
    let statement = c
        .prepare(&format!("EXPLAIN (COSTS OFF) {sql}"))
        .await
        .unwrap();
    let region = 1i64;
    let edge = "jkt-1";
    let mut params: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(region), Box::new(edge)];
    for ty in &statement.params()[2..n] {
        params.push(null_of(ty));
    }
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
    c.query(&statement, &refs)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// A NULL of the statement's parameter type.
fn null_of(ty: &tokio_postgres::types::Type) -> Box<dyn ToSql + Sync> {
    use tokio_postgres::types::Type;
    match *ty {
        Type::TIMESTAMPTZ => Box::new(None::<OffsetDateTime>),
        Type::INT8 => Box::new(None::<i64>),
        Type::INT8_ARRAY => Box::new(None::<Vec<i64>>),
        Type::INT4_ARRAY => Box::new(None::<Vec<i32>>),
        Type::FLOAT8_ARRAY => Box::new(None::<Vec<f64>>),
        Type::BOOL_ARRAY => Box::new(None::<Vec<bool>>),
        Type::TEXT_ARRAY => Box::new(None::<Vec<String>>),
        Type::BYTEA_ARRAY => Box::new(None::<Vec<Vec<u8>>>),
        Type::UUID_ARRAY => Box::new(None::<Vec<uuid::Uuid>>),
        Type::TIMESTAMPTZ_ARRAY => Box::new(None::<Vec<OffsetDateTime>>),
        ref other => panic!("no NULL for {other}"),
    }
}

#[tokio::test]
async fn a_query_for_one_region_and_one_month_scans_one_partition_of_one_shard() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let (_tdb, c, home) = setup(&edge).await;
    let month = partitions::Month::of(OffsetDateTime::now_utc());
    let months = partitions::list(&c, "event_log").await.unwrap();
    assert!(months.len() >= 3, "this month and the next two: {months:?}");
    for (table, _) in [("event_log", ()), ("surplus", ())] {
        // The seed's example, on the hub's tables.
        let plan = explain(
            &c,
            &format!(
                "SELECT * FROM {table} WHERE geo_region_id = $1
                 AND received_at >= $2 AND received_at < $3"
            ),
            &[&home, &month.start(), &month.end()],
        )
        .await;
        let text = plan.join("\n");
        assert_eq!(task_count(&plan), Some(1), "{table}: one shard\n{text}");
        let this = format!("{}_", month.partition_of(table));
        let scanned: Vec<&String> = plan
            .iter()
            .filter(|l| l.contains(&format!(" on {table}_p")))
            .collect();
        assert!(
            !scanned.is_empty() && scanned.iter().all(|l| l.contains(&this)),
            "{table}: only {this}* is scanned\n{text}"
        );
    }
}

#[tokio::test]
async fn a_city_batch_stays_on_one_worker_and_a_two_region_batch_commits_on_both_by_2pc() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let (tdb, c, home) = setup(&edge).await;
    let home_worker = placement(&c, "event_log", home).await;
    let far = on_the_other_worker(&c, home).await;
    let (mut logged, notices) = logging_client(&tdb.url).await;

    // A city edge's batch: postings and offers in its home region.
    let mut log = log_of(&edge);
    for n in 1..=3 {
        let (x, p) = posted_at(n, JAKARTA.0, JAKARTA.1);
        log.push(x, p);
        log.push(x, offer(n, 7, 2));
    }
    apply::apply_batch(&mut logged, &edge, home, &log.batch())
        .await
        .unwrap();
    let seen = std::mem::take(&mut *notices.lock().unwrap());
    assert_eq!(
        servers(&seen),
        BTreeSet::from([home_worker]),
        "one worker, the home region's\n{}",
        seen.join("\n")
    );
    // Citus commits every COPY (the multi-row inserts) with two-phase
    // commit, even to one worker: at most one participant here.
    assert!(
        count(&seen, "PREPARE TRANSACTION") <= 1,
        "one participant\n{}",
        seen.join("\n")
    );

    // A batch touching a region on the other worker: two-phase commit on both.
    let (x, p) = posted_at(4, far.0, far.1);
    log.push(x, p);
    log.push(x, offer(4, 7, 2));
    apply::apply_batch(&mut logged, &edge, home, &log.batch())
        .await
        .unwrap();
    let seen = std::mem::take(&mut *notices.lock().unwrap());
    let workers = servers(&seen);
    assert_eq!(workers.len(), 2, "both workers\n{}", seen.join("\n"));
    assert_eq!(
        count(&seen, "PREPARE TRANSACTION"),
        2,
        "each worker prepared\n{}",
        seen.join("\n")
    );
    assert_eq!(
        count(&seen, "COMMIT PREPARED"),
        2,
        "and committed\n{}",
        seen.join("\n")
    );
    let held: i64 = c
        .query_one("SELECT count(*) FROM surplus", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 4);
}

#[tokio::test]
async fn a_batch_refused_on_one_worker_leaves_nothing_on_the_other() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let (tdb, mut c, home) = setup(&edge).await;
    let far = on_the_other_worker(&c, home).await;
    let far_region = region_of(cell(far.0, far.1));
    // The far region's shard of this month's surplus refuses every row, on
    // its worker, behind the coordinator's back.
    let partition = partitions::Month::of(OffsetDateTime::now_utc()).partition_of("surplus");
    let shard: String = c
        .query_one(
            &format!(
                "SELECT shard_name::text FROM citus_shards
                 WHERE shardid = get_shard_id_for_distribution_column('{partition}', {far_region})"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let port = placement(&c, &partition, far_region).await;
    let worker_url = tdb
        .worker_urls
        .iter()
        .find(|u| u.contains(&format!("port={port} ")))
        .unwrap()
        .clone();
    let worker = db::connect(&worker_url).await.unwrap();
    let refuse = format!(
        "SET citus.enable_manual_changes_to_shards TO on;
         ALTER TABLE {shard} ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
    );
    worker.batch_execute(&refuse).await.unwrap();

    let mut log = log_of(&edge);
    let (x, p) = posted_at(1, JAKARTA.0, JAKARTA.1);
    log.push(x, p);
    let (y, q) = posted_at(2, far.0, far.1);
    log.push(y, q);
    let batch = log.batch();
    let err = apply::apply_batch(&mut c, &edge, home, &batch)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refuse_all"), "{err}");
    let counts = async |c: &Client| -> (i64, i64, i64) {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM surplus), (SELECT count(*) FROM event_log),
                        (SELECT high_water FROM edge_progress WHERE edge_id = 'jkt-1')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        counts(&c).await,
        (0, 0, 0),
        "nothing of the batch stayed on the home worker"
    );

    worker
        .batch_execute(&format!(
            "SET citus.enable_manual_changes_to_shards TO on;
             ALTER TABLE {shard} DROP CONSTRAINT refuse_all"
        ))
        .await
        .unwrap();
    apply::apply_batch(&mut c, &edge, home, &batch)
        .await
        .unwrap();
    assert_eq!(
        counts(&c).await,
        (2, 2, 2),
        "the same batch, once it can commit"
    );
}

fn task_counts(plan: &[String]) -> Vec<u32> {
    plan.iter()
        .filter_map(|l| l.trim().strip_prefix("Task Count: "))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The dashboard's reads (`db::fleet`): a region's go to one shard in every
/// part, the fleet-wide ones fan out (each bounded, as its comment says).
#[tokio::test]
async fn each_fleet_statement_is_routed_as_its_comment_says() {
    use cloud_hub::db::fleet;
    let edge = EdgeId::new("jkt-1").unwrap();
    let (_tdb, c, home) = setup(&edge).await;
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let limit = 100i64;
    let no_ids: Vec<uuid::Uuid> = vec![];
    let one_shard: Vec<(&str, &str, Vec<&(dyn ToSql + Sync)>)> = vec![
        (
            "a region's impact by edge",
            fleet::SQL_REGION_IMPACT_BY_EDGE,
            vec![&today, &limit, &home],
        ),
        (
            "a region's daily series",
            fleet::SQL_REGION_DAILY,
            vec![&now, &today, &today, &home],
        ),
    ];
    let fan_out: Vec<(&str, &str, Vec<&(dyn ToSql + Sync)>)> = vec![
        (
            "impact by edge",
            fleet::SQL_IMPACT_BY_EDGE,
            vec![&today, &limit],
        ),
        ("daily series", fleet::SQL_DAILY, vec![&now, &today, &today]),
        ("fleet table", fleet::SQL_FLEET_EDGES, vec![&now, &limit]),
        (
            "fenced recently",
            fleet::SQL_FENCED_RECENTLY,
            vec![&now, &limit],
        ),
        (
            "trouble: surplus",
            fleet::SQL_TROUBLE_SURPLUS,
            vec![&now, &now, &limit],
        ),
        (
            "trouble: fallback",
            fleet::SQL_FALLBACK_ALERTS,
            vec![&now, &limit],
        ),
        (
            "trouble: unanswered",
            fleet::SQL_UNANSWERED,
            vec![&now, &limit],
        ),
        ("the map's cells", fleet::SQL_CELL_MAP, vec![&now, &limit]),
    ];
    let mut wrong = Vec::new();
    for (what, sql, params) in &one_shard {
        let plan = explain(&c, sql, params).await;
        let counts = task_counts(&plan);
        if counts.is_empty() || counts.iter().any(|n| *n != 1) {
            wrong.push(format!(
                "{what}: not one shard in every part\n{}",
                plan.join("\n")
            ));
        }
    }
    let shards = citus::TEST_SHARD_COUNT;
    for (what, sql, params) in &fan_out {
        let plan = explain(&c, sql, params).await;
        if !task_counts(&plan).iter().any(|n| *n >= shards) {
            wrong.push(format!(
                "{what}: expected a fan-out to {shards} shards\n{}",
                plan.join("\n")
            ));
        }
    }
    // The registry read is the coordinator's (a reference table).
    let plan = explain(&c, fleet::SQL_RECIPIENT_NAMES, &[&no_ids]).await;
    if task_counts(&plan).iter().any(|n| *n > 1) {
        wrong.push(format!(
            "recipient names: not the reference table\n{}",
            plan.join("\n")
        ));
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n\n"));
}
