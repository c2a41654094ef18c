//! Signing in to the dashboard on a real hub (loopback, a throwaway
//! PostgreSQL): a login code or a hub token traded for an HttpOnly,
//! SameSite=Strict cookie; the cookie reads the fleet API; a cookie's
//! changes need the CSRF token; sign-out ends the session at the hub; the
//! refusals of sign-in, each with its code and nothing stored; sessions
//! expire (the stored expiry against a later "now" on the real database);
//! and plain HTTP from another address never gets a cookie.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use cloud_hub::auth::HubRole;
use cloud_hub::config::TlsFiles;
use cloud_hub::db::signin;
use cloud_hub::{Hub, HubConfig, certs};
use serde_json::{Value, json};
use sync_protocol::Timestamp;
use testkit::pg;

async fn start_hub(database_url: &str, dir: &Path, http: SocketAddr) -> (Hub, HubConfig) {
    certs::init(dir, &[], false).unwrap();
    let mut cfg = HubConfig {
        database_url: database_url.to_string(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: http,
        tls: TlsFiles {
            ca_cert: dir.join(certs::CA_CERT),
            cert: dir.join(certs::HUB_CERT),
            key: dir.join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    };
    if !http.ip().is_loopback() {
        cfg.http.plain_http = http_listener::PlainHttp::Anywhere;
    }
    (Hub::start(cfg.clone()).await.unwrap(), cfg)
}

fn now() -> Timestamp {
    sync_link::Clock::now(&sync_link::SystemClock)
}

fn token(cfg: &HubConfig, role: HubRole, sub: &str) -> String {
    cloud_hub::auth::issue(&cfg.auth, &cfg.token_keys_dir(), role, sub, 600, now()).unwrap()
}

async fn login_code(http: &reqwest::Client, base: &str, admin: &str, role: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/login-codes"))
        .bearer_auth(admin)
        .json(&json!({"role": role, "sub": "siti@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// POST /dashboard/session: (status, Set-Cookie, body).
async fn sign_in(http: &reqwest::Client, base: &str, body: Value) -> (u16, Option<String>, Value) {
    let r = http
        .post(format!("{base}/dashboard/session"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (status, cookie, r.json().await.unwrap_or(Value::Null))
}

/// The cookie's `name=value` pair.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

async fn sessions(url: &str) -> i64 {
    let c = pg::connect(url).await.unwrap();
    c.query_one("SELECT count(*) FROM dashboard_sessions", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_code_or_a_token_becomes_a_strict_http_only_session_that_reads_and_signs_out() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (hub, cfg) = start_hub(&tdb.url, dir.path(), ([127, 0, 0, 1], 0).into()).await;
    let base = format!("http://{}", hub.http_addr());
    let http = reqwest::Client::new();
    let admin = token(&cfg, HubRole::Admin, "ops");

    // A viewer's code: the cookie reads the fleet, cannot write.
    let code = login_code(&http, &base, &admin, "viewer").await;
    let (s, cookie, body) = sign_in(&http, &base, json!({"code": code.to_lowercase()})).await;
    assert_eq!(s, 201, "{body}");
    let cookie = cookie.expect("a Set-Cookie");
    assert!(cookie.starts_with("pahlawan_hub="), "{cookie}");
    for attr in [
        "; Path=/",
        "; HttpOnly",
        "; SameSite=Strict",
        "; Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    assert_eq!(
        (body["role"].as_str(), body["sub"].as_str()),
        (Some("viewer"), Some("siti@example.org"))
    );
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    let viewer = pair(&cookie);
    let get = |path: &str, cookie: &str| {
        http.get(format!("{base}{path}"))
            .header("cookie", cookie.to_string())
            .send()
    };
    for path in [
        "/api/v1/fleet/impact",
        "/api/v1/fleet/edges",
        "/api/v1/fleet/cells",
        "/api/v1/fleet/trouble",
        "/dashboard/session",
    ] {
        let r = get(path, &viewer).await.unwrap();
        assert_eq!(r.status(), 200, "{path} with the cookie");
    }
    let me: Value = get("/dashboard/session", &viewer)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["csrf_token"], csrf.as_str());
    let mint = |cookie: &str, csrf: Option<&str>| {
        let mut r = http
            .post(format!("{base}/api/v1/login-codes"))
            .header("cookie", cookie.to_string())
            .json(&json!({"role": "viewer", "sub": "x"}));
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t.to_string());
        }
        r.send()
    };
    let r = mint(&viewer, Some(&csrf)).await.unwrap();
    assert_eq!(r.status(), 403, "a viewer's cookie cannot write");

    // The code was used: it signs nobody in again.
    let (s, cookie2, body) = sign_in(&http, &base, json!({"code": code})).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("invalid_code")),
        "{body}"
    );
    assert!(cookie2.is_none());

    // An admin's token: the cookie writes only with its CSRF token.
    let (s, cookie, body) = sign_in(&http, &base, json!({"token": admin})).await;
    assert_eq!(s, 201, "{body}");
    let admin_cookie = pair(&cookie.unwrap());
    let admin_csrf = body["csrf_token"].as_str().unwrap().to_string();
    assert!(body["expires_at"].is_string(), "{body}");
    for (csrf, want, code) in [
        (None, 403, Some("csrf_token_mismatch")),
        (Some(csrf.as_str()), 403, Some("csrf_token_mismatch")),
        (Some(admin_csrf.as_str()), 201, None),
    ] {
        let r = mint(&admin_cookie, csrf).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want, code),
            "csrf {csrf:?}: {body}"
        );
    }
    assert_eq!(sessions(&tdb.url).await, 2);

    // Sign out: without the CSRF token refused; with it the session is gone.
    let out = |csrf: Option<&str>| {
        let mut r = http
            .delete(format!("{base}/dashboard/session"))
            .header("cookie", viewer.clone());
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t.to_string());
        }
        r.send()
    };
    assert_eq!(out(None).await.unwrap().status(), 403);
    let r = out(Some(&csrf)).await.unwrap();
    assert_eq!(r.status(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(sessions(&tdb.url).await, 1);
    for path in ["/api/v1/fleet/edges", "/dashboard/session"] {
        let r = get(path, &viewer).await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (401, Some("no_session")),
            "{path}"
        );
    }
    // A cookie that does not parse is no session either; none at all is
    // the bearer challenge.
    let r = get("/api/v1/fleet/edges", "pahlawan_hub=garbage")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/api/v1/fleet/edges"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    // The page and its assets carry the strict policy.
    for path in [
        "/dashboard",
        "/dashboard/app.js",
        "/dashboard/dashboard.css",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn sign_in_refusals_name_their_reason_and_store_nothing() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (hub, cfg) = start_hub(&tdb.url, dir.path(), ([127, 0, 0, 1], 0).into()).await;
    let base = format!("http://{}", hub.http_addr());
    let http = reqwest::Client::new();
    let admin = token(&cfg, HubRole::Admin, "ops");
    let edge_keys = dir.path().join("edge-keys");
    jwt_auth::keys::init(&edge_keys).unwrap();
    let edge_token = jwt_auth::keys::issue(
        &edge_keys,
        jwt_auth::keys::TokenSpec {
            issuer: "pahlawan",
            audience: "pahlawan-edge",
            role: "admin",
            sub: "ops",
            ttl_secs: 600,
        },
        now(),
    )
    .unwrap();
    let expired = cloud_hub::auth::issue(
        &cfg.auth,
        &cfg.token_keys_dir(),
        HubRole::Admin,
        "ops",
        600,
        now() + sync_protocol::Duration::from_mins(-60),
    )
    .unwrap();
    let table: Vec<(&str, Value, u16, &str)> = vec![
        ("neither code nor token", json!({}), 422, "code_or_token"),
        (
            "both",
            json!({"code": "7KQ2-MXW9-PA3D", "token": admin}),
            422,
            "code_or_token",
        ),
        (
            "an unknown field",
            json!({"password": "x"}),
            422,
            "invalid_body",
        ),
        (
            "a code that is not one",
            json!({"code": "hello"}),
            422,
            "malformed_code",
        ),
        (
            "a code nobody minted",
            json!({"code": "7KQ2-MXW9-PA3D"}),
            401,
            "invalid_code",
        ),
        (
            "an expired token",
            json!({"token": expired}),
            401,
            "token_expired",
        ),
        (
            "an edge's token",
            json!({"token": edge_token}),
            401,
            "unknown_kid",
        ),
        (
            "a token that is not one",
            json!({"token": "a.b.c"}),
            401,
            "malformed_token",
        ),
    ];
    let mut failures = Vec::new();
    for (name, body, want, code) in &table {
        let (s, cookie, got) = sign_in(&http, &base, body.clone()).await;
        if (s, got["error"]["code"].as_str()) != (*want, Some(*code)) || cookie.is_some() {
            failures.push(format!("{name}: {s} {got} {cookie:?}, want {want} {code}"));
        }
    }
    // Not JSON at all: a form post from another site cannot sign in.
    let r = http
        .post(format!("{base}/dashboard/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("code=7KQ2-MXW9-PA3D")
        .send()
        .await
        .unwrap();
    if r.status() != 415 {
        failures.push(format!("a form post: {}", r.status()));
    }
    // A foreign Origin: refused before the code is looked at (and kept).
    let code = login_code(&http, &base, &admin, "viewer").await;
    let r = http
        .post(format!("{base}/dashboard/session"))
        .header("origin", "https://evil.example")
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    if (status, body["error"]["code"].as_str()) != (403, Some("foreign_origin")) {
        failures.push(format!("a foreign origin: {status} {body}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(sessions(&tdb.url).await, 0, "no refusal stored a session");
    // The code a foreign page tried is still good for its owner.
    let origin = format!("http://{}", hub.http_addr());
    let r = http
        .post(format!("{base}/dashboard/session"))
        .header("origin", origin)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Rate limit: the eight refusals of the table, the form post and this
    // success were ten attempts from 127.0.0.1 within the minute (the
    // foreign origin was turned away before counting): the eleventh is
    // refused.
    let (s, _, body) = sign_in(&http, &base, json!({"code": "7KQ2-MXW9-PA3D"})).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_session_expires_at_its_stored_time() {
    let tdb = pg::fresh_database().await;
    let mut c = cloud_hub::db::connect(&tdb.url).await.unwrap();
    cloud_hub::db::migrate(&mut c).await.unwrap();
    let t0 = time::macros::datetime!(2026-12-03 09:00 UTC);
    let digest = [7u8; 32];
    let new = signin::NewSession {
        sha256: digest,
        role: "viewer",
        sub: "siti",
        expires_at: t0 + time::Duration::hours(12),
    };
    assert!(signin::insert_session(&c, &new, t0).await.unwrap());
    let live = signin::session(&c, &digest, t0 + time::Duration::hours(11))
        .await
        .unwrap();
    assert_eq!(live.map(|s| s.sub), Some("siti".to_string()));
    assert_eq!(
        signin::session(&c, &digest, t0 + time::Duration::hours(12))
            .await
            .unwrap(),
        None,
        "expired at its time"
    );
    // The next sign-in forgets it.
    let other = signin::NewSession {
        sha256: [8; 32],
        ..new
    };
    assert!(
        signin::insert_session(&c, &other, t0 + time::Duration::hours(13))
            .await
            .unwrap()
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM dashboard_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the expired session was forgotten");
    assert!(signin::end_session(&c, &[8; 32]).await.unwrap());
    assert!(!signin::end_session(&c, &[8; 32]).await.unwrap());
}

/// This machine's first address off loopback, if it has one.
fn lan_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it picks the outgoing address.
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn plain_http_from_another_address_gets_no_session() {
    let Some(ip) = lan_address() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI machines have an address off loopback"
        );
        eprintln!("SKIP: no address off loopback");
        return;
    };
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (hub, cfg) = start_hub(&tdb.url, dir.path(), SocketAddr::new(ip, 0)).await;
    let base = format!("http://{}", hub.http_addr());
    let http = reqwest::Client::new();
    let admin = token(&cfg, HubRole::Admin, "ops");
    // The bearer token still works (the operator chose plain HTTP anywhere).
    let code = login_code(&http, &base, &admin, "viewer").await;
    let (s, cookie, body) = sign_in(&http, &base, json!({"code": code})).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("insecure_transport")),
        "{body}"
    );
    assert!(cookie.is_none());
    assert_eq!(sessions(&tdb.url).await, 0);
    // A cookie minted elsewhere is not taken here either.
    let r = http
        .get(format!("{base}/api/v1/fleet/edges"))
        .header("cookie", format!("pahlawan_hub={}", "A".repeat(43)))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insecure_transport"))
    );
    hub.shutdown().await;
}
