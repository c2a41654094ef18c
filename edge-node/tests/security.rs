//! Authentication, authorization and rate limits over real HTTP: every
//! protected operation refuses strangers (401), no subject can act on
//! another's objects (403, zero successes, nothing changed), and the limits
//! are exact to the bucket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestEdge, recipient_body, surplus_body};
use edge_node::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct World {
    t: TestEdge,
    p1: String,
    p2: String,
    r1: String,
    r2: String,
    s1: String,
}

async fn world(tweak: impl FnOnce(&mut edge_node::EdgeConfig)) -> World {
    let t = TestEdge::start_with(tweak).await;
    let p1 = t.provider().await;
    let p2 = t.provider().await;
    let r1 = t.recipient(-6.205, 106.816).await;
    let r2 = t.recipient(-6.30, 106.9).await;
    let s1 = t.surplus(&p1, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    World {
        t,
        p1,
        p2,
        r1,
        r2,
        s1,
    }
}

/// Every protected operation with a plausible body, as (method, path, body).
fn operations(w: &World) -> Vec<(Method, String, Value)> {
    let (s, r1, p1) = (&w.s1, &w.r1, &w.p1);
    vec![
        (Method::POST, "/providers".into(), common::provider_body()),
        (Method::GET, format!("/providers/{p1}"), Value::Null),
        (Method::POST, "/recipients".into(), recipient_body()),
        (Method::GET, format!("/recipients/{r1}"), Value::Null),
        (Method::POST, "/surplus".into(), surplus_body(p1)),
        (
            Method::GET,
            "/surplus?lat=-6.2&lon=106.816".into(),
            Value::Null,
        ),
        (Method::GET, format!("/surplus/{s}"), Value::Null),
        (
            Method::POST,
            format!("/surplus/{s}/claim"),
            json!({"recipient_id": r1, "version": 2}),
        ),
        (
            Method::POST,
            format!("/surplus/{s}/pickup"),
            json!({"recipient_id": r1}),
        ),
        (
            Method::POST,
            format!("/surplus/{s}/deliver"),
            json!({"recipient_id": r1, "delivered_kg": 1.0}),
        ),
        (
            Method::POST,
            format!("/offers/{s}/accept"),
            json!({"recipient_id": r1}),
        ),
        (
            Method::POST,
            format!("/offers/{s}/decline"),
            json!({"recipient_id": r1}),
        ),
        (Method::GET, format!("/recipients/{r1}/offers"), Value::Null),
        (
            Method::GET,
            format!("/recipients/{r1}/offers/stream"),
            Value::Null,
        ),
        (Method::GET, "/sync".into(), Value::Null),
        (Method::GET, format!("/subjects/{p1}/export"), Value::Null),
        (Method::GET, format!("/subjects/{r1}/export"), Value::Null),
        (Method::POST, format!("/subjects/{p1}/erase"), Value::Null),
        (Method::POST, format!("/subjects/{r1}/erase"), Value::Null),
        (Method::GET, format!("/recipients/{r1}/claims"), Value::Null),
        (
            Method::POST,
            "/kiosk/pairings".into(),
            json!({"recipient_id": r1}),
        ),
        (Method::GET, "/kiosk/devices".into(), Value::Null),
        (
            Method::POST,
            format!("/kiosk/devices/{r1}/revoke"),
            Value::Null,
        ),
    ]
}

/// Protected operations any authenticated caller may use for itself (a
/// stranger to the objects is still a caller): closed to the anonymous.
fn own_operations(w: &World) -> Vec<(Method, String, Value)> {
    vec![
        (
            Method::GET,
            format!("/providers/{}/card", w.p1),
            Value::Null,
        ),
        (Method::GET, "/kiosk/session".into(), Value::Null),
    ]
}

async fn call(
    c: &reqwest::Client,
    t: &TestEdge,
    m: &Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = c.request(m.clone(), t.url(path));
    if !body.is_null() {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"))
    {
        return (status, Value::Null);
    }
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn strangers_get_401_on_every_protected_operation_and_public_routes_stay_open() {
    let w = world(|_| {}).await;
    let anon = reqwest::Client::new();
    for (m, path, body) in operations(&w).into_iter().chain(own_operations(&w)) {
        let resp = anon
            .request(m.clone(), w.t.url(&path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{m} {path}");
        assert!(
            resp.headers().get("www-authenticate").is_some(),
            "{m} {path}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "missing_token", "{m} {path}");
    }
    let forged =
        w.t.client
            .get(w.t.url("/sync"))
            .header("authorization", "Bearer not.a.token")
            .send()
            .await
            .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/healthz",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(
            anon.get(format!("{}{path}", w.t.base))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn no_subject_can_act_on_another_subjects_objects() {
    let w = world(|_| {}).await;
    let (t, p2, r2) = (&w.t, w.p2.clone(), w.r2.clone());
    // Callers who are neither admin nor the subject of the operation's objects.
    let strangers = [
        ("another provider", t.as_role(Role::Provider, &p2)),
        ("another recipient", t.as_role(Role::Ngo, &r2)),
    ];
    let counts = t.table_counts();
    let digest = t.surplus_digest();
    let mut successes = Vec::new();
    for (who, client) in &strangers {
        for (m, path, body) in operations(&w) {
            let (status, b) = call(client, t, &m, &path, &body).await;
            let open_to_all = m == Method::GET && (path.starts_with("/surplus"));
            if open_to_all {
                assert_eq!(status, StatusCode::OK, "{who}: {m} {path}");
                continue;
            }
            if status != StatusCode::FORBIDDEN {
                successes.push(format!("{who}: {m} {path} → {status} {b}"));
            } else {
                let code = b["error"]["code"].as_str().unwrap_or("");
                assert!(
                    code == "forbidden_role" || code == "wrong_subject",
                    "{who}: {m} {path}: {b}"
                );
            }
        }
    }
    assert!(
        successes.is_empty(),
        "zero successes expected:\n{}",
        successes.join("\n")
    );
    assert_eq!(t.table_counts(), counts, "nothing changed");
    assert_eq!(t.surplus_digest(), digest);
}

#[tokio::test]
async fn subjects_act_for_themselves_and_only_admins_see_contact_data() {
    let w = world(|_| {}).await;
    let t = &w.t;
    let p1 = t.as_role(Role::Provider, &w.p1);
    let r1 = t.as_role(Role::Ngo, &w.r1);
    // The provider posts for itself; the recipient answers for itself.
    let (s, posted) = call(&p1, t, &Method::POST, "/surplus", &surplus_body(&w.p1)).await;
    assert_eq!(s, StatusCode::CREATED, "{posted}");
    let (s, _) = call(
        &r1,
        t,
        &Method::GET,
        &format!("/recipients/{}/offers", w.r1),
        &Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &r1,
        t,
        &Method::POST,
        &format!("/offers/{}/accept", w.s1),
        &json!({"recipient_id": w.r1}),
    )
    .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("claimed")),
        "{b}"
    );
    // Contact data: admins only, not even the subject itself.
    let (s, me) = call(
        &p1,
        t,
        &Method::GET,
        &format!("/providers/{}", w.p1),
        &Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (me["contact_phone"].clone(), me["contact_email"].clone()),
        (Value::Null, Value::Null)
    );
    let (_, full) = call(
        &t.client,
        t,
        &Method::GET,
        &format!("/providers/{}", w.p1),
        &Value::Null,
    )
    .await;
    assert!(full["contact_phone"].is_string() && full["contact_email"].is_string());
    let (s, me) = call(
        &r1,
        t,
        &Method::GET,
        &format!("/recipients/{}", w.r1),
        &Value::Null,
    )
    .await;
    assert_eq!(
        (s, me["contact_phone"].clone()),
        (StatusCode::OK, Value::Null)
    );
}

#[tokio::test]
async fn rate_limits_are_exact_to_the_bucket_and_per_subject() {
    let w = world(|c| {
        c.rate_limits.provider_per_minute = 5;
        c.rate_limits.ngo_per_minute = 3;
    })
    .await;
    let t = &w.t;
    let p1 = t.as_role(Role::Provider, &w.p1);
    for i in 0..5 {
        let resp = p1
            .get(t.url(&format!("/surplus/{}", w.s1)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        assert_eq!(resp.headers()["ratelimit-limit"], "5");
        assert_eq!(
            resp.headers()["ratelimit-remaining"],
            (4 - i).to_string().as_str()
        );
    }
    let refused = p1
        .get(t.url(&format!("/surplus/{}", w.s1)))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.headers()["retry-after"],
        "12",
        "one token per 12 s at 5/min"
    );
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another provider has its own bucket; recipients have theirs, smaller.
    let p2 = t.as_role(Role::Provider, &w.p2);
    assert_eq!(
        p2.get(t.url(&format!("/surplus/{}", w.s1)))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r1 = t.as_role(Role::Ngo, &w.r1);
    let statuses: Vec<u16> = futures::future::join_all(
        (0..6).map(|_| r1.get(t.url("/surplus?lat=-6.2&lon=106.816")).send()),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap().status().as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "concurrent requests cannot overdraw: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3);
}

#[tokio::test]
async fn a_recipient_cannot_mass_claim() {
    let w = world(|c| c.rate_limits.max_open_claims_per_recipient = 2).await;
    let t = &w.t;
    let r1 = t.as_role(Role::Ngo, &w.r1);
    let mut ids = vec![w.s1.clone()];
    for _ in 0..2 {
        ids.push(
            t.surplus(&w.p1, json!({})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut outcomes = Vec::new();
    for id in &ids {
        let (_, now) = t.get(&format!("/surplus/{id}")).await;
        let v = now["version"].as_u64().unwrap();
        let (s, b) = call(
            &r1,
            t,
            &Method::POST,
            &format!("/surplus/{id}/claim"),
            &json!({"recipient_id": w.r1, "version": v}),
        )
        .await;
        outcomes.push((s, b["error"]["code"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(outcomes[0].0, StatusCode::OK);
    assert_eq!(outcomes[1].0, StatusCode::OK);
    assert_eq!(
        outcomes[2],
        (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_open_claims".to_string()
        )
    );
}

#[tokio::test]
async fn an_address_flooding_forged_tokens_is_turned_away_before_verification() {
    let t = common::TestEdge::start_with(|c| c.rate_limits.failed_auth_per_minute = 5).await;
    // Signed by a key this edge does not know: refused after parsing.
    let stranger = tempfile::tempdir().unwrap();
    edge_node::auth::keys::init(stranger.path()).unwrap();
    let forged = common::token(stranger.path(), Role::Admin, "mallory");
    let anon = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let resp = anon
            .get(t.url("/sync"))
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");
    let resp = anon
        .get(t.url("/sync"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_failed_tokens");
    // Requests with no token at all cost nothing and are not counted; the
    // probes stay open.
    let probe = anon
        .get(format!("{}/healthz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
}
