//! Notifications end to end (issue 18): a real edge serving real HTTP sends
//! offers to recipients' webhook channels and alerts to the on-call webhook,
//! against fake receivers that check every signature with the Standard
//! Webhooks reference library and can fail, hang or be down.

mod common;

use std::time::{Duration, Instant};

use common::TestEdge;
use edge_node::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::until;
use testkit::webhook::{FakeReceiver, Mode};

/// Registers a webhook channel for `recipient` pointing at `r`, and tells
/// `r` the secret it must verify with.
async fn channel(t: &TestEdge, recipient: &str, r: &FakeReceiver) -> Value {
    let (s, body) = t
        .post(
            &format!("/recipients/{recipient}/channels"),
            json!({"kind": "webhook", "url": r.url()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("a secret");
    assert!(secret.starts_with("whsec_"), "{body}");
    r.set_secret(secret);
    body
}

fn notified_seq(t: &TestEdge) -> (i64, i64) {
    let conn = rusqlite::Connection::open_with_flags(
        t.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open db");
    let cursor: i64 = conn
        .query_row("SELECT notified_seq FROM notify_state", [], |r| r.get(0))
        .expect("cursor");
    let last: i64 = conn
        .query_row("SELECT coalesce(max(seq), 0) FROM outbox", [], |r| r.get(0))
        .expect("last");
    (cursor, last)
}

fn channel_rows(t: &TestEdge) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        t.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open db");
    conn.query_row("SELECT count(*) FROM notify_channels", [], |r| r.get(0))
        .expect("count")
}

async fn metric(t: &TestEdge, line: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", t.base))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line)
                .map(|v| v.trim().parse().unwrap_or(-1.0))
        })
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_reaches_every_channel_once_signed_with_what_the_recipient_needs_and_nothing_else()
{
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r = t.recipient(-6.21, 106.82).await;
    let (a, b) = (
        FakeReceiver::start(Mode::Ok).await,
        FakeReceiver::start(Mode::Ok).await,
    );
    channel(&t, &r, &a).await;
    channel(&t, &r, &b).await;
    let posted = Instant::now();
    let s = t.surplus(&p, json!({})).await;
    assert_eq!(s["status"], "offered", "{s}");
    let sid = s["id"].as_str().expect("id").to_string();
    until("both channels are sent the offer", async || {
        a.received().len() == 1 && b.received().len() == 1
    })
    .await;
    for (name, rx) in [("a", &a), ("b", &b)] {
        let got = &rx.received()[0];
        eprintln!(
            "channel {name}: offer delivered {} ms after the post returned",
            got.at.saturating_duration_since(posted).as_millis()
        );
        assert_eq!(rx.bad_signatures(), 0, "every signature verifies");
        assert!(got.id.starts_with("msg_test-edge_"), "{}", got.id);
        let body = &got.body;
        assert_eq!(body["type"], "offer.made", "{body}");
        let d = &body["data"];
        assert_eq!(d["surplus_id"], sid.as_str());
        assert_eq!(d["recipient_id"], r.as_str());
        assert_eq!(d["quantity_kg"], 12.5);
        assert_eq!(d["food_type"], "prepared_meals");
        assert_eq!(d["provider"]["name"], "Warung Sederhana");
        assert!(
            d["links"]["accept"]
                .as_str()
                .is_some_and(|l| l.ends_with(&format!("/api/v1/offers/{sid}/accept"))),
            "{d}"
        );
        assert!(d["answer_by"].is_string() && d["pickup_window"]["until"].is_string());
        // Nobody's contact data: neither the provider's nor the recipient's.
        let text = body.to_string();
        for secret in [
            "+62 21 555 1234",
            "owner@warung.example",
            "+62 21 555 9876",
            "ops@bank.example",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    // The two channels got distinct ids; each id once.
    assert_ne!(a.received()[0].id, b.received()[0].id);
    until("the cursor is stored past the offer", async || {
        let (cursor, last) = notified_seq(&t);
        cursor == last
    })
    .await;
    assert_eq!(
        metric(
            &t,
            "notify_deliveries_total{channel=\"webhook\",outcome=\"delivered\"}"
        )
        .await,
        2.0
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_minute_gets_the_offer_once_after_it_returns() {
    let t = TestEdge::start_with(|c| c.notify.backoff_max_ms = 5_000).await;
    let p = t.provider().await;
    let r = t.recipient(-6.21, 106.82).await;
    let mut rx = FakeReceiver::start(Mode::Ok).await;
    channel(&t, &r, &rx).await;
    rx.stop();
    let s = t.surplus(&p, json!({})).await;
    let sid = s["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(rx.received().is_empty());
    let failed = metric(
        &t,
        "notify_attempts_total{channel=\"webhook\",outcome=\"failed\"}",
    )
    .await;
    assert!(
        failed >= 5.0,
        "attempts went on while it was down: {failed}"
    );
    let (cursor, last) = notified_seq(&t);
    assert!(
        cursor < last,
        "the cursor waits for the offer: {cursor} < {last}"
    );
    rx.restart().await;
    until("the offer arrives once the receiver is back", async || {
        !rx.received().is_empty()
    })
    .await;
    // Another backoff's worth: no second delivery.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let got = rx.received();
    assert_eq!(got.len(), 1, "once: {got:?}");
    assert_eq!(got[0].body["data"]["surplus_id"], sid.as_str());
    until("the cursor moves past it", async || {
        let (cursor, last) = notified_seq(&t);
        cursor == last
    })
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_never_delays_a_post() {
    let t = TestEdge::start_with(|c| {
        c.notify.attempt_timeout_ms = 120_000;
        c.notify.max_in_flight = 4;
    })
    .await;
    let p = t.provider().await;
    let r = t.recipient(-6.21, 106.82).await;
    let rx = FakeReceiver::start(Mode::Hang).await;
    channel(&t, &r, &rx).await;
    t.surplus(&p, json!({})).await;
    until("the receiver holds a request", async || rx.hanging() >= 1).await;
    for _ in 0..20 {
        let s = t.surplus(&p, json!({})).await;
        assert_eq!(s["status"], "offered", "{s}");
    }
    // Every post answered while the receiver held requests unanswered.
    assert!(rx.hanging() >= 1);
    assert_eq!(rx.hanging(), 4, "in flight is bounded by max_in_flight");
    assert!(rx.received().is_empty());
    let (status, _) = t.get("/sync").await;
    assert_eq!(status, StatusCode::OK);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_call_webhook_gets_the_fallback_and_no_fallback_alerts_with_their_surplus_ids() {
    let oncall = FakeReceiver::start(Mode::Ok).await;
    let url = oncall.url();
    let t = TestEdge::start_with(|c| {
        c.lifecycle.dlq_max_retries = 0;
        c.notify.oncall_webhook_url = Some(url);
    })
    .await;
    let p = t.provider().await;
    // The cell's food bank takes only cooked meals.
    let fallback = t
        .recipient_with(json!({"is_fallback": true, "capacity_kg_per_day": 1.0,
            "lat": -6.2, "lon": 106.816, "accepted_food_types": ["prepared_meals"]}))
        .await;
    let fb = FakeReceiver::start(Mode::Ok).await;
    channel(&t, &fallback, &fb).await;
    let offered = t.surplus(&p, json!({})).await;
    assert_eq!(offered["offer"]["recipient_id"], fallback.as_str());
    let wasted = t.surplus(&p, json!({"food_type": "bakery"})).await;
    assert_eq!(wasted["status"], "dead_lettered", "{wasted}");
    until("both alerts reach the on-call webhook", async || {
        oncall.received().len() == 2
    })
    .await;
    let alerts = oncall.received();
    // Sent concurrently: found by name, not by order.
    let labels = |i: usize| {
        let name = ["PahlawanFallbackOffered", "PahlawanSurplusNeedsAHuman"][i];
        alerts
            .iter()
            .map(|a| a.body["alerts"][0]["labels"].clone())
            .find(|l| l["alertname"] == name)
            .unwrap_or_else(|| panic!("no {name} among {alerts:?}"))
    };
    for a in &alerts {
        assert_eq!(a.body["version"], "4", "Alertmanager's webhook format");
        assert_eq!(a.body["status"], "firing");
        assert_eq!(a.body["alerts"][0]["status"], "firing");
        assert!(a.body["alerts"][0]["startsAt"].is_string());
    }
    assert_eq!(labels(0)["alertname"], "PahlawanFallbackOffered");
    assert_eq!(labels(0)["surplus_id"], offered["id"]);
    assert_eq!(labels(0)["edge_id"], "test-edge");
    assert_eq!(labels(1)["alertname"], "PahlawanSurplusNeedsAHuman");
    assert_eq!(labels(1)["severity"], "page");
    assert_eq!(labels(1)["surplus_id"], wasted["id"]);
    // The fallback recipient's own channel is told of its offer too.
    until("the fallback recipient hears of it", async || {
        fb.received().len() == 1
    })
    .await;
    assert_eq!(fb.received()[0].body["data"]["fallback"], true);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channel_requests_are_refused_and_change_nothing() {
    let t = TestEdge::start_with(|c| c.notify.max_channels_per_recipient = 2).await;
    let r = t.recipient(-6.21, 106.82).await;
    let other = t.recipient(-6.22, 106.83).await;
    let path = format!("/recipients/{r}/channels");
    let hook = "http://127.0.0.1:9/hook";
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"kind": "sms", "url": hook}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"kind": "fax", "url": hook}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"kind": "sms", "phone": "0812345678"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone",
        ),
        (
            json!({"kind": "sms", "phone": "+6281234567890"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "gateway_not_configured",
        ),
        (
            json!({"kind": "webhook", "url": "ftp://127.0.0.1/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"kind": "webhook", "url": "http://hooks.example.org/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"kind": "webhook", "url": "https://user:pw@hooks.example.org/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"kind": "webhook", "url": "not a url"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"kind": "webhook", "url": format!("https://x.example/{}", "a".repeat(2_100))}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            json!({"kind": "webhook"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"kind": "webhook", "url": hook, "secret": "mine"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (json!([]), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
    ];
    for (body, status, code) in cases {
        let (s, got) = t.post(&path, body.clone()).await;
        assert_eq!(
            (s, got["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {got}"
        );
    }
    let unknown = "/recipients/0190a000-0000-7000-8000-000000000000/channels";
    let (s, got) = t
        .post(unknown, json!({"kind": "webhook", "url": hook}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{got}");
    let (s, _) = t
        .post(
            "/recipients/not-a-uuid/channels",
            json!({"kind": "webhook", "url": hook}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another recipient, or a provider, may not.
    for client in [
        t.as_role(Role::Ngo, &other),
        t.as_role(Role::Provider, &other),
    ] {
        let resp = client
            .post(t.url(&path))
            .json(&json!({"kind": "webhook", "url": hook}))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(channel_rows(&t), 0, "nothing was stored");
    // The recipient itself may; the list never shows the secret; the
    // most allowed is the most.
    let own = t.as_role(Role::Ngo, &r);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = own
            .post(t.url(&path))
            .json(&json!({"kind": "webhook", "url": hook}))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    let (s, got) = t.post(&path, json!({"kind": "webhook", "url": hook})).await;
    assert_eq!(
        (s, got["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("too_many_channels"))
    );
    let (s, list) = t.get(&path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(!list.to_string().contains("whsec_"), "{list}");
    assert_eq!(list["items"][0]["url"], hook);
    // Removed once; a second time it is not found.
    let del = |id: &str| t.client.delete(t.url(&format!("{path}/{id}"))).send();
    assert_eq!(
        del(&ids[0]).await.expect("delete").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        del(&ids[0]).await.expect("delete").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        del("nope").await.expect("delete").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(channel_rows(&t), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_recipient_removes_its_channels_and_nothing_more_is_sent() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r = t.recipient(-6.21, 106.82).await;
    let rx = FakeReceiver::start(Mode::Ok).await;
    channel(&t, &r, &rx).await;
    assert_eq!(channel_rows(&t), 1);
    let (s, body) = t.post(&format!("/subjects/{r}/erase"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(channel_rows(&t), 0, "the channel went with the recipient");
    t.surplus(&p, json!({})).await;
    until("the cursor passes the new events", async || {
        let (cursor, last) = notified_seq(&t);
        cursor == last
    })
    .await;
    assert!(rx.received().is_empty());
    t.stop().await;
}

/// What the fake gateway was asked to send: (account, form fields).
type SentLog = std::sync::Arc<parking_lot::Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A fake SMS gateway speaking Twilio's Messages API: HTTP Basic auth with
/// the account and token, a form with `To`, `From`, `Body`; answers 201.
struct FakeGateway {
    url: String,
    sent: SentLog,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    async fn start() -> FakeGateway {
        use axum::extract::State;
        type Log = SentLog;
        let sent: Log = Default::default();
        async fn messages(
            State(log): State<Log>,
            axum::extract::Path(account): axum::extract::Path<String>,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> (StatusCode, String) {
            use base64::Engine;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{account}:tok-secret"))
            );
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
                return (StatusCode::UNAUTHORIZED, "{\"code\": 20003}".into());
            }
            let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            log.lock().push((account, form));
            (
                StatusCode::CREATED,
                "{\"sid\": \"SM1\", \"status\": \"queued\"}".into(),
            )
        }
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                axum::routing::post(messages),
            )
            .with_state(sent.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGateway {
            url,
            sent,
            _server: server,
        }
    }

    fn sent(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.sent.lock().clone()
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_goes_out_by_sms_and_whatsapp_and_a_reply_of_ya_accepts_it() {
    let gw = FakeGateway::start().await;
    let gw_url = gw.url.clone();
    let t = TestEdge::start_with(move |c| {
        c.notify.public_url = Some("https://edge.example".into());
        c.notify.sms = Some(edge_node::config::SmsGatewayConfig {
            base_url: gw_url,
            account_sid: "AC123".into(),
            auth_token: edge_node::config::Secret("tok-secret".into()),
            from: "+15005550006".into(),
            whatsapp_from: Some("+15005550007".into()),
            inbound_url: None,
        });
    })
    .await;
    let p = t.provider().await;
    let r = t.recipient(-6.21, 106.82).await;
    let phone = "+6281234567890";
    for kind in ["sms", "whatsapp"] {
        let (s, body) = t
            .post(
                &format!("/recipients/{r}/channels"),
                json!({"kind": kind, "phone": phone}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert!(
            !body.to_string().contains(phone),
            "the number is masked: {body}"
        );
    }
    let s = t.surplus(&p, json!({})).await;
    until("the gateway is asked for both messages", async || {
        gw.sent().len() == 2
    })
    .await;
    let sent = gw.sent();
    let sms = sent
        .iter()
        .find(|(_, f)| field(f, "To") == phone)
        .expect("the SMS");
    let wa = sent
        .iter()
        .find(|(_, f)| field(f, "To") == format!("whatsapp:{phone}"))
        .expect("the WhatsApp message");
    assert_eq!(sms.0, "AC123");
    assert_eq!(field(&sms.1, "From"), "+15005550006");
    assert_eq!(field(&wa.1, "From"), "whatsapp:+15005550007");
    let text = field(&sms.1, "Body").to_string();
    assert!(
        text.contains("12.5 kg") && text.contains("Warung Sederhana"),
        "{text}"
    );
    assert!(!text.contains("+62 21 555"), "no contact data: {text}");
    let code: u64 = text
        .split("YA ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a reply code in the message");

    // The reply, signed the way the gateway signs it.
    let inbound = format!("{}/api/v1/notify/sms/inbound", t.base);
    let signed_url = "https://edge.example/api/v1/notify/sms/inbound";
    let reply = |from: &str, body: &str, token: &str| {
        let params: Vec<(String, String)> = [
            ("From", from.to_string()),
            ("To", "+15005550006".to_string()),
            ("Body", body.to_string()),
            ("MessageSid", "SM999".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let sig = edge_node::twilio::signature(token, signed_url, &params);
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        reqwest::Client::new()
            .post(&inbound)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", sig)
            .body(form)
            .send()
    };
    let sid = s["id"].as_str().expect("id").to_string();
    let status_of = async || t.get(&format!("/surplus/{sid}")).await.1["status"].clone();
    // A forged signature, a stranger's number and a wrong code change nothing.
    let forged = reply(phone, &format!("YA {code}"), "not-the-token")
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let stranger = reply("+6289999999999", &format!("YA {code}"), "tok-secret")
        .await
        .expect("post");
    assert_eq!(stranger.status(), StatusCode::OK);
    assert!(
        stranger
            .text()
            .await
            .unwrap_or_default()
            .contains("tidak dikenal")
    );
    let wrong = reply(phone, "YA 1", "tok-secret").await.expect("post");
    assert!(
        wrong
            .text()
            .await
            .unwrap_or_default()
            .contains("tidak dikenal")
    );
    assert_eq!(status_of().await, "offered");
    // The recipient's own number answers YA: the offer is accepted.
    let yes = reply(
        &format!("whatsapp:{phone}"),
        &format!("ya {code}"),
        "tok-secret",
    )
    .await
    .expect("post");
    assert_eq!(yes.status(), StatusCode::OK);
    assert!(
        yes.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/xml")
    );
    let xml = yes.text().await.unwrap_or_default();
    assert!(
        xml.contains("<Response><Message>") && xml.contains("diterima"),
        "{xml}"
    );
    assert_eq!(status_of().await, "claimed");
    let (_, surplus) = t.get(&format!("/surplus/{sid}")).await;
    assert_eq!(surplus["claimed_by"], r.as_str());
    t.stop().await;
}

/// The edge's VAPID public key, as a page reads it (no credentials).
async fn application_server_key(t: &TestEdge) -> String {
    let resp = reqwest::get(t.url("/notify/web-push"))
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    let key = body["application_server_key"]
        .as_str()
        .expect("a key")
        .to_string();
    assert_eq!(key.len(), 87, "65 bytes, base64url: {key}");
    key
}

/// Registers `sub` as `PushSubscription.toJSON()` gives it, plus its kind.
async fn push_channel(t: &TestEdge, recipient: &str, sub: &testkit::push::Subscription) -> Value {
    let mut body = sub.to_json();
    body["kind"] = json!("web_push");
    let (s, got) = t
        .post(&format!("/recipients/{recipient}/channels"), body)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{got}");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_pushed_encrypted_to_a_browser_subscription_and_a_withdrawn_one_is_forgotten() {
    let t = TestEdge::start().await;
    let p = t.provider().await;
    let r = t.recipient(-6.21, 106.82).await;
    let push = testkit::push::FakePushService::start().await;
    let key = application_server_key(&t).await;
    let (kiosk, phone) = (push.subscribe(&key), push.subscribe(&key));
    let created = push_channel(&t, &r, &kiosk).await;
    push_channel(&t, &r, &phone).await;
    assert_eq!(created["kind"], "web_push");
    assert_eq!(created["secret"], "");
    // A listing shows the push service, not the subscription's capability.
    assert_eq!(created["url"], format!("http://{}", push.addr));
    let (_, list) = t.get(&format!("/recipients/{r}/channels")).await;
    let text = list.to_string();
    assert!(
        !text.contains("/push/") && !text.contains(&kiosk.auth),
        "{text}"
    );

    let posted = Instant::now();
    let s = t.surplus(&p, json!({})).await;
    let sid = s["id"].as_str().expect("id").to_string();
    until("both subscriptions are pushed the offer", async || {
        push.received().len() == 2
    })
    .await;
    assert!(push.refused().is_empty(), "{:?}", push.refused());
    let got = push.received();
    for m in &got {
        eprintln!(
            "push {}: delivered and decrypted {} ms after the post returned",
            m.token,
            m.at.saturating_duration_since(posted).as_millis()
        );
        assert_eq!(m.payload["type"], "offer.made", "{}", m.payload);
        assert_eq!(m.payload["data"]["surplus_id"], sid.as_str());
        assert_eq!(m.payload["data"]["quantity_kg"], 12.5);
        assert!(
            m.payload["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("msg_test-edge_")),
            "{}",
            m.payload
        );
        assert_eq!(m.urgency, "high");
        // It lives at the push service no longer than the offer can be
        // answered (the default ACK timeout is 5 minutes).
        assert!(m.ttl >= 1 && m.ttl <= 300, "ttl {}", m.ttl);
        let text = m.payload.to_string();
        for secret in ["owner@warung.example", "ops@bank.example", "+62 21 555"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    assert_ne!(got[0].payload["id"], got[1].payload["id"]);
    assert_eq!(
        metric(
            &t,
            "notify_deliveries_total{channel=\"web_push\",outcome=\"delivered\"}"
        )
        .await,
        2.0
    );

    // The phone withdraws its subscription: the push service says 410, the
    // edge removes the channel and sends it nothing more.
    push.withdraw(&phone);
    let attempts = push.attempts();
    let p2 = t.provider().await;
    t.surplus(&p2, json!({})).await;
    until("the kiosk gets the second offer", async || {
        push.received().len() == 3
    })
    .await;
    until(
        "the withdrawn subscription's channel is removed",
        async || channel_rows(&t) == 1,
    )
    .await;
    assert_eq!(
        push.attempts(),
        attempts + 2,
        "one attempt each, no retry of a 410"
    );
    let (_, list) = t.get(&format!("/recipients/{r}/channels")).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["id"], created["id"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_service_down_for_a_while_gets_the_offer_once_it_returns() {
    let t = TestEdge::start_with(|c| c.notify.backoff_max_ms = 2_000).await;
    let p = t.provider().await;
    let r = t.recipient(-6.21, 106.82).await;
    let push = testkit::push::FakePushService::start().await;
    let sub = push.subscribe(&application_server_key(&t).await);
    push_channel(&t, &r, &sub).await;
    push.set_failing(true);
    t.surplus(&p, json!({})).await;
    until("a few attempts fail", async || push.attempts() >= 3).await;
    assert!(push.received().is_empty());
    push.set_failing(false);
    until("the offer arrives after the service returns", async || {
        push.received().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(push.received().len(), 1, "delivered once");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_push_subscriptions_are_refused_and_change_nothing() {
    let t = TestEdge::start().await;
    let r = t.recipient(-6.21, 106.82).await;
    let push = testkit::push::FakePushService::start().await;
    let good = push.subscribe(&application_server_key(&t).await);
    let path = format!("/recipients/{r}/channels");
    let with = |endpoint: &str, p256dh: &str, auth: &str| json!({"kind": "web_push", "endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}});
    let mut off_curve = good.p256dh.clone().into_bytes();
    off_curve[80] = if off_curve[80] == b'A' { b'B' } else { b'A' };
    let off_curve = String::from_utf8(off_curve).unwrap_or_default();
    let cases: Vec<(Value, &str)> = vec![
        (
            with("http://push.example.org/p", &good.p256dh, &good.auth),
            "invalid_url",
        ),
        (
            with("ftp://127.0.0.1/p", &good.p256dh, &good.auth),
            "invalid_url",
        ),
        (with(&good.endpoint, "", &good.auth), "invalid_subscription"),
        (
            with(&good.endpoint, &good.p256dh[..40], &good.auth),
            "invalid_subscription",
        ),
        (
            with(&good.endpoint, &off_curve, &good.auth),
            "invalid_subscription",
        ),
        (
            with(&good.endpoint, &good.p256dh, "short"),
            "invalid_subscription",
        ),
        (
            with(&good.endpoint, &good.p256dh, &format!("{}AA", good.auth)),
            "invalid_subscription",
        ),
        (
            json!({"kind": "web_push", "endpoint": good.endpoint}),
            "invalid_field",
        ),
        (
            json!({"kind": "web_push", "endpoint": good.endpoint, "keys": {"p256dh": good.p256dh}}),
            "invalid_field",
        ),
        (
            json!({"kind": "web_push", "endpoint": good.endpoint, "keys": {"p256dh": good.p256dh, "auth": good.auth, "x": 1}}),
            "invalid_field",
        ),
        (
            json!({"kind": "web_push", "keys": {"p256dh": good.p256dh, "auth": good.auth}}),
            "invalid_field",
        ),
    ];
    for (body, code) in cases {
        let (s, got) = t.post(&path, body.clone()).await;
        assert_eq!(
            (s, got["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{body}: {got}"
        );
    }
    assert_eq!(channel_rows(&t), 0, "nothing was stored");
    t.stop().await;

    // An edge without Web Push says so, to the page and to a registration.
    let t = TestEdge::start_with(|c| c.notify.web_push.enabled = false).await;
    let r = t.recipient(-6.21, 106.82).await;
    let resp = reqwest::get(t.url("/notify/web-push"))
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "web_push_disabled");
    let mut req = good.to_json();
    req["kind"] = json!("web_push");
    let (s, got) = t.post(&format!("/recipients/{r}/channels"), req).await;
    assert_eq!(
        (s, got["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("web_push_disabled"))
    );
    t.stop().await;
}
