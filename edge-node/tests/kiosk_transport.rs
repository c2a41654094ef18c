//! The kiosk's device cookie is set and taken only where it cannot be read
//! on the way (issue 20 point 3, issue 13 point 2): over HTTPS, or over
//! plain HTTP from the machine itself. Loopback goes over a real socket;
//! another machine's connection — which a loopback test cannot make — is the
//! real app handed a request whose `ConnInfo` names a LAN peer, as the
//! listener would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::TestEdge;
use http_body_util::BodyExt;
use http_listener::ConnInfo;
use serde_json::{Value, json};
use tower::ServiceExt;

const LAN_PEER: &str = "192.168.1.20:50000";

/// A pairing code for a new recipient of `t`.
async fn pairing_code(t: &TestEdge) -> String {
    let recipient = t.recipient(-6.2, 106.816).await;
    let (s, v) = t
        .post("/kiosk/pairings", json!({ "recipient_id": recipient }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["code"].as_str().expect("a code").to_string()
}

/// `req` handed to the edge's app as if it came from `peer`.
async fn from_peer(
    t: &TestEdge,
    peer: &str,
    tls: bool,
    mut req: Request<Body>,
) -> (StatusCode, Option<String>, Value) {
    let peer: SocketAddr = peer.parse().unwrap();
    let local: SocketAddr = "192.168.1.2:8080".parse().unwrap();
    req.extensions_mut().insert(ConnInfo { peer, local, tls });
    req.extensions_mut().insert(ConnectInfo(peer));
    let app = t.edge.as_ref().expect("running").router();
    let resp = app.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        cookie,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn pair_request(code: &str) -> Request<Body> {
    Request::post("/api/v1/kiosk/pair")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "code": code }).to_string()))
        .unwrap()
}

fn session_request(cookie: &str) -> Request<Body> {
    Request::get("/api/v1/kiosk/session")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn name_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn a_device_cookie_is_set_and_taken_over_https_or_from_loopback_only() {
    let t = TestEdge::start().await;
    let code = pairing_code(&t).await;

    // Plain HTTP from the LAN: refused before the code is spent, no cookie.
    let (s, cookie, v) = from_peer(&t, LAN_PEER, false, pair_request(&code)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "insecure_transport");
    assert_eq!(cookie, None, "no cookie over plain HTTP off loopback");

    // The same code over HTTPS from the LAN: paired, the cookie `Secure`.
    let (s, cookie, v) = from_peer(&t, LAN_PEER, true, pair_request(&code)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secure = cookie.expect("a cookie over HTTPS");
    assert!(secure.ends_with("; Secure"), "{secure}");
    let cookie = name_value(&secure);

    // The cookie works over HTTPS from the LAN and over plain loopback…
    let (s, _, v) = from_peer(&t, LAN_PEER, true, session_request(&cookie)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let over_socket = reqwest::Client::new()
        .get(t.url("/kiosk/session"))
        .header(header::COOKIE.as_str(), &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(over_socket.status(), StatusCode::OK);
    // …and is not taken over plain HTTP from the LAN, where it was readable.
    let (s, _, v) = from_peer(&t, LAN_PEER, false, session_request(&cookie)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "insecure_transport");

    // Plain HTTP on loopback (a real socket): paired, the cookie not
    // `Secure` (the browser would not send it back over plain HTTP).
    let code = pairing_code(&t).await;
    let resp = reqwest::Client::new()
        .post(t.url("/kiosk/pair"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let set = resp.headers()[header::SET_COOKIE.as_str()]
        .to_str()
        .unwrap();
    assert!(set.contains("; HttpOnly; SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "{set}");
}

#[tokio::test]
async fn a_request_from_no_socket_gets_no_cookie() {
    let t = TestEdge::start().await;
    let code = pairing_code(&t).await;
    let app = t.edge.as_ref().expect("running").router();
    let resp = app.oneshot(pair_request(&code)).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
}
