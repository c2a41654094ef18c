//! The HTTP API over a real socket with a real SQLite file: the lifecycle,
//! concurrent claims, idempotent retries, and a table of bad inputs each of
//! which must get the right status and error code and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    TestEdge, eventually, in_minutes, merge, provider_body, recipient_body, surplus_body,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_whole_lifecycle_over_http() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let near = t.recipient(-6.205, 106.816).await;
    let far = t.recipient(-6.25, 106.816).await;
    let s = t.surplus(&p, json!({})).await;
    assert_eq!(s["status"], "offered");
    assert_eq!(s["version"], 2);
    assert_eq!(s["offer"]["recipient_id"], near.as_str());
    assert!(s["cell"].as_str().is_some_and(|c| !c.is_empty()));
    let id = s["id"].as_str().unwrap().to_string();

    let (st, offers) = t.get(&format!("/recipients/{near}/offers")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(offers["items"][0]["id"], id.as_str());

    let (st, after) = t
        .post(
            &format!("/offers/{id}/decline"),
            json!({"recipient_id": near}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{after}");
    assert_eq!(
        after["offer"]["recipient_id"],
        far.as_str(),
        "rematched, excluding the decliner"
    );
    let (_, offers) = t.get(&format!("/recipients/{near}/offers")).await;
    assert_eq!(offers["items"], json!([]));

    let (st, claimed) = t
        .post(
            &format!("/offers/{id}/accept"),
            json!({"recipient_id": far}),
        )
        .await;
    assert_eq!(
        (st, claimed["status"].as_str()),
        (StatusCode::OK, Some("claimed")),
        "{claimed}"
    );
    assert_eq!(claimed["claimed_by"], far.as_str());
    let (st, picked) = t
        .post(
            &format!("/surplus/{id}/pickup"),
            json!({"recipient_id": far}),
        )
        .await;
    assert_eq!(
        (st, picked["status"].as_str()),
        (StatusCode::OK, Some("picked_up"))
    );
    let (st, done) = t
        .post(
            &format!("/surplus/{id}/deliver"),
            json!({"recipient_id": far, "delivered_kg": 12.0}),
        )
        .await;
    assert_eq!(
        (st, done["status"].as_str()),
        (StatusCode::OK, Some("delivered")),
        "{done}"
    );
    assert_eq!(done["delivered_kg"], 12.0);

    let (st, got) = t.get(&format!("/surplus/{id}")).await;
    assert_eq!(
        (st, got["status"].as_str(), got["version"].as_u64()),
        (StatusCode::OK, Some("delivered"), Some(7))
    );
    let (st, list) = t.get("/surplus?lat=-6.2&lon=106.816&radius_km=2").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert!(list["items"][0]["distance_km"].as_f64().is_some());

    // Every change is in the outbox, densely numbered.
    let conn = rusqlite::Connection::open(t.db_path()).unwrap();
    let (n, max): (i64, i64) = conn
        .query_row("SELECT COUNT(*), MAX(seq) FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(n, max);
    // provider + 2 recipients + posted + offer + declined + offer + claimed
    // + picked up + delivered, and an audit record for each of the 8 calls.
    assert_eq!(n, 10 + 8);
    let actions: Vec<(String, i64)> = conn
        .prepare("SELECT action, status FROM audit_log ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [
        ("provider.register", 201),
        ("recipient.register", 201),
        ("recipient.register", 201),
        ("surplus.post", 201),
        ("offer.decline", 200),
        ("offer.accept", 200),
        ("surplus.pickup", 200),
        ("surplus.deliver", 200),
    ];
    assert_eq!(
        actions,
        expected.map(|(a, s)| (a.to_string(), s)).to_vec(),
        "one audit record per mutating call, in order"
    );
}

#[tokio::test]
async fn fifty_concurrent_claims_have_exactly_one_winner() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let mut recipients = Vec::new();
    for i in 0..50 {
        recipients.push(t.recipient(-6.21 - f64::from(i) * 0.001, 106.82).await);
    }
    let s = t.surplus(&p, json!({})).await;
    let (id, version) = (
        s["id"].as_str().unwrap().to_string(),
        s["version"].as_u64().unwrap(),
    );
    let claims = recipients.iter().map(|r| {
        let t = &t;
        let id = &id;
        async move {
            t.post(
                &format!("/surplus/{id}/claim"),
                json!({"recipient_id": r, "version": version}),
            )
            .await
        }
    });
    let results = futures::future::join_all(claims).await;
    let winners: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim succeeds");
    let winner = winners[0].1["claimed_by"].as_str().unwrap().to_string();
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "already_claimed");
        assert_eq!(
            body["error"]["current"]["claimed_by"],
            winner.as_str(),
            "the loser sees the current state"
        );
    }
    let (_, now) = t.get(&format!("/surplus/{id}")).await;
    assert_eq!(now["claimed_by"], winner.as_str());
    let conn = rusqlite::Connection::open(t.db_path()).unwrap();
    let claims: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM surplus WHERE claimed_by IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(claims, 1);
}

#[tokio::test]
async fn a_stale_version_loses_with_the_current_state() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r1 = t.recipient(-6.205, 106.816).await;
    let r2 = t.recipient(-6.25, 106.816).await;
    let s = t.surplus(&p, json!({})).await;
    let id = s["id"].as_str().unwrap();
    let (st, _) = t
        .post(
            &format!("/offers/{id}/decline"),
            json!({"recipient_id": r1}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = t
        .post(
            &format!("/surplus/{id}/claim"),
            json!({"recipient_id": r2, "version": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "stale_version");
    assert_eq!(body["error"]["current"]["version"], 4);
    let (st, body) = t
        .post(
            &format!("/surplus/{id}/claim"),
            json!({"recipient_id": r2, "version": 4}),
        )
        .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (StatusCode::OK, Some("claimed"))
    );
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_same_surplus() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    t.recipient(-6.205, 106.816).await;
    let body = surplus_body(&p);
    let send = |key: &'static str, body: Value| {
        let t = &t;
        async move {
            let r = t
                .client
                .post(t.url("/surplus"))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (r.status(), replayed, r.json::<Value>().await.unwrap())
        }
    };
    let (s1, replay1, first) = send("order-123", body.clone()).await;
    let (s2, replay2, second) = send("order-123", body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!((replay1, replay2), (false, true));
    assert_eq!(first["id"], second["id"]);

    // Ten concurrent retries of a new key still make one surplus.
    let before = t.table_counts();
    let results = futures::future::join_all((0..10).map(|_| send("order-456", body.clone()))).await;
    let ids: std::collections::HashSet<_> = results
        .iter()
        .map(|(_, _, b)| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        results.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
    let after = t.table_counts();
    let surplus = |c: &[(String, i64)]| c.iter().find(|(n, _)| n == "surplus").unwrap().1;
    assert_eq!(surplus(&after), surplus(&before) + 1);

    // The same key with a different body is refused and changes nothing.
    let mut other = body.clone();
    merge(&mut other, json!({"quantity_kg": 99.0}));
    let before = t.table_counts();
    let (status, _, err) = send("order-123", other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    assert_eq!(t.table_counts(), before);
}

/// One row of the bad-input table.
struct Bad {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: String,
    headers: Vec<(&'static str, String)>,
    status: u16,
    code: &'static str,
}

fn bad(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: Value,
    status: u16,
    code: &'static str,
) -> Bad {
    Bad {
        name,
        method,
        path: path.to_string(),
        content_type: Some("application/json"),
        body: body.to_string(),
        headers: Vec::new(),
        status,
        code,
    }
}

fn with(base: &Value, overrides: Value) -> Value {
    let mut b = base.clone();
    merge(&mut b, overrides);
    b
}

#[tokio::test]
async fn bad_inputs_get_a_clear_error_and_change_nothing() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r = t.recipient(-6.205, 106.816).await;
    let live = t.surplus(&p, json!({})).await;
    let id = live["id"].as_str().unwrap().to_string();
    let random = uuid::Uuid::now_v7().to_string();
    let sb = surplus_body(&p);
    let pb = provider_body();
    let rb = recipient_body();
    let bandung = json!({"lat": -6.9175, "lon": 107.6191});
    let mut table = vec![
        Bad {
            body: "{\"provider_id\": ".into(),
            ..bad(
                "truncated JSON",
                "POST",
                "/surplus",
                json!({}),
                400,
                "malformed_json",
            )
        },
        Bad {
            body: "{\"lat\": NaN}".into(),
            ..bad(
                "bare NaN is not JSON",
                "POST",
                "/surplus",
                json!({}),
                400,
                "malformed_json",
            )
        },
        Bad {
            content_type: None,
            ..bad(
                "no content type",
                "POST",
                "/surplus",
                sb.clone(),
                415,
                "unsupported_media_type",
            )
        },
        Bad {
            content_type: Some("text/plain"),
            ..bad(
                "text/plain",
                "POST",
                "/surplus",
                sb.clone(),
                415,
                "unsupported_media_type",
            )
        },
        bad(
            "body over 64 KiB",
            "POST",
            "/surplus",
            with(&sb, json!({"description": "x".repeat(70 * 1024)})),
            413,
            "payload_too_large",
        ),
        bad(
            "latitude 91",
            "POST",
            "/surplus",
            with(&sb, json!({"lat": 91.0})),
            422,
            "invalid_coordinates",
        ),
        bad(
            "longitude -181",
            "POST",
            "/surplus",
            with(&sb, json!({"lon": -181.0})),
            422,
            "invalid_coordinates",
        ),
        bad(
            "NaN latitude as null",
            "POST",
            "/surplus",
            with(&sb, json!({"lat": Value::Null})),
            422,
            "invalid_field",
        ),
        bad(
            "NaN latitude as a string",
            "POST",
            "/surplus",
            with(&sb, json!({"lat": "NaN"})),
            422,
            "invalid_field",
        ),
        bad(
            "zero quantity",
            "POST",
            "/surplus",
            with(&sb, json!({"quantity_kg": 0.0})),
            422,
            "invalid_quantity",
        ),
        bad(
            "negative quantity",
            "POST",
            "/surplus",
            with(&sb, json!({"quantity_kg": -3.0})),
            422,
            "invalid_quantity",
        ),
        bad(
            "absurd quantity",
            "POST",
            "/surplus",
            with(&sb, json!({"quantity_kg": 1e9})),
            422,
            "invalid_quantity",
        ),
        bad(
            "a milligram",
            "POST",
            "/surplus",
            with(&sb, json!({"quantity_kg": 1e-7})),
            422,
            "invalid_quantity",
        ),
        bad(
            "expiry in the past",
            "POST",
            "/surplus",
            with(&sb, json!({"expires_at": in_minutes(-5)})),
            422,
            "expiry_in_past",
        ),
        bad(
            "expiry not a date",
            "POST",
            "/surplus",
            with(&sb, json!({"expires_at": "tomorrow"})),
            422,
            "invalid_expiry",
        ),
        bad(
            "expiry a month away",
            "POST",
            "/surplus",
            with(&sb, json!({"expires_at": in_minutes(60 * 24 * 30)})),
            422,
            "invalid_expiry",
        ),
        bad(
            "unknown food type",
            "POST",
            "/surplus",
            with(&sb, json!({"food_type": "pizza"})),
            422,
            "unknown_food_type",
        ),
        bad(
            "unknown provider",
            "POST",
            "/surplus",
            with(&sb, json!({"provider_id": random})),
            422,
            "unknown_provider",
        ),
        bad(
            "provider id not a uuid",
            "POST",
            "/surplus",
            with(&sb, json!({"provider_id": "p-1"})),
            422,
            "invalid_field",
        ),
        bad(
            "missing field",
            "POST",
            "/surplus",
            with(&sb, json!({"food_type": Value::Null})),
            422,
            "invalid_field",
        ),
        bad(
            "unknown field",
            "POST",
            "/surplus",
            with(&sb, json!({"status": "delivered"})),
            422,
            "invalid_field",
        ),
        bad(
            "description too long",
            "POST",
            "/surplus",
            with(&sb, json!({"description": "x".repeat(2_001)})),
            422,
            "invalid_description",
        ),
        bad(
            "NUL in the description (PostgreSQL text cannot hold it)",
            "POST",
            "/surplus",
            with(&sb, json!({"description": "nasi\u{0}goreng"})),
            422,
            "invalid_description",
        ),
        bad(
            "escape sequence in the description",
            "POST",
            "/surplus",
            with(&sb, json!({"description": "\u{1b}[31mred"})),
            422,
            "invalid_description",
        ),
        bad(
            "outside this edge's cells",
            "POST",
            "/surplus",
            with(&sb, bandung.clone()),
            421,
            "misdirected",
        ),
        Bad {
            headers: vec![("idempotency-key", "has spaces in it".into())],
            ..bad(
                "bad idempotency key",
                "POST",
                "/surplus",
                sb.clone(),
                422,
                "invalid_idempotency_key",
            )
        },
        bad(
            "provider without a name",
            "POST",
            "/providers",
            with(&pb, json!({"name": "  "})),
            422,
            "invalid_name",
        ),
        bad(
            "provider with a bad e-mail",
            "POST",
            "/providers",
            with(&pb, json!({"contact_email": "nope"})),
            422,
            "invalid_email",
        ),
        bad(
            "provider with a bad phone",
            "POST",
            "/providers",
            with(&pb, json!({"contact_phone": "call me"})),
            422,
            "invalid_phone",
        ),
        bad(
            "provider in Bandung",
            "POST",
            "/providers",
            with(&pb, bandung.clone()),
            421,
            "misdirected",
        ),
        bad(
            "recipient accepting nothing",
            "POST",
            "/recipients",
            with(&rb, json!({"accepted_food_types": []})),
            422,
            "invalid_food_types",
        ),
        bad(
            "recipient accepting pizza",
            "POST",
            "/recipients",
            with(&rb, json!({"accepted_food_types": ["pizza"]})),
            422,
            "unknown_food_type",
        ),
        bad(
            "recipient with no capacity",
            "POST",
            "/recipients",
            with(&rb, json!({"capacity_kg_per_day": 0.0})),
            422,
            "invalid_capacity",
        ),
        bad(
            "recipient at latitude -95",
            "POST",
            "/recipients",
            with(&rb, json!({"lat": -95.0})),
            422,
            "invalid_coordinates",
        ),
        bad(
            "claim by an unknown recipient",
            "POST",
            &format!("/surplus/{id}/claim"),
            json!({"recipient_id": random, "version": 2}),
            422,
            "unknown_recipient",
        ),
        bad(
            "claim without a version",
            "POST",
            &format!("/surplus/{id}/claim"),
            json!({"recipient_id": r}),
            422,
            "invalid_field",
        ),
        bad(
            "claim with a negative version",
            "POST",
            &format!("/surplus/{id}/claim"),
            json!({"recipient_id": r, "version": -1}),
            422,
            "invalid_field",
        ),
        bad(
            "claim of an unknown surplus",
            "POST",
            &format!("/surplus/{random}/claim"),
            json!({"recipient_id": r, "version": 1}),
            404,
            "not_found",
        ),
        bad(
            "claim of a non-uuid surplus",
            "POST",
            "/surplus/abc/claim",
            json!({"recipient_id": r, "version": 1}),
            404,
            "not_found",
        ),
        bad(
            "accept by someone not offered",
            "POST",
            &format!("/offers/{id}/accept"),
            json!({"recipient_id": random}),
            409,
            "no_pending_offer",
        ),
        bad(
            "decline by someone not offered",
            "POST",
            &format!("/offers/{id}/decline"),
            json!({"recipient_id": random}),
            409,
            "no_pending_offer",
        ),
        bad(
            "pick up before a claim",
            "POST",
            &format!("/surplus/{id}/pickup"),
            json!({"recipient_id": r}),
            409,
            "invalid_transition",
        ),
        bad(
            "deliver before a pick-up",
            "POST",
            &format!("/surplus/{id}/deliver"),
            json!({"recipient_id": r, "delivered_kg": 1.0}),
            409,
            "invalid_transition",
        ),
        bad(
            "deliver a negative mass",
            "POST",
            &format!("/surplus/{id}/deliver"),
            json!({"recipient_id": r, "delivered_kg": -1.0}),
            422,
            "invalid_quantity",
        ),
        bad(
            "unknown surplus",
            "GET",
            &format!("/surplus/{random}"),
            Value::Null,
            404,
            "not_found",
        ),
        bad(
            "unknown provider read",
            "GET",
            &format!("/providers/{random}"),
            Value::Null,
            404,
            "not_found",
        ),
        bad(
            "unknown recipient read",
            "GET",
            &format!("/recipients/{random}"),
            Value::Null,
            404,
            "not_found",
        ),
        bad(
            "offers of an unknown recipient",
            "GET",
            &format!("/recipients/{random}/offers"),
            Value::Null,
            404,
            "not_found",
        ),
        bad(
            "stream of an unknown recipient",
            "GET",
            &format!("/recipients/{random}/offers/stream"),
            Value::Null,
            404,
            "not_found",
        ),
        bad(
            "list without lon",
            "GET",
            "/surplus?lat=-6.2",
            Value::Null,
            422,
            "invalid_query",
        ),
        bad(
            "list with lat=abc",
            "GET",
            "/surplus?lat=abc&lon=106.8",
            Value::Null,
            422,
            "invalid_query",
        ),
        bad(
            "list at latitude 91",
            "GET",
            "/surplus?lat=91&lon=106.8",
            Value::Null,
            422,
            "invalid_coordinates",
        ),
        bad(
            "list with radius 0",
            "GET",
            "/surplus?lat=-6.2&lon=106.8&radius_km=0",
            Value::Null,
            422,
            "invalid_radius",
        ),
        bad(
            "list with a huge radius",
            "GET",
            "/surplus?lat=-6.2&lon=106.8&radius_km=5000",
            Value::Null,
            422,
            "invalid_radius",
        ),
        bad(
            "list with a bogus status",
            "GET",
            "/surplus?lat=-6.2&lon=106.8&status=eaten",
            Value::Null,
            422,
            "invalid_status",
        ),
        bad(
            "list with limit 0",
            "GET",
            "/surplus?lat=-6.2&lon=106.8&limit=0",
            Value::Null,
            422,
            "invalid_limit",
        ),
        bad(
            "wrong method",
            "DELETE",
            &format!("/surplus/{id}"),
            Value::Null,
            405,
            "method_not_allowed",
        ),
        bad(
            "no such route",
            "GET",
            "/nope",
            Value::Null,
            404,
            "not_found",
        ),
    ];
    // Deliver more than posted: needs a picked-up surplus of its own.
    let s2 = t.surplus(&p, json!({"quantity_kg": 5.0})).await;
    let id2 = s2["id"].as_str().unwrap().to_string();
    let claimer = s2["offer"]["recipient_id"].as_str().unwrap().to_string();
    t.post(
        &format!("/offers/{id2}/accept"),
        json!({"recipient_id": claimer}),
    )
    .await;
    t.post(
        &format!("/surplus/{id2}/pickup"),
        json!({"recipient_id": claimer}),
    )
    .await;
    table.push(bad(
        "deliver more than posted",
        "POST",
        &format!("/surplus/{id2}/deliver"),
        json!({"recipient_id": claimer, "delivered_kg": 5.5}),
        422,
        "delivered_exceeds_quantity",
    ));
    table.push(bad(
        "deliver by someone else",
        "POST",
        &format!("/surplus/{id2}/deliver"),
        json!({"recipient_id": random, "delivered_kg": 1.0}),
        409,
        "not_claimant",
    ));

    let counts = t.table_counts();
    let digest = t.surplus_digest();
    let mut failures = Vec::new();
    for row in &table {
        let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
        let mut req = t.client.request(method, t.url(&row.path));
        if row.method != "GET" && row.method != "DELETE" {
            req = req.body(row.body.clone());
            if let Some(ct) = row.content_type {
                req = req.header("content-type", ct);
            }
        }
        for (k, v) in &row.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("<none>");
        let message_ok = body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty());
        if status != row.status || code != row.code || !message_ok {
            failures.push(format!(
                "{}: got {status} {code} {body}, want {} {}",
                row.name, row.status, row.code
            ));
        }
        if t.table_counts() != counts || t.surplus_digest() != digest {
            failures.push(format!("{}: changed the database", row.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn an_expired_surplus_is_gone_and_never_offered_again() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r = t.recipient(-6.205, 106.816).await;
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1_500))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let s = t.surplus(&p, json!({"expires_at": soon})).await;
    let id = s["id"].as_str().unwrap().to_string();
    eventually("the surplus to expire", || async {
        let (_, v) = t.get(&format!("/surplus/{id}")).await;
        (v["status"] == "expired").then_some(())
    })
    .await;
    let (st, body) = t
        .post(
            &format!("/surplus/{id}/claim"),
            json!({"recipient_id": r, "version": 3}),
        )
        .await;
    assert_eq!(st, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "expired");
    assert_eq!(body["error"]["current"]["status"], "expired");
    let (st, body) = t
        .post(&format!("/offers/{id}/accept"), json!({"recipient_id": r}))
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::GONE, Some("expired"))
    );
    let (_, offers) = t.get(&format!("/recipients/{r}/offers")).await;
    assert_eq!(offers["items"], json!([]));
}

#[tokio::test]
async fn misdirected_requests_name_the_cell() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let (st, body) = t
        .post(
            "/surplus",
            with(&surplus_body(&p), json!({"lat": -6.9175, "lon": 107.6191})),
        )
        .await;
    assert_eq!(st, StatusCode::MISDIRECTED_REQUEST);
    let cell = body["error"]["cell"].as_str().unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains(cell));
}

#[tokio::test]
async fn state_survives_a_restart_and_the_rtree_is_rebuilt() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r = t.recipient(-6.205, 106.816).await;
    let s = t.surplus(&p, json!({})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let dir = t.stop().await;
    let edge = edge_node::Edge::start(
        common::config(dir.path()),
        edge_node::StartOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}/api/v1", edge.local_addr().unwrap());
    let c = common::client_with(&common::token(
        dir.path(),
        edge_node::auth::Role::Admin,
        "ops",
    ));
    let list: Value = c
        .get(format!("{base}/recipients/{r}/offers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"][0]["id"],
        id.as_str(),
        "pending offers are rebuilt"
    );
    let near: Value = c
        .get(format!("{base}/surplus?lat=-6.2&lon=106.816&radius_km=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        near["items"][0]["id"],
        id.as_str(),
        "the surplus R-tree is rebuilt"
    );
    // The recipient R-tree too: a new post is matched to the same recipient.
    let resp = c
        .post(format!("{base}/surplus"))
        .json(&surplus_body(&p))
        .send()
        .await
        .unwrap();
    let second: Value = resp.json().await.unwrap();
    assert_eq!(second["offer"]["recipient_id"], r.as_str());
    let accepted = c
        .post(format!("{base}/offers/{id}/accept"))
        .json(&json!({"recipient_id": r}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    c.post(format!("{base}/surplus/{id}/pickup"))
        .json(&json!({"recipient_id": r}))
        .send()
        .await
        .unwrap();
    let done = c
        .post(format!("{base}/surplus/{id}/deliver"))
        .json(&json!({"recipient_id": r, "delivered_kg": 10.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    edge.shutdown().await;
    // A delivered surplus is still listed after another restart (recent window).
    let edge = edge_node::Edge::start(
        common::config(dir.path()),
        edge_node::StartOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}/api/v1", edge.local_addr().unwrap());
    let near: Value = c
        .get(format!(
            "{base}/surplus?lat=-6.2&lon=106.816&radius_km=1&status=delivered"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        near["items"][0]["id"],
        id.as_str(),
        "recently finished surplus are reloaded into the listing"
    );
    edge.shutdown().await;
}

fn in_ms(ms: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ms))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn posts_expiring_while_queued_are_refused_cleanly_even_with_a_fallback() {
    // Regression: food expiring between the handler and the writer used to
    // reach the fallback path and panic the writer in debug builds.
    let t = TestEdge::start().await;
    let p = t.provider().await;
    t.recipient_with(
        json!({"lat": -6.2001, "lon": 106.816, "capacity_kg_per_day": 1.0, "is_fallback": true}),
    )
    .await;
    let posts = (0..64).map(|i| {
        let body = with(&surplus_body(&p), json!({"expires_at": in_ms(1 + i % 3)}));
        let t = &t;
        async move { t.post("/surplus", body).await }
    });
    for (status, body) in futures::future::join_all(posts).await {
        assert!(
            status == StatusCode::CREATED
                || (status == StatusCode::UNPROCESSABLE_ENTITY
                    && body["error"]["code"] == "expiry_in_past"),
            "{status} {body}"
        );
    }
    let (st, _) = t.get("/readyz").await;
    assert_eq!(st, StatusCode::OK, "the writer is alive");
    t.recipient(-6.205, 106.816).await;
    let fresh = t.surplus(&p, json!({})).await;
    assert_eq!(fresh["status"], "offered", "and still serving");
}

#[tokio::test]
async fn listing_a_point_outside_the_cells_is_misdirected() {
    let t = TestEdge::start().await;
    let (st, body) = t.get("/surplus?lat=-6.9175&lon=107.6191").await;
    assert_eq!(st, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert!(body["error"]["cell"].is_string());
}

#[tokio::test]
async fn an_idempotent_retry_after_expiry_still_returns_the_original() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    t.recipient(-6.205, 106.816).await;
    let body = with(&surplus_body(&p), json!({"expires_at": in_ms(1_200)}));
    let send = || {
        t.client
            .post(t.url("/surplus"))
            .header("Idempotency-Key", "late-retry")
            .json(&body)
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    eventually("the surplus to expire", || async {
        let (_, v) = t.get(&format!("/surplus/{id}")).await;
        (v["status"] == "expired").then_some(())
    })
    .await;
    let retry = send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(retry.headers().get("idempotent-replayed").is_some());
    let again: Value = retry.json().await.unwrap();
    assert_eq!(
        (again["id"].as_str(), again["status"].as_str()),
        (Some(id.as_str()), Some("expired"))
    );
}

#[tokio::test]
async fn an_uncollected_claim_expires_and_picking_it_up_is_gone() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r = t.recipient(-6.205, 106.816).await;
    let s = t.surplus(&p, json!({"expires_at": in_ms(1_500)})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let (st, _) = t
        .post(
            &format!("/surplus/{id}/claim"),
            json!({"recipient_id": r, "version": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    eventually("the claim to expire uncollected", || async {
        let (_, v) = t.get(&format!("/surplus/{id}")).await;
        (v["status"] == "expired").then_some(())
    })
    .await;
    let (st, body) = t
        .post(&format!("/surplus/{id}/pickup"), json!({"recipient_id": r}))
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::GONE, Some("expired")),
        "{body}"
    );
}

#[tokio::test]
async fn a_full_registry_says_so() {
    let t = TestEdge::start_with(|c| c.store.max_recipients = 2).await;
    t.recipient(-6.205, 106.816).await;
    t.recipient(-6.206, 106.816).await;
    let before = t.table_counts();
    let (st, body) = t.post("/recipients", recipient_body()).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("registry_full"))
    );
    assert_eq!(t.table_counts(), before);
}

/// `store.max_live_surplus` at its limit: the next post is a clear 503
/// (`saturated`, with `Retry-After`) that stores nothing; once one of the
/// live surplus finishes, posts are taken again.
#[tokio::test]
async fn a_full_edge_refuses_new_surplus_with_a_clear_503_and_takes_them_again_when_one_finishes() {
    let t = TestEdge::start_with(|c| c.store.max_live_surplus = 3).await;
    let provider = t.provider().await;
    let recipient = t.recipient(-6.205, 106.816).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let s = t.surplus(&provider, json!({})).await;
        ids.push(s["id"].as_str().unwrap().to_string());
    }
    let before = t.table_counts();
    let resp = t
        .client
        .post(t.url("/surplus"))
        .json(&surplus_body(&provider))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.headers().get("retry-after").is_some(),
        "says when to retry"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "saturated", "{body}");
    assert_eq!(t.table_counts(), before, "nothing stored");
    // One finishes (accepted, picked up, delivered): room again.
    let id = &ids[0];
    for (path, body) in [
        (
            format!("/offers/{id}/accept"),
            json!({"recipient_id": recipient}),
        ),
        (
            format!("/surplus/{id}/pickup"),
            json!({"recipient_id": recipient}),
        ),
        (
            format!("/surplus/{id}/deliver"),
            json!({"recipient_id": recipient, "delivered_kg": 1.0}),
        ),
    ] {
        let (st, v) = t.post(&path, body).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
    }
    let (st, body) = t.post("/surplus", surplus_body(&provider)).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn readiness_follows_the_writer() {
    let mut t = TestEdge::start().await;
    let edge = t.edge.take().unwrap();
    let writer = edge.writer_stats().clone();
    assert!(writer.is_ready());
    edge.shutdown().await;
    assert!(!writer.is_ready(), "a stopped writer is not ready");
}

/// A body that stops arriving is answered 408 in the API's error format
/// once `http.connections.body_read_timeout_secs` passes, and the
/// listener's connection metrics are in the edge's `/metrics`.
#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_with_the_error_format() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestEdge::start_with(|c| c.http.connections.body_read_timeout_secs = 1).await;
    let addr = t.base.trim_start_matches("http://").to_string();
    let admin = common::token(t.dir.path(), edge_node::auth::Role::Admin, "test-admin");
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/providers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"name\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");

    let metrics = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in http_listener::metrics::FAMILIES {
        // OpenMetrics names a counter family without `_total` in its HELP.
        let name = family.trim_end_matches("_total");
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{family} in /metrics"
        );
    }
}
