//! The hub's schema is Citus-ready, and its HTTP face answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use cloud_hub::config::TlsFiles;
use cloud_hub::{Hub, HubConfig, certs, db};
use testkit::{self, pg, until};

/// A hub on loopback ports against `database_url`, with certificates in `dir`.
async fn start_hub(database_url: &str, dir: &Path) -> Hub {
    certs::init(dir, &[], false).unwrap();
    Hub::start(HubConfig {
        database_url: database_url.to_string(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: dir.join(certs::CA_CERT),
            cert: dir.join(certs::HUB_CERT),
            key: dir.join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    })
    .await
    .unwrap()
}

/// A viewer's token for the hub whose certificates (and so token keys) are in `dir`.
fn viewer(dir: &Path) -> String {
    let now = sync_link::Clock::now(&sync_link::SystemClock);
    let auth = cloud_hub::config::HubAuthConfig::default();
    cloud_hub::auth::issue(
        &auth,
        &dir.join("tokens"),
        cloud_hub::auth::HubRole::Viewer,
        "t",
        600,
        now,
    )
    .unwrap()
}

/// GET `url` with `token`: the status and the JSON body (every answer of
/// the hub is JSON).
async fn get_json(url: String, token: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").cloned();
    let body = r.json::<serde_json::Value>().await.unwrap();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{status} {body}"
    );
    (status, body)
}

#[tokio::test]
async fn every_distributed_table_keys_on_its_distribution_column() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    let citus = db::migrate(&mut c).await.unwrap();
    assert_eq!(
        citus,
        testkit::citus::wanted(),
        "distribution applied exactly where Citus is"
    );
    for (_, ddl) in db::CITUS_DDL {
        let Some(args) = ddl.strip_prefix("SELECT create_distributed_table(") else {
            continue;
        };
        let mut parts = args.split('\'').filter(|p| {
            p.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') && !p.is_empty()
        });
        let (table, column) = (parts.next().unwrap(), parts.next().unwrap());
        let pk: Vec<String> = c
            .query(
                "SELECT a.attname FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = $1::text::regclass AND i.indisprimary",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            pk.iter().any(|c| c == column),
            "{table}'s primary key {pk:?} must contain {column} (Citus)"
        );
        // Every unique index too.
        let uniques: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_index i WHERE i.indrelid = $1::text::regclass AND i.indisunique
                 AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid
                                 AND a.attnum = ANY(i.indkey) AND a.attname = $2)",
                &[&table, &column],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(uniques, 0, "{table}: a unique index without {column}");
    }
    // Migrating again is a no-op.
    assert_eq!(db::migrate(&mut c).await.unwrap(), citus);
}

#[tokio::test]
async fn health_readiness_edges_and_impact_answer() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&tdb.url, dir.path()).await;
    let base = format!("http://{}", hub.http_addr());
    let token = viewer(dir.path());
    let get = |p: &str| get_json(format!("{base}{p}"), &token);
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(
        get("/readyz").await,
        (200, serde_json::json!({"status": "ready"}))
    );
    assert_eq!(
        get("/api/v1/edges").await,
        (200, serde_json::json!({"items": []}))
    );
    let (s, impact) = get("/api/v1/impact").await;
    assert_eq!((s, impact["surplus_posted"].as_i64()), (200, Some(0)));
    let (s, err) = get("/nope").await;
    assert_eq!((s, err["error"]["code"].as_str()), (404, Some("not_found")));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_hub_without_a_database_or_certificates_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing_db = Hub::start(HubConfig {
        database_url: String::new(),
        ..HubConfig::default()
    })
    .await;
    assert!(
        missing_db
            .err()
            .unwrap()
            .to_string()
            .contains("DATABASE_URL")
    );
    let tdb = pg::fresh_database().await;
    let no_certs = Hub::start(HubConfig {
        database_url: tdb.url.clone(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: dir.path().join("nope.crt"),
            cert: dir.path().join("nope.crt"),
            key: dir.path().join("nope.key"),
        },
        ..HubConfig::default()
    })
    .await;
    assert!(no_certs.err().unwrap().to_string().contains("nope.crt"));
}

/// The answer of every database-backed route while PostgreSQL is away.
fn unavailable(message: &str) -> (u16, serde_json::Value) {
    (
        503,
        serde_json::json!({"error": {"code": "database_unavailable", "message": message}}),
    )
}

#[tokio::test]
async fn readiness_follows_postgresql_going_away_and_coming_back() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&tdb.url, dir.path()).await;
    let base = format!("http://{}", hub.http_addr());
    let token = viewer(dir.path());
    let get = |p: &str| get_json(format!("{base}{p}"), &token);
    let ready = (200, serde_json::json!({"status": "ready"}));
    assert_eq!(get("/readyz").await, ready);

    // From a connection to another database: the hub's database refuses new
    // connections (superusers too) and its backends are ended, so the hub's
    // connection dies and it cannot open another one.
    let admin = db::connect(&tdb.admin_url).await.unwrap();
    let allow = |yes: bool| format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {yes}", tdb.name);
    // The hub's backends: on Citus the coordinator also holds its
    // maintenance daemon and connections of its own to itself.
    let backends = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1
                    AND backend_type = 'client backend' AND application_name NOT LIKE 'citus%'";
    admin.batch_execute(&allow(false)).await.unwrap();
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&tdb.name],
        )
        .await
        .unwrap();
    until("the hub's backend to end", async || {
        let n: i64 = admin
            .query_one(backends, &[&tdb.name])
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;

    // The first request finds its connection dead, or already closed and
    // fails to reconnect; from then on every request tries to reconnect.
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    let unreachable = unavailable("PostgreSQL is unreachable");
    until("a reconnection attempt", async || {
        get("/readyz").await == unreachable
    })
    .await;
    assert_eq!(get("/api/v1/edges").await, unreachable);
    assert_eq!(
        get("/healthz").await.0,
        200,
        "liveness does not depend on PostgreSQL"
    );

    // PostgreSQL is back: the next probe reconnects on its own.
    admin.batch_execute(&allow(true)).await.unwrap();
    assert_eq!(get("/readyz").await, ready);
    let n: i64 = admin
        .query_one(backends, &[&tdb.name])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the hub holds one fresh connection");
    assert_eq!(
        get("/api/v1/edges").await,
        (200, serde_json::json!({"items": []}))
    );
    hub.shutdown().await;
}

/// The HTTP side of a hub alone, on `database_url` with `db_connections`
/// shared connections; no token keys (only the open routes answer).
fn http_state(database_url: &str, db_connections: usize) -> Arc<cloud_hub::http::HttpState> {
    Arc::new(cloud_hub::http::HttpState {
        max_sessions: 1_000,
        last_scrape: parking_lot::Mutex::new(None),
        db: cloud_hub::http::DbPool::new(database_url, db_connections, None),
        stats: Arc::new(cloud_hub::stats::HubStats::default()),
        verifier: cloud_hub::auth::Verifier::new(
            cloud_hub::auth::VerifierConfig {
                issuer: "pahlawan-hub".into(),
                audience: "pahlawan-hub".into(),
                leeway_secs: 30,
                max_lifetime_secs: 3_600,
                cache_entries: 0,
            },
            cloud_hub::auth::Keyring::default(),
        ),
        clock: Arc::new(sync_link::SystemClock),
        dashboard: cloud_hub::config::DashboardConfig::default(),
        sign_in_limiter: Default::default(),
    })
}

#[tokio::test]
async fn readiness_is_503_when_postgresql_accepts_but_never_answers() {
    // A "server" that accepts connections and never says a word: connecting
    // hangs, so only the hub's own bound can answer the probe.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            sockets.push(s);
        }
    });
    let state = http_state(
        &format!("host=127.0.0.1 port={port} user=hub dbname=hub"),
        1,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, cloud_hub::http::router(state, false))
            .await
            .unwrap();
    });
    let get = |p: &str| get_json(format!("{base}{p}"), "");
    // Two probes at once: whichever holds the connection gives up when its
    // bound passes; the other waited its turn, then gave up waiting or timed
    // out itself. Neither waits forever.
    let (a, b) = tokio::join!(get("/readyz"), get("/readyz"));
    for (status, body) in [&a, &b] {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    }
    let timed_out = unavailable("PostgreSQL did not answer in time");
    assert!(a == timed_out || b == timed_out, "{a:?} {b:?}");
    server.abort();
    held.abort();
}

/// The HTTP handlers share `db_connections` connections: with one, a
/// request waits for a slow one before it; with two, it is answered while
/// the slow one still runs. A quiet hub keeps one connection open.
#[tokio::test]
async fn a_slow_request_holds_up_the_others_only_when_it_holds_the_last_connection() {
    let tdb = pg::fresh_database().await;
    for (connections, waits) in [(1, true), (2, false)] {
        let state = http_state(&tdb.url, connections);
        let slow_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let slow = tokio::spawn({
            let (state, slow_done) = (state.clone(), slow_done.clone());
            async move {
                cloud_hub::http::with_db(&state, async |c| {
                    let _ = started_tx.send(());
                    c.batch_execute("SELECT pg_sleep(2)").await?;
                    Ok(())
                })
                .await
                .map_err(|r| r.status())?;
                slow_done.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<(), axum::http::StatusCode>(())
            }
        });
        started_rx.await.unwrap();
        let one: i32 = cloud_hub::http::with_db(&state, async |c| {
            Ok(c.query_one("SELECT 1", &[]).await?.get(0))
        })
        .await
        .map_err(|r| r.status())
        .unwrap();
        assert_eq!(one, 1);
        assert_eq!(
            slow_done.load(std::sync::atomic::Ordering::SeqCst),
            waits,
            "{connections} connection(s): the quick request {} the slow one",
            if waits { "waits for" } else { "passes" }
        );
        slow.await.unwrap().unwrap();
    }
    // Quiet: requests one after another reuse one connection.
    let state = http_state(&tdb.url, 4);
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let pid: i32 = cloud_hub::http::with_db(&state, async |c| {
            Ok(c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
        })
        .await
        .map_err(|r| r.status())
        .unwrap();
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 1, "one connection serves a quiet hub");
}

/// A V6 database (distributed, on Citus) takes V7's indexes for the fleet
/// reads, on every month partition; a month made after has them too.
#[tokio::test]
async fn a_v6_database_takes_the_fleet_indexes_on_every_month() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate_to(&mut c, 6).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    db::partitions::ensure_around(&c, now).await.unwrap();
    if testkit::citus::wanted() {
        c.batch_execute("SET citus.enable_unsafe_triggers TO on")
            .await
            .unwrap();
        for (_, ddl) in db::CITUS_DDL {
            c.batch_execute(ddl).await.unwrap();
        }
        c.batch_execute("RESET citus.enable_unsafe_triggers")
            .await
            .unwrap();
    }
    db::migrate(&mut c).await.unwrap();
    let later = db::partitions::Month::of(now).next().next().next();
    for table in db::partitions::PARTITIONED {
        db::partitions::ensure(&c, table, later).await.unwrap();
    }
    // Each partitioned index is on every month of its table.
    for (index, table, partial) in [
        ("surplus_delivered", "surplus", true),
        ("surplus_posted", "surplus", false),
        ("surplus_unfinished", "surplus", true),
        ("event_log_fenced", "event_log", true),
    ] {
        let months = db::partitions::list(&c, table).await.unwrap().len() as i64;
        let on: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid
                 WHERE i.inhparent = $1::text::regclass AND (x.indpred IS NOT NULL) = $2",
                &[&index, &partial],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(on, months, "{index} on each of {table}'s {months} months");
    }
    for index in ["matching_fallback", "matching_timed_out"] {
        let found = c
            .query_opt("SELECT 1 FROM pg_indexes WHERE indexname = $1", &[&index])
            .await
            .unwrap();
        assert!(found.is_some(), "{index}");
    }
}

/// A database of schema V3 holding rows (distributed, on Citus) upgrades to
/// monthly partitions: every row lands in the month it was received, and
/// the views still answer.
#[tokio::test]
async fn a_v3_database_with_rows_moves_into_monthly_partitions() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    db::migrate_to(&mut c, 3).await.unwrap();
    if testkit::citus::wanted() {
        c.batch_execute("SET citus.enable_unsafe_triggers TO on")
            .await
            .unwrap();
        for (table, ddl) in db::CITUS_DDL {
            if table != "impact_daily" {
                c.batch_execute(ddl).await.unwrap();
            }
        }
        c.batch_execute("RESET citus.enable_unsafe_triggers")
            .await
            .unwrap();
    }
    c.batch_execute(
        "INSERT INTO edges (edge_id, home_region) VALUES ('jkt-1', 7);
         INSERT INTO edge_progress (geo_region_id, edge_id, high_water) VALUES (7, 'jkt-1', 3);
         INSERT INTO event_log (edge_id, seq, geo_region_id, cell, kind, at, lease_epoch, fenced, envelope, received_at)
         VALUES ('jkt-1', 1, 7, 9, 'surplus_posted', '2026-08-30Z', 1, false, '\\x01', '2026-08-31 23:00Z'),
                ('jkt-1', 2, 7, 9, 'offer_made', '2026-09-01Z', 1, false, '\\x02', '2026-09-01 01:00Z'),
                ('jkt-1', 3, 7, 9, 'delivered', '2026-10-02Z', 1, false, '\\x03', '2026-10-02 00:00Z');
         INSERT INTO surplus (geo_region_id, id, edge_id, provider_id, lat, lon, cell, quantity_g, food_type,
                              description, expires_at, posted_at, status, version, delivered_g, updated_at)
         VALUES (7, '00000000-0000-0000-0000-000000000001', 'jkt-1', '00000000-0000-0000-0000-000000000009',
                 -6.2, 106.8, 9, 5000, 'bakery', '', '2026-09-01Z', '2026-08-30Z', 'delivered', 5, 4000,
                 '2026-10-02Z')",
    )
    .await
    .unwrap();

    assert_eq!(db::migrate(&mut c).await.unwrap(), testkit::citus::wanted());
    let months = |table: &'static str| {
        let c = &c;
        async move {
            db::partitions::list(c, table)
                .await
                .unwrap()
                .iter()
                .map(|m| m.label())
                .collect::<Vec<_>>()
        }
    };
    let log_months = months("event_log").await;
    for m in ["2026-08", "2026-09", "2026-10"] {
        assert!(log_months.contains(&m.to_string()), "{m} in {log_months:?}");
    }
    for partition in [
        "event_log_p202608",
        "event_log_p202609",
        "event_log_p202610",
    ] {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {partition}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{partition} holds the row received that month");
    }
    // Surplus from before V4 counts as received when last updated.
    assert!(months("surplus").await.contains(&"2026-10".to_string()));
    let impact = db::queries::global_impact(&c).await.unwrap();
    assert_eq!((impact.surplus_delivered, impact.delivered_kg), (1, 4.0));
    let p = db::queries::progress(&c, &sync_protocol::EdgeId::new("jkt-1").unwrap())
        .await
        .unwrap();
    assert_eq!(p.map(|p| p.high_water), Some(3));
}
