//! The operator's routes under `/api/v1/admin`: admins only (every other
//! role 403, audited like every 403), bad queries and bodies refused with
//! a 422 and a specific code, the dead-letter queue's retry and resolution
//! written by the writer and audited with their effect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestEdge;
use edge_node::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn audit_actions(t: &TestEdge) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open_with_flags(
        t.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.prepare("SELECT action, status FROM audit_log ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test]
async fn only_admins_reach_the_admin_routes_and_bad_input_is_a_specific_422() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let ngo = t.as_role(Role::Ngo, &uuid::Uuid::now_v7().to_string());
    let provider = t.as_role(Role::Provider, &p);
    let id = uuid::Uuid::now_v7();
    let routes = [
        ("get", "/admin/status".to_string()),
        ("get", "/admin/cells".to_string()),
        ("get", "/admin/recipients".to_string()),
        ("get", "/admin/providers".to_string()),
        ("get", "/admin/surplus".to_string()),
        ("get", "/admin/dlq".to_string()),
        ("post", format!("/admin/dlq/{id}/retry")),
        ("post", format!("/admin/dlq/{id}/resolve")),
    ];
    for client in [&ngo, &provider] {
        for (method, path) in &routes {
            let req = match *method {
                "get" => client.get(t.url(path)),
                _ => client.post(t.url(path)).json(&json!({"recipient_id": id})),
            };
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "forbidden_role", "{path}");
        }
    }
    let want = 2 * routes.len();
    testkit::until(&format!("{want} audited 403s"), async || {
        audit_actions(&t)
            .await
            .iter()
            .filter(|(_, s)| *s == 403)
            .count()
            == want
    })
    .await;

    // (path, status, error code)
    let table = [
        ("/admin/recipients?limit=0", 422, "invalid_limit"),
        ("/admin/recipients?limit=501", 422, "invalid_limit"),
        ("/admin/recipients?limit=ten", 422, "invalid_query"),
        ("/admin/recipients?after=nope", 422, "invalid_query"),
        (
            "/admin/providers?after=0190c3e27b1a7c3d9e4f5a6b7c8d9e0f",
            422,
            "invalid_query",
        ),
        ("/admin/providers?page=2", 422, "invalid_query"),
        ("/admin/surplus?status=eaten", 422, "invalid_status"),
        ("/admin/dlq?limit=-1", 422, "invalid_query"),
    ];
    for (path, status, code) in table {
        let (s, body) = t.get(path).await;
        assert_eq!(
            (s.as_u16(), body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    let (s, body) = t
        .post(&format!("/admin/dlq/{id}/resolve"), json!({"recipient": 1}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, _) = t.post(&format!("/admin/dlq/{id}/retry"), json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_follow_next_and_the_dead_letter_queue_is_retried_and_resolved_with_audits() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            t.recipient_with(
                json!({"name": format!("Bank {i}"), "accepted_food_types": ["bakery"]}),
            )
            .await,
        );
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            "/admin/recipients?limit=2".to_string()
        } else {
            format!("/admin/recipients?limit=2&after={after}")
        };
        let (s, page) = t.get(&q).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for r in page["items"].as_array().unwrap() {
            assert_eq!(
                r["contact_phone"],
                Value::Null,
                "no contact data in a listing"
            );
            seen.push(r["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every recipient once, in id order");

    // Frozen food nobody takes: dead-lettered.
    let s = t.surplus(&p, json!({"food_type": "frozen"})).await;
    assert_eq!(s["status"], "dead_lettered", "{s}");
    let sid = s["id"].as_str().unwrap();
    let (_, dlq) = t.get("/admin/dlq").await;
    assert_eq!(dlq["items"][0]["id"], sid);
    let (_, status) = t.get("/admin/status").await;
    assert_eq!(status["dlq_size"], 1, "{status}");
    let (s, body) = t.post(&format!("/admin/dlq/{sid}/retry"), json!({})).await;
    assert_eq!(
        (s, body["status"].as_str()),
        (StatusCode::OK, Some("dead_lettered")),
        "{body}"
    );
    let (s, body) = t
        .post(
            &format!("/admin/dlq/{sid}/resolve"),
            json!({"recipient_id": ids[0]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["status"].as_str(),
            body["offer"]["recipient_id"].as_str()
        ),
        (Some("offered"), Some(ids[0].as_str()))
    );
    let (s, body) = t
        .post(
            &format!("/admin/dlq/{sid}/resolve"),
            json!({"recipient_id": ids[1]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "no longer dead-lettered: {body}");
    assert_eq!(body["error"]["current"]["status"], "offered");
    for want in [
        ("dlq.retry", 200),
        ("dlq.resolve", 200),
        ("dlq.resolve", 409),
    ] {
        testkit::until(&format!("{want:?} audited"), async || {
            audit_actions(&t)
                .await
                .iter()
                .any(|(a, s)| a == want.0 && *s == want.1)
        })
        .await;
    }
}
