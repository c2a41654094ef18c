//! Test harness: a real edge on a temporary SQLite file serving real HTTP on
//! loopback, a reqwest client, and direct read access to the database file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use edge_node::auth::Role;
use edge_node::{Edge, EdgeConfig, StartOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct TestEdge {
    pub edge: Option<Edge>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path) -> EdgeConfig {
    let mut cfg = EdgeConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        edge_id: "test-edge".into(),
        ..EdgeConfig::default()
    };
    // Tests that are not about rate limits should never meet one.
    cfg.rate_limits.provider_per_minute = 1_000_000;
    cfg.rate_limits.ngo_per_minute = 1_000_000;
    cfg.rate_limits.admin_per_minute = 1_000_000;
    cfg
}

/// A token signed with the keys the edge in `dir` created on first start.
pub fn token(dir: &std::path::Path, role: Role, sub: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000;
    edge_node::auth::keys::issue(
        dir,
        "pahlawan",
        "pahlawan-edge",
        role,
        sub,
        900,
        sync_protocol::Timestamp::from_unix_ms(now),
    )
    .expect("a token")
}

/// A client whose every request carries `token`.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

impl TestEdge {
    pub async fn start() -> TestEdge {
        TestEdge::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut EdgeConfig)) -> TestEdge {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path());
        tweak(&mut cfg);
        let edge = Edge::start(cfg, StartOptions::default())
            .await
            .expect("edge starts");
        let base = format!("http://{}", edge.local_addr().expect("serving"));
        // The default client is an admin; tests about roles use `as_role`.
        let client = client_with(&token(dir.path(), Role::Admin, "test-admin"));
        TestEdge {
            edge: Some(edge),
            base,
            client,
            dir,
        }
    }

    /// A client acting as `role` for `sub`.
    pub fn as_role(&self, role: Role, sub: &str) -> reqwest::Client {
        client_with(&token(self.dir.path(), role, sub))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join(edge_node::store::DB_FILE)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn provider(&self) -> String {
        let (s, body) = self.post("/providers", provider_body()).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    pub async fn recipient(&self, lat: f64, lon: f64) -> String {
        self.recipient_with(json!({"lat": lat, "lon": lon})).await
    }

    pub async fn recipient_with(&self, overrides: Value) -> String {
        let mut body = recipient_body();
        merge(&mut body, overrides);
        let (s, body) = self.post("/recipients", body).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    pub async fn surplus(&self, provider: &str, overrides: Value) -> Value {
        let mut body = surplus_body(provider);
        merge(&mut body, overrides);
        let (s, body) = self.post("/surplus", body).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body
    }

    /// Row counts of every table: "nothing changed" means these are equal.
    pub fn table_counts(&self) -> Vec<(String, i64)> {
        let conn = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db");
        [
            "providers",
            "recipients",
            "surplus",
            "offers",
            "outbox",
            "idempotency_keys",
        ]
        .iter()
        .map(|t| {
            // Refusals are audited (an audit row and its outbox event): what
            // "nothing changed" means is the domain, so audit events are
            // not counted here (tests/audit.rs counts them).
            let sql = if *t == "outbox" {
                "SELECT (SELECT COUNT(*) FROM outbox) - (SELECT COUNT(*) FROM audit_log)"
                    .to_string()
            } else {
                format!("SELECT COUNT(*) FROM {t}")
            };
            let n: i64 = conn.query_row(&sql, [], |r| r.get(0)).expect("count");
            (t.to_string(), n)
        })
        .collect()
    }

    /// A digest of every surplus row (status, version), to catch updates.
    pub fn surplus_digest(&self) -> Vec<(Vec<u8>, String, i64)> {
        let conn = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db");
        let mut stmt = conn
            .prepare("SELECT id, status, version FROM surplus ORDER BY id")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(e) = self.edge.take() {
            e.shutdown().await;
        }
        self.dir
    }
}

pub fn merge(base: &mut Value, overrides: Value) {
    if let (Some(b), Value::Object(o)) = (base.as_object_mut(), overrides) {
        for (k, v) in o {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
}

pub fn provider_body() -> Value {
    json!({"name": "Warung Sederhana", "lat": -6.2, "lon": 106.816,
           "contact_phone": "+62 21 555 1234", "contact_email": "owner@warung.example"})
}

pub fn recipient_body() -> Value {
    json!({"name": "Bank Makanan", "lat": -6.21, "lon": 106.82, "capacity_kg_per_day": 500.0,
           "accepted_food_types": ["prepared_meals", "bakery", "produce", "dairy", "meat_fish", "dry_goods", "frozen"],
           "is_fallback": false, "contact_phone": "+62 21 555 9876", "contact_email": "ops@bank.example"})
}

pub fn in_minutes(m: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::minutes(m);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

pub fn surplus_body(provider: &str) -> Value {
    json!({"provider_id": provider, "lat": -6.2, "lon": 106.816, "quantity_kg": 12.5,
           "food_type": "prepared_meals", "expires_at": in_minutes(180), "description": "nasi goreng"})
}

// Not every test binary that includes this module waits.
#[allow(unused_imports)]
pub use testkit::eventually;
