//! The hub's schema is Citus-ready, and its HTTP face answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use cloud_hub::config::TlsFiles;
use cloud_hub::testing::pg;
use cloud_hub::{Hub, HubConfig, certs, db};

#[tokio::test]
async fn every_distributed_table_keys_on_its_distribution_column() {
    let tdb = pg::fresh_database().await;
    let mut c = db::connect(&tdb.url).await.unwrap();
    let citus = db::migrate(&mut c).await.unwrap();
    assert!(!citus, "plain PostgreSQL here: no distribution applied");
    for ddl in db::CITUS_DDL {
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
    assert!(!db::migrate(&mut c).await.unwrap());
}

#[tokio::test]
async fn health_readiness_edges_and_impact_answer() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    certs::init(dir.path(), &[], false).unwrap();
    let hub = Hub::start(HubConfig {
        database_url: tdb.url.clone(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: dir.path().join(certs::CA_CERT),
            cert: dir.path().join(certs::HUB_CERT),
            key: dir.path().join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", hub.http_addr());
    let get = |p: &str| {
        let url = format!("{base}{p}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
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
