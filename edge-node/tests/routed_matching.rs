//! Matching with travel times from an OSRM-compatible service over real
//! HTTP (a local fake), and without it when it fails or hangs: posts are
//! always answered, the breaker opens after three failures and then no
//! request reaches the service, and `/metrics` shows the breaker's state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/osrm_fake.rs"]
mod osrm_fake;

use common::*;
use osrm_fake::{FakeOsrm, Mode};
use reqwest::StatusCode;
use serde_json::json;

async fn breaker_gauge(t: &TestEdge) -> String {
    let text = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("routing_breaker_state "))
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_times_decide_and_a_dead_service_never_blocks_a_post() {
    let fake = FakeOsrm::start(Mode::Answer);
    let t = TestEdge::start_with(|c| {
        c.routing.osrm_url = Some(fake.url());
        c.routing.timeout_ms = 300;
    })
    .await;
    let p = t.provider().await;
    // ~10 km south: 30 min at the configured 20 km/h, ~17 min by the fake's
    // roads (10 m/s).
    let r = t.recipient(-6.29, 106.816).await;
    let soon = json!({"expires_at": in_minutes(22)});

    let s = t.surplus(&p, soon.clone()).await;
    assert_eq!(
        s["offer"]["recipient_id"],
        r.as_str(),
        "routed, the recipient arrives in time: {s}"
    );
    assert!(fake.requests() >= 1, "the service was asked");
    assert!(
        fake.targets()
            .iter()
            .any(|t| t.starts_with("/table/v1/driving/106.816")),
        "{:?}",
        fake.targets()
    );

    // The service hangs: each post waits at most the deadline, then falls
    // back to the distance (30 min > 22: no candidate, dead-lettered).
    fake.set(Mode::Hang);
    let asked = fake.requests();
    for _ in 0..3 {
        let s = t.surplus(&p, soon.clone()).await;
        assert!(s["offer"].is_null(), "haversine says too far: {s}");
        assert_eq!(s["status"], "dead_lettered");
    }
    fake.wait_requests(asked + 3).await;
    assert_eq!(breaker_gauge(&t).await, "routing_breaker_state 1", "open");
    // Open: the next post does not even ask.
    let before = fake.requests();
    let s = t.surplus(&p, soon.clone()).await;
    assert!(s["offer"].is_null());
    assert_eq!(fake.requests(), before, "an open breaker makes no request");
    // The hanging calls were cancelled with their deadline: no connection
    // stays open at the service.
    fake.wait_no_open_connections().await;

    // A failing (500) service is no different for the poster.
    fake.set(Mode::Fail);
    let (st, _) = t.post("/surplus", surplus_body(&p)).await;
    assert_eq!(st, StatusCode::CREATED);
}
