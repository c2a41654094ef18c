//! The hub's HTTP API asks who is calling: a real hub on loopback against a
//! throwaway PostgreSQL, and the hostile-token table (RFC 8725's classes,
//! and an edge's token, which must not open the hub) → 401; a viewer
//! changing anything → 403; health, readiness and metrics stay open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_hub::auth::HubRole;
use cloud_hub::config::TlsFiles;
use cloud_hub::{Hub, HubConfig, certs};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt_auth::keys::{self, TokenSpec};
use sync_protocol::{Duration, Timestamp};
use testkit::pg;

async fn start_hub(database_url: &str, dir: &Path) -> (Hub, HubConfig) {
    certs::init(dir, &[], false).unwrap();
    let cfg = HubConfig {
        database_url: database_url.to_string(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: dir.join(certs::CA_CERT),
            cert: dir.join(certs::HUB_CERT),
            key: dir.join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    };
    (Hub::start(cfg.clone()).await.unwrap(), cfg)
}

fn now() -> Timestamp {
    sync_link::Clock::now(&sync_link::SystemClock)
}

/// A token signed with the PEM in `dir`, as `spec` says, issued at `at`.
fn signed(dir: &Path, spec: TokenSpec<'_>, at: Timestamp) -> String {
    keys::issue(dir, spec, at).unwrap()
}

fn spec<'a>(iss: &'a str, aud: &'a str, role: &'a str) -> TokenSpec<'a> {
    TokenSpec {
        issuer: iss,
        audience: aud,
        role,
        sub: "ops",
        ttl_secs: 600,
    }
}

/// The hostile tokens, by name, each as an `Authorization` value.
fn hostile(hub_keys: &Path, edge_keys: &Path) -> Vec<(&'static str, Option<String>, &'static str)> {
    let pem = std::fs::read_to_string(hub_keys.join(keys::SIGNING_KEY)).unwrap();
    let kid = keys::public_jwk(&pem).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let t = now().unix_ms() / 1_000;
    let claims = serde_json::json!({"iss": "pahlawan-hub", "aud": "pahlawan-hub", "sub": "mallory",
        "role": "admin", "iat": t, "nbf": t, "exp": t + 600});
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "kid": kid})),
        b64(claims.clone())
    );
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        let public = keys::public_jwk(&pem).unwrap().to_string();
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(public.as_bytes())).unwrap()
    };
    let hub = |s: TokenSpec<'_>, at| Some(format!("Bearer {}", signed(hub_keys, s, at)));
    let ago = now() + Duration::from_mins(-60);
    vec![
        ("no token", None, "missing_token"),
        (
            "not a bearer token",
            Some("Basic b3BzOm9wcw==".into()),
            "malformed_token",
        ),
        (
            "alg: none",
            Some(format!("Bearer {alg_none}")),
            "unsupported_algorithm",
        ),
        (
            "HS256 signed with the public key",
            Some(format!("Bearer {hs256_with_public_key}")),
            "unsupported_algorithm",
        ),
        (
            "expired",
            hub(spec("pahlawan-hub", "pahlawan-hub", "admin"), ago),
            "token_expired",
        ),
        (
            "wrong audience (the edge's), the hub's key",
            hub(spec("pahlawan-hub", "pahlawan-edge", "admin"), now()),
            "wrong_audience",
        ),
        (
            "an edge's admin token (its issuer, audience and key)",
            Some(format!(
                "Bearer {}",
                signed(edge_keys, spec("pahlawan", "pahlawan-edge", "admin"), now())
            )),
            "unknown_kid",
        ),
        (
            "an edge role on a hub token",
            hub(spec("pahlawan-hub", "pahlawan-hub", "provider"), now()),
            "invalid_claims",
        ),
    ]
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = http.request(method.clone(), url);
    if method == reqwest::Method::POST {
        req = req.json(&serde_json::json!({"role": "viewer", "sub": "siti"}));
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn hostile_tokens_get_401_viewers_cannot_write_and_probes_stay_open() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (hub, cfg) = start_hub(&tdb.url, dir.path()).await;
    let hub_keys = cfg.token_keys_dir();
    let edge_keys = dir.path().join("edge-keys");
    keys::init(&edge_keys).unwrap();
    let base = format!("http://{}", hub.http_addr());
    let http = reqwest::Client::new();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let mut failures = Vec::new();
    for (name, authorization, code) in hostile(&hub_keys, &edge_keys) {
        for (method, path) in [(&get, "/api/v1/edges"), (&post, "/api/v1/login-codes")] {
            let url = format!("{base}{path}");
            let (status, body) = call(&http, method.clone(), &url, authorization.as_deref()).await;
            if (status, body["error"]["code"].as_str()) != (401, Some(code)) {
                failures.push(format!(
                    "{name}, {method} {path}: {status} {body}, want 401 {code}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let token = |role| {
        let t = cloud_hub::auth::issue(&cfg.auth, &hub_keys, role, "siti", 600, now()).unwrap();
        format!("Bearer {t}")
    };
    let (viewer, admin) = (token(HubRole::Viewer), token(HubRole::Admin));
    let codes = format!("{base}/api/v1/login-codes");
    let (s, body) = call(&http, post.clone(), &codes, Some(&viewer)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("forbidden_role")),
        "{body}"
    );
    let (s, body) = call(
        &http,
        post.clone(),
        &format!("{base}/api/v1/edges"),
        Some(&viewer),
    )
    .await;
    assert_eq!(s, 403, "a viewer's write to a read-only route: {body}");
    for path in ["/api/v1/edges", "/api/v1/impact"] {
        let (s, body) = call(&http, get.clone(), &format!("{base}{path}"), Some(&viewer)).await;
        assert_eq!(s, 200, "a viewer reads {path}: {body}");
    }
    let (s, body) = call(&http, post.clone(), &codes, Some(&admin)).await;
    assert_eq!(s, 201, "an admin mints a login code: {body}");
    assert_eq!(
        (body["role"].as_str(), body["sub"].as_str()),
        (Some("viewer"), Some("siti"))
    );
    assert!(
        cloud_hub::auth::login_code_digest(body["code"].as_str().unwrap()).is_some(),
        "{body}"
    );

    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} needs no token");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_login_code_request_is_checked_before_anything_is_stored() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (hub, cfg) = start_hub(&tdb.url, dir.path()).await;
    let admin = cloud_hub::auth::issue(
        &cfg.auth,
        &cfg.token_keys_dir(),
        HubRole::Admin,
        "ops",
        600,
        now(),
    )
    .unwrap();
    let url = format!("http://{}/api/v1/login-codes", hub.http_addr());
    let http = reqwest::Client::new();
    let cases: [(&str, &str, u16, &str); 7] = [
        ("no JSON", "role=viewer", 400, "malformed_json"),
        ("not an object", "[]", 422, "invalid_body"),
        (
            "an edge role",
            r#"{"role":"ngo","sub":"x"}"#,
            422,
            "invalid_role",
        ),
        (
            "an empty subject",
            r#"{"role":"viewer","sub":"  "}"#,
            422,
            "invalid_sub",
        ),
        (
            "a control character",
            r#"{"role":"viewer","sub":"a\nb"}"#,
            422,
            "invalid_sub",
        ),
        (
            "a day-long code",
            r#"{"role":"viewer","sub":"x","ttl_secs":86400}"#,
            422,
            "invalid_ttl",
        ),
        (
            "an unknown field",
            r#"{"role":"viewer","sub":"x","admin":true}"#,
            422,
            "invalid_body",
        ),
    ];
    for (name, body, status, code) in cases {
        let r = http
            .post(&url)
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (got, json["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {json}"
        );
    }
    let c = cloud_hub::db::connect(&tdb.url).await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM login_codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing refused was stored");
    hub.shutdown().await;
}

#[tokio::test]
async fn metrics_can_be_kept_to_a_listen_address_of_their_own() {
    let tdb = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    certs::init(dir.path(), &[], false).unwrap();
    let mut cfg = HubConfig {
        database_url: tdb.url.clone(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: dir.path().join(certs::CA_CERT),
            cert: dir.path().join(certs::HUB_CERT),
            key: dir.path().join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    };
    cfg.http.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let hub = Hub::start(cfg).await.unwrap();
    let metrics = hub.metrics_addr().expect("a metrics listener");
    let main = reqwest::get(format!("http://{}/metrics", hub.http_addr()))
        .await
        .unwrap();
    assert_eq!(main.status(), 404, "not on the API's address");
    let apart = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(apart.status(), 200);
    assert!(
        apart.text().await.unwrap().contains("hub_"),
        "the hub's series"
    );
    let other = reqwest::get(format!("http://{metrics}/api/v1/edges"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "nothing else on the metrics address");
    hub.shutdown().await;

    let mut open = HubConfig {
        database_url: tdb.url.clone(),
        ..HubConfig::default()
    };
    open.http.metrics_listen = Some(SocketAddr::from(([0, 0, 0, 0], 9091)));
    let refused = open.validate().unwrap_err().to_string();
    assert!(refused.contains("metrics_listen"), "{refused}");
}
