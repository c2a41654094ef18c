//! The food bank's kiosk page, end to end: a real `pahlawan edge run`, a
//! code from `pahlawan kiosk pair`, and Debian's headless Chromium driving
//! the page over WebDriver (`testkit::browser`). Screenshots of each state,
//! in English and Bahasa Indonesia, are saved under
//! `target/browser-artefacts/kiosk-*.png`.
//!
//! Besides the page: the pairing API's refusals, the device cookie's CSRF
//! check, revocation and the Idempotency-Key on actions, over plain HTTP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{EdgeProc, in_minutes, post, start_edge};
use edge_node::auth::Role;
use serde_json::{Value, json};
use testkit::browser::{Browser, free_port};

const PHONE: &str = "+62 21 555 1234";
const EMAIL: &str = "roti@example.org";

/// An edge's config on a fixed loopback port (so a restart comes back at
/// the address the page knows).
fn config(dir: &Path, port: u16, ack_timeout_secs: u64) -> PathBuf {
    let path = dir.join("edge.toml");
    let toml = format!(
        "edge_id = \"kiosk-test\"\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
         [lifecycle]\nack_timeout_secs = {ack_timeout_secs}\n",
        dir.join("data").display()
    );
    std::fs::write(&path, toml).expect("write the config");
    path
}

struct Edge {
    dir: tempfile::TempDir,
    config: PathBuf,
    proc: Option<EdgeProc>,
    base: String,
}

impl Edge {
    fn start(ack_timeout_secs: u64) -> Edge {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), free_port(), ack_timeout_secs);
        let proc = start_edge(&config);
        let base = proc.base.clone();
        Edge {
            dir,
            config,
            proc: Some(proc),
            base,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn admin(&self) -> reqwest::Client {
        common::admin_client(&self.data())
    }

    fn as_(&self, role: Role, sub: &str) -> reqwest::Client {
        common::client_as(&self.data(), role, sub)
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.proc.terminate();
        }
    }

    fn restart(&mut self) {
        let proc = start_edge(&self.config);
        assert_eq!(proc.base, self.base, "back on the same address");
        self.proc = Some(proc);
    }

    /// `pahlawan kiosk pair --recipient ID`: the code it prints.
    fn pair_code(&self, recipient: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
            .args(["kiosk", "pair", "--recipient", recipient, "--config"])
            .arg(&self.config)
            .output()
            .expect("run kiosk pair");
        assert!(
            out.status.success(),
            "kiosk pair: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains('█') || stderr.contains('▀'),
            "a QR code: {stderr}"
        );
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(code.len(), 9, "XXXX-XXXX: {code:?}");
        code
    }

    /// `GET /recipients/{recipient}/channels`, as an admin.
    async fn channels(&self, recipient: &str) -> Value {
        self.admin()
            .get(format!(
                "{}/api/v1/recipients/{recipient}/channels",
                self.base
            ))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json")
    }

    /// One audit row count: `action` on `resource` answered `status`.
    fn audits(&self, action: &str, resource: &str, status: u16) -> i64 {
        let db = self.data().join(edge_node::store::DB_FILE);
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open the edge's database");
        conn.query_row(
            "SELECT count(*) FROM audit_log WHERE action = ?1 AND resource = ?2 AND status = ?3",
            rusqlite::params![action, resource, status],
            |r| r.get(0),
        )
        .expect("count")
    }
}

/// A provider with an address, the kiosk's recipient, and a second one.
async fn seed(edge: &Edge) -> (String, String, String) {
    let a = edge.admin();
    let base = &edge.base;
    let (s, p) = post(
        &a,
        format!("{base}/api/v1/providers"),
        json!({"name": "Toko Roti Makmur", "lat": -6.2, "lon": 106.816,
               "address": "Jl. Sabang No. 12, Jakarta Pusat",
               "contact_phone": PHONE, "contact_email": EMAIL}),
    )
    .await
    .expect("register provider");
    assert_eq!(s, 201, "{p}");
    let mut ids = vec![p["id"].as_str().expect("id").to_string()];
    for (name, lat) in [("Bank Makanan Menteng", -6.205), ("Dapur Umum Jauh", -6.29)] {
        let (s, r) = post(
            &a,
            format!("{base}/api/v1/recipients"),
            json!({"name": name, "lat": lat, "lon": 106.82, "capacity_kg_per_day": 500,
                   "accepted_food_types": ["bakery", "prepared_meals"], "is_fallback": false,
                   "contact_phone": "+62 21 555 9876", "contact_email": "bank@example.org"}),
        )
        .await
        .expect("register recipient");
        assert_eq!(s, 201, "{r}");
        ids.push(r["id"].as_str().expect("id").to_string());
    }
    (ids[0].clone(), ids[1].clone(), ids[2].clone())
}

async fn post_surplus(edge: &Edge, provider: &str, kg: f64) -> Value {
    let c = edge.as_(Role::Provider, provider);
    let (s, v) = post(
        &c,
        format!("{}/api/v1/surplus", edge.base),
        json!({"provider_id": provider, "lat": -6.2, "lon": 106.816, "quantity_kg": kg,
               "food_type": "bakery", "expires_at": in_minutes(180), "description": "Roti tawar"}),
    )
    .await
    .expect("post surplus");
    assert_eq!(s, 201, "{v}");
    v
}

async fn surplus(edge: &Edge, id: &str) -> Value {
    edge.admin()
        .get(format!("{}/api/v1/surplus/{id}", edge.base))
        .send()
        .await
        .expect("get surplus")
        .json()
        .await
        .expect("json")
}

async fn until_status(edge: &Edge, id: &str, status: &str) -> Value {
    testkit::eventually(&format!("surplus {id} to be {status}"), || async {
        let v = surplus(edge, id).await;
        (v["status"] == status).then_some(v)
    })
    .await
}

fn card(id: &str) -> String {
    format!("li[data-surplus=\"{id}\"]")
}

/// Opens the kiosk page and pairs it with a code from the CLI.
async fn paired_page(edge: &Edge, recipient: &str, prefix: &str) -> Option<Browser> {
    let b = Browser::start(prefix, "en").await?;
    b.goto(&format!("{}/kiosk", edge.base)).await;
    b.until_js(
        "the pairing form",
        "return !document.getElementById('pair').hidden;",
    )
    .await;
    b.type_into("#pair-code", "2222-2222").await;
    b.click("#pair-button").await;
    b.until_text("#pair-error", "not right").await;
    let code = edge.pair_code(recipient);
    b.type_into("#pair-code", &code.to_lowercase()).await;
    b.screenshot("en-pairing").await;
    b.click("#pair-button").await;
    b.until_text("#who", "Bank Makanan Menteng").await;
    Some(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paired_kiosk_takes_offers_pickups_and_deliveries_and_no_tap_is_lost_to_a_restart() {
    let mut edge = Edge::start(300);
    let (provider, me, _) = seed(&edge).await;
    let Some(b) = paired_page(&edge, &me, "kiosk").await else {
        return;
    };
    b.screenshot("en-empty").await;

    // An offer appears while the page is open.
    let posted_at = Instant::now();
    let s1 = post_surplus(&edge, &provider, 12.5).await;
    let s1 = s1["id"].as_str().expect("id").to_string();
    b.until_js(
        "the offer's card",
        &format!(
            "return !!document.querySelector('{} button.accept');",
            card(&s1)
        ),
    )
    .await;
    eprintln!("offer shown {:?} after the post", posted_at.elapsed());
    let text = b.text(&card(&s1)).await.expect("the card");
    for needle in [
        "Toko Roti Makmur",
        "Jl. Sabang No. 12",
        "12.5 kg",
        "Bakery",
        "km away",
        "left to accept",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text:?}");
    }
    let body = b.js("return document.body.innerText;", vec![]).await;
    let body = body.as_str().expect("text");
    assert!(
        !body.contains(PHONE) && !body.contains(EMAIL),
        "no contact data on the page"
    );
    b.screenshot("en-offer").await;

    // Accept, pick up, deliver: the API agrees at each step.
    b.click(&format!("{} button.accept", card(&s1))).await;
    let v = until_status(&edge, &s1, "claimed").await;
    assert_eq!(v["claimed_by"], me.as_str());
    b.click(&format!("#claims {} button.pickup", card(&s1)))
        .await;
    until_status(&edge, &s1, "picked_up").await;
    b.type_into(&format!("#claims {} input.deliver-kg", card(&s1)), "7.5")
        .await;
    b.click(&format!("#claims {} button.deliver", card(&s1)))
        .await;
    let v = until_status(&edge, &s1, "delivered").await;
    assert_eq!(v["delivered_kg"], 7.5);
    b.until_text("#today-kg", "7.5").await;
    b.until_text("#today-meals", "16").await;
    b.screenshot("en-delivered").await;
    assert_eq!(
        edge.audits("offer.accept", &format!("surplus/{s1}"), 200),
        1
    );
    assert_eq!(
        edge.audits("surplus.deliver", &format!("surplus/{s1}"), 200),
        1
    );

    // The edge goes away: the page says so; a tap made then is kept…
    let s2 = post_surplus(&edge, &provider, 4.0).await;
    let s2 = s2["id"].as_str().expect("id").to_string();
    b.until_js(
        "the second offer",
        &format!(
            "return !!document.querySelector('{} button.accept');",
            card(&s2)
        ),
    )
    .await;
    edge.stop();
    b.until_js(
        "the offline banner",
        "return !document.getElementById('offline').hidden;",
    )
    .await;
    b.click(&format!("{} button.accept", card(&s2))).await;
    b.until_text(&card(&s2), "Waiting to send").await;
    b.screenshot("en-offline").await;
    // …and applied once when it is back.
    edge.restart();
    let v = until_status(&edge, &s2, "claimed").await;
    assert_eq!(v["claimed_by"], me.as_str());
    b.until_js(
        "the banner to go",
        "return document.getElementById('offline').hidden;",
    )
    .await;
    b.until_js(
        "the queue to empty",
        "return localStorage.getItem('pahlawan.kiosk.queue') === '[]';",
    )
    .await;
    let resource = format!("surplus/{s2}");
    assert_eq!(edge.audits("offer.accept", &resource, 200), 1, "one accept");
    assert_eq!(
        edge.audits("offer.accept.replay", &resource, 200),
        0,
        "sent once"
    );

    // Bahasa Indonesia: the labels change, and the choice is remembered.
    b.click("#lang-id").await;
    b.until_text("#title", "Tawaran makanan").await;
    assert_eq!(
        b.text("h2[data-t=offers_title]").await.as_deref(),
        Some("Tawaran untuk Anda")
    );
    b.until_text("#claims", "Sudah diantar").await;
    b.until_text("#board", "kg diterima hari ini").await;
    b.screenshot("id-board").await;
    b.goto(&format!("{}/kiosk", edge.base)).await;
    b.until_text("#title", "Tawaran makanan").await;
    assert_eq!(
        b.js("return document.documentElement.lang;", vec![]).await,
        "id"
    );
    b.close().await;
}

/// The smallest text a kiosk read from two metres may show, in CSS px.
const TWO_METRES_PX: f64 = 18.0;

/// Every accessibility check of `testkit::browser` on the page as it is
/// now: large type, WCAG AA contrast, visible focus on every control Tab
/// reaches, nothing revealed by hover. `state` names the page's state in
/// the failure, which lists every problem found at once.
async fn assert_accessible(b: &Browser, state: &str) {
    let mut problems = Vec::new();
    let body = b
        .js(
            "return parseFloat(getComputedStyle(document.body).fontSize);",
            vec![],
        )
        .await;
    match body.as_f64() {
        Some(px) if px >= TWO_METRES_PX => {}
        other => problems.push(format!("body text is {other:?}px, under {TWO_METRES_PX}px")),
    }
    for (check, found) in [
        ("text under 18px", b.small_text(TWO_METRES_PX).await),
        ("contrast below WCAG AA", b.contrast_failures().await),
        ("focus not visible", b.focus_visible_failures().await),
        ("hover reveals content", b.hover_reveal_rules().await),
    ] {
        problems.extend(found.into_iter().map(|f| format!("{check}: {f}")));
    }
    assert!(
        problems.is_empty(),
        "{state}: {} accessibility problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Tab from the top of the page reaches each of `wanted` (a part of a
/// [`Browser::keyboard_walk`] description, e.g. `button.accept`) as often
/// as it says, and the language switch before the offers.
async fn assert_tab_reaches(b: &Browser, state: &str, wanted: &[(&str, usize)]) {
    let walk = b.keyboard_walk(60).await;
    eprintln!("{state}: the Tab order: {walk:#?}");
    let at = |needle: &str| walk.iter().position(|d| d.starts_with(needle));
    for (needle, times) in wanted {
        let n = walk.iter().filter(|d| d.starts_with(needle)).count();
        assert_eq!(n, *times, "{state}: {needle} in the Tab order {walk:#?}");
    }
    assert!(
        at("button#lang-id") < at("button.accept"),
        "{state}: the language switch comes first: {walk:#?}"
    );
}

/// Back to the top of the page, nothing focused: the checks leave focus
/// and the scroll wherever their last Tab took them.
async fn to_top(b: &Browser) {
    b.js(
        "document.activeElement.blur(); window.scrollTo(0, 0);",
        vec![],
    )
    .await;
}

/// Waits for a live offer's card (one with its Accept button).
async fn until_offer(b: &Browser, id: &str) {
    b.until_js(
        "the offer's card",
        &format!(
            "return !!document.querySelector('{} button.accept');",
            card(id)
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_reads_from_two_metres_and_works_by_keyboard_alone_in_both_languages_and_offline()
{
    let mut edge = Edge::start(300);
    let (provider, me, other) = seed(&edge).await;

    // The pairing page, by keyboard alone: a wrong code typed, Enter.
    let Some(b) = Browser::start("kiosk-a11y-pairing", "en").await else {
        return;
    };
    b.goto(&format!("{}/kiosk", edge.base)).await;
    b.until_js(
        "the pairing form",
        "return !document.getElementById('pair').hidden;",
    )
    .await;
    b.tab_to("#pair-code", 10).await;
    b.type_keys("2222-2222").await;
    b.press_enter().await;
    b.until_text("#pair-error", "not right").await;
    assert_accessible(&b, "the pairing page with an error").await;
    let walk = b.keyboard_walk(20).await;
    for id in ["#lang-en", "#lang-id", "#pair-code", "#pair-button"] {
        assert!(walk.iter().any(|d| d.contains(id)), "{id} in {walk:#?}");
    }
    to_top(&b).await;
    b.screenshot("en-pairing-error").await;
    b.close().await;

    let Some(b) = paired_page(&edge, &me, "kiosk-a11y").await else {
        return;
    };
    // Accepted by keyboard alone: Tab to the offer's Accept, Enter.
    let s1 = post_surplus(&edge, &provider, 12.5).await;
    let s1 = s1["id"].as_str().expect("id").to_string();
    until_offer(&b, &s1).await;
    b.tab_to(&format!("{} button.accept", card(&s1)), 20).await;
    b.press_enter().await;
    let v = until_status(&edge, &s1, "claimed").await;
    assert_eq!(
        v["claimed_by"],
        me.as_str(),
        "claimed by the kiosk's recipient"
    );
    assert_eq!(
        edge.audits("offer.accept", &format!("surplus/{s1}"), 200),
        1,
        "one accept"
    );
    // A second one accepted with Space, then picked up with Enter: its
    // card holds the delivered-kg field.
    let s3 = post_surplus(&edge, &provider, 6.0).await;
    let s3 = s3["id"].as_str().expect("id").to_string();
    until_offer(&b, &s3).await;
    b.tab_to(&format!("{} button.accept", card(&s3)), 20).await;
    b.press_space().await;
    until_status(&edge, &s3, "claimed").await;
    let pickup = format!("#claims {} button.pickup", card(&s3));
    b.until_js(
        "the pick-up button",
        &format!("return !!document.querySelector('{pickup}');"),
    )
    .await;
    b.tab_to(&pickup, 20).await;
    b.press_enter().await;
    until_status(&edge, &s3, "picked_up").await;
    b.until_js(
        "the delivered-kg field",
        &format!(
            "return !!document.querySelector('#claims {} input.deliver-kg');",
            card(&s3)
        ),
    )
    .await;
    // A race lost by keyboard: the plain message stays on the page.
    let s4 = post_surplus(&edge, &provider, 3.0).await;
    let id4 = s4["id"].as_str().expect("id").to_string();
    until_offer(&b, &id4).await;
    let (st, v) = post(
        &edge.as_(Role::Ngo, &other),
        format!("{}/api/v1/surplus/{id4}/claim", edge.base),
        json!({"recipient_id": other, "version": s4["version"]}),
    )
    .await
    .expect("claim");
    assert_eq!(st, 200, "{v}");
    b.tab_to(&format!("{} button.accept", card(&id4)), 20).await;
    b.press_enter().await;
    b.until_text("#message", "Someone else took this food first")
        .await;
    // And a live offer.
    let s2 = post_surplus(&edge, &provider, 4.0).await;
    let s2 = s2["id"].as_str().expect("id").to_string();
    until_offer(&b, &s2).await;
    b.until_js(
        "the lost offer gone, the claims listed",
        &format!(
            "return !document.querySelector('#offers {}') && \
             document.querySelectorAll('#claims li').length === 2;",
            card(&id4)
        ),
    )
    .await;

    let controls = [
        ("button#lang-en", 1),
        ("button#lang-id", 1),
        ("button.accept", 1),
        ("button.decline", 1),
        ("button.pickup", 1),
        ("input.deliver-kg", 1),
        ("button.deliver", 1),
    ];
    assert_accessible(&b, "English").await;
    assert_tab_reaches(&b, "English", &controls).await;
    // The focus ring, as a keyboard user sees it on the offer's Accept.
    to_top(&b).await;
    b.tab_to(&format!("{} button.accept", card(&s2)), 20).await;
    b.screenshot("en-board-focus").await;

    // Offline: the banner, in English, then Bahasa Indonesia chosen by
    // keyboard (Space on the switch).
    edge.stop();
    b.until_js(
        "the offline banner",
        "return !document.getElementById('offline').hidden;",
    )
    .await;
    assert_accessible(&b, "English, offline").await;
    to_top(&b).await;
    b.screenshot("en-board-offline").await;
    b.tab_to("#lang-id", 10).await;
    b.press_space().await;
    b.until_text("#title", "Tawaran makanan").await;
    b.until_text("#offline", "Luring").await;
    b.until_text("#message", "Penerima lain mengambil").await;
    assert_accessible(&b, "Bahasa Indonesia, offline").await;
    assert_tab_reaches(&b, "Bahasa Indonesia, offline", &controls).await;
    to_top(&b).await;
    b.screenshot("id-board-offline").await;

    edge.restart();
    b.until_js(
        "the banner to go",
        "return document.getElementById('offline').hidden;",
    )
    .await;
    until_offer(&b, &s2).await;
    assert_accessible(&b, "Bahasa Indonesia").await;
    assert_tab_reaches(&b, "Bahasa Indonesia", &controls).await;
    to_top(&b).await;
    b.screenshot("id-board").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_is_said_plainly_and_an_expired_offer_is_not_actionable() {
    let edge = Edge::start(20);
    let (provider, me, other) = seed(&edge).await;
    let Some(b) = paired_page(&edge, &me, "kiosk-race").await else {
        return;
    };
    // Someone else claims the surplus first; the kiosk's tap then loses.
    let s = post_surplus(&edge, &provider, 3.0).await;
    let id = s["id"].as_str().expect("id").to_string();
    assert_eq!(
        s["offer"]["recipient_id"],
        me.as_str(),
        "offered to the kiosk's recipient"
    );
    b.until_js(
        "the offer",
        &format!(
            "return !!document.querySelector('{} button.accept');",
            card(&id)
        ),
    )
    .await;
    let c = edge.as_(Role::Ngo, &other);
    let (st, v) = post(
        &c,
        format!("{}/api/v1/surplus/{id}/claim", edge.base),
        json!({"recipient_id": other, "version": s["version"]}),
    )
    .await
    .expect("claim");
    assert_eq!(st, 200, "{v}");
    b.click(&format!("{} button.accept", card(&id))).await;
    b.until_text("#message", "Someone else took this food first")
        .await;
    b.screenshot("en-lost-race").await;
    b.click("#lang-id").await;
    b.until_text("#title", "Tawaran makanan").await;
    b.screenshot("id-lost-race").await;
    b.click("#lang-en").await;

    // An offer whose answer time is over shows so, with nothing to tap.
    let s = post_surplus(&edge, &provider, 2.0).await;
    let id = s["id"].as_str().expect("id").to_string();
    b.until_js(
        "the offer",
        &format!(
            "return !!document.querySelector('{} button.accept');",
            card(&id)
        ),
    )
    .await;
    b.until_text(&card(&id), "Offer expired").await;
    let buttons = b
        .js(
            &format!(
                "return document.querySelectorAll('{} button').length;",
                card(&id)
            ),
            vec![],
        )
        .await;
    assert_eq!(buttons, 0, "an expired offer has nothing to tap");
    b.screenshot("en-expired").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_has_a_strict_csp_and_no_inline_script() {
    let edge = Edge::start(300);
    let resp = reqwest::get(format!("{}/kiosk", edge.base))
        .await
        .expect("GET /kiosk");
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    let api = reqwest::get(format!("{}/healthz", edge.base))
        .await
        .expect("healthz");
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    let Some(b) = Browser::start("kiosk-csp", "id").await else {
        return;
    };
    b.goto(&format!("{}/kiosk", edge.base)).await;
    b.until_js(
        "the page's script to run",
        "return !document.getElementById('pair').hidden;",
    )
    .await;
    let inline = b
        .js(
            "return document.querySelectorAll('script:not([src])').length;",
            vec![],
        )
        .await;
    assert_eq!(inline, 0, "no inline script");
    let foreign = b
        .js(
            "return Array.prototype.filter.call(document.querySelectorAll('[src],[href]'), \
             function (e) { return (e.src || e.href).indexOf(location.origin) !== 0; }).length;",
            vec![],
        )
        .await;
    assert_eq!(foreign, 0, "nothing from another origin");
    b.click("#lang-id").await;
    b.until_text("h2[data-t=pair_title]", "Pasangkan kios ini")
        .await;
    b.screenshot("id-pairing").await;
    b.close().await;
}

/// The device cookie a successful pairing set, as a `Cookie` header value.
fn cookie_of(resp: &reqwest::Response) -> String {
    let set = resp.headers()["set-cookie"].to_str().expect("ascii");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    set.split(';').next().expect("name=value").to_string()
}

async fn pair_http(edge: &Edge, code: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/api/v1/kiosk/pair", edge.base))
        .json(&json!({ "code": code }))
        .send()
        .await
        .expect("pair")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_refusals_csrf_revocation_and_idempotent_taps_over_http() {
    let edge = Edge::start(300);
    let (provider, me, _) = seed(&edge).await;
    let base = &edge.base;
    // Wrong, malformed, used: each a clear refusal.
    for (code, status, error) in [
        ("2222-2222", 401, "pairing_code_unknown"),
        ("short", 422, "invalid_code"),
        ("0000-OOOO", 422, "invalid_code"),
    ] {
        let r = pair_http(&edge, code).await;
        assert_eq!(r.status().as_u16(), status, "{code}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], error, "{code}: {v}");
    }
    let code = edge.pair_code(&me);
    let r = pair_http(&edge, &code).await;
    assert_eq!(r.status().as_u16(), 201);
    let cookie = cookie_of(&r);
    let paired: Value = r.json().await.expect("json");
    let csrf = paired["csrf_token"].as_str().expect("token").to_string();
    let device = paired["device_id"].as_str().expect("id").to_string();
    let again: Value = pair_http(&edge, &code).await.json().await.expect("json");
    assert_eq!(again["error"]["code"], "pairing_code_used");
    assert_eq!(
        edge.audits("kiosk.pair", &format!("kiosk/{device}"), 201),
        1
    );

    // The cookie acts as the recipient; a mutating call needs the token.
    let kiosk = reqwest::Client::new();
    let get = |path: String| kiosk.get(format!("{base}{path}")).header("cookie", &cookie);
    let session: Value = get("/api/v1/kiosk/session".into())
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert_eq!(session["recipient_id"], me.as_str());
    assert_eq!(session["csrf_token"], csrf.as_str());
    let s = post_surplus(&edge, &provider, 5.0).await;
    let id = s["id"].as_str().expect("id");
    let accept = |token: Option<&str>, key: &str| {
        let mut r = kiosk
            .post(format!("{base}/api/v1/offers/{id}/accept"))
            .header("cookie", &cookie)
            .header("idempotency-key", key)
            .json(&json!({ "recipient_id": me }));
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    let r = accept(None, "k1").await.expect("accept");
    assert_eq!(r.status().as_u16(), 403);
    let r = accept(Some("not-the-token"), "k1").await.expect("accept");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        surplus(&edge, id).await["status"],
        "offered",
        "refused calls change nothing"
    );
    // The same tap twice (a replay after a lost answer): applied once.
    let first = accept(Some(&csrf), "k1").await.expect("accept");
    assert_eq!(first.status().as_u16(), 200);
    let second = accept(Some(&csrf), "k1").await.expect("accept");
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let resource = format!("surplus/{id}");
    assert_eq!(edge.audits("offer.accept", &resource, 200), 1);
    assert_eq!(edge.audits("offer.accept.replay", &resource, 200), 1);
    // The same key for another action is refused.
    let other = kiosk
        .post(format!("{base}/api/v1/surplus/{id}/pickup"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("idempotency-key", "k1")
        .json(&json!({ "recipient_id": me }))
        .send()
        .await
        .expect("pickup");
    assert_eq!(other.status().as_u16(), 422);

    // `kiosk list` shows the device; `kiosk revoke` ends it at once.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
            .args(args)
            .arg("--config")
            .arg(&edge.config)
            .output()
            .expect("run pahlawan");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, list, _) = cli(&["kiosk", "list"]);
    assert!(
        ok && list.contains(&device) && list.contains("active"),
        "{list}"
    );
    let (ok, _, _) = cli(&["kiosk", "revoke", &device]);
    assert!(ok);
    let r = get("/api/v1/kiosk/session".into())
        .send()
        .await
        .expect("session");
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "device_revoked");
    let (ok, _, err) = cli(&["kiosk", "revoke", &device]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("404"),
        "{err}"
    );
    let (ok, _, err) = cli(&["kiosk", "pair", "--recipient", "not-a-uuid"]);
    assert!(!ok && err.lines().count() == 1, "{err}");
    assert_eq!(
        edge.audits("kiosk.revoke", &format!("kiosk/{device}"), 200),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_attempts_are_rate_limited_per_address() {
    let edge = Edge::start(300);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(pair_http(&edge, "2222-2222").await.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429; 2], "{statuses:?}");
    let r = pair_http(&edge, "2222-2222").await;
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "pairing_rate_limited");
}

/// Makes the page's push subscription the fake push service's: a browser
/// here cannot reach its vendor's push service, so `subscribe` hands back
/// the subscription `sub` a real one would have made, and records the key
/// and options the page asked with. Notification permission is granted
/// as a person tapping "Allow" would.
const STUB_PUSH: &str = r#"
var sub = arguments[0];
var current = null;
window.__pushAsked = null;
Notification.requestPermission = function () { return Promise.resolve('granted'); };
PushManager.prototype.subscribe = function (opts) {
  var k = new Uint8Array(opts.applicationServerKey);
  window.__pushAsked = {
    userVisibleOnly: opts.userVisibleOnly,
    key: btoa(String.fromCharCode.apply(null, k)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
  };
  current = {
    endpoint: sub.endpoint,
    toJSON: function () { return sub; },
    unsubscribe: function () { current = null; return Promise.resolve(true); }
  };
  return Promise.resolve(current);
};
PushManager.prototype.getSubscription = function () { return Promise.resolve(current); };
return true;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_me_registers_the_pages_push_subscription_and_offers_arrive_by_push() {
    let edge = Edge::start(300);
    let (provider, me, _) = seed(&edge).await;
    let push = testkit::push::FakePushService::start().await;
    let key: Value = reqwest::get(format!("{}/api/v1/notify/web-push", edge.base))
        .await
        .expect("the key")
        .json()
        .await
        .expect("json");
    let key = key["application_server_key"]
        .as_str()
        .expect("a key")
        .to_string();
    let Some(b) = paired_page(&edge, &me, "kiosk-push").await else {
        return;
    };
    b.until_js(
        "the notify button",
        "return !document.getElementById('notify').hidden;",
    )
    .await;
    // The page registered its service worker, for the kiosk's scope.
    let scope = b
        .until_js(
            "the service worker",
            "return navigator.serviceWorker.getRegistration('/kiosk/').then(function (r) { return r ? r.scope : null; });",
        )
        .await;
    assert_eq!(scope, json!(format!("{}/kiosk/", edge.base)));
    let sub = push.subscribe(&key);
    b.js(STUB_PUSH, vec![sub.to_json()]).await;
    assert_eq!(
        b.text("#notify-button").await.as_deref(),
        Some("Notify me on this device")
    );
    b.click("#notify-button").await;
    b.until_text("#notify-status", "notified of new offers")
        .await;
    b.screenshot("en-notify-on").await;
    let asked = b.js("return window.__pushAsked;", vec![]).await;
    assert_eq!(asked["key"], key.as_str(), "subscribed with the edge's key");
    assert_eq!(asked["userVisibleOnly"], true);
    // The edge holds the subscription as the recipient's channel.
    let list: Value = edge.channels(&me).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["kind"], "web_push");
    assert_eq!(items[0]["url"], format!("http://{}", push.addr));

    // An offer to the kiosk's recipient reaches the push service, which
    // decrypts it with the subscription's keys.
    let s = post_surplus(&edge, &provider, 4.0).await;
    let id = s["id"].as_str().expect("id").to_string();
    let m = testkit::eventually("the offer is pushed", || async {
        push.received().into_iter().next()
    })
    .await;
    assert_eq!(
        m.payload["data"]["surplus_id"],
        id.as_str(),
        "{}",
        m.payload
    );
    assert_eq!(m.payload["data"]["quantity_kg"], 4.0);
    assert_eq!(m.payload["data"]["provider"]["name"], "Toko Roti Makmur");
    assert!(!m.payload.to_string().contains(PHONE));

    // In Bahasa Indonesia the button says it stops; a tap withdraws the
    // channel and the subscription.
    b.click("#lang-id").await;
    b.until_text("#notify-button", "Berhenti memberi tahu")
        .await;
    b.screenshot("id-notify-on").await;
    b.click("#notify-button").await;
    b.until_text("#notify-status", "tidak lagi diberi tahu")
        .await;
    b.until_text("#notify-button", "Beri tahu saya").await;
    b.screenshot("id-notify-off").await;
    let list: Value = edge.channels(&me).await;
    assert_eq!(list["items"], json!([]), "{list}");
    let gone = b
        .js(
            "return navigator.serviceWorker.getRegistration('/kiosk/').then(function (r) { return r.pushManager.getSubscription(); }).then(function (s) { return s === null; });",
            vec![],
        )
        .await;
    assert_eq!(
        gone,
        json!(true),
        "the browser's subscription is withdrawn too"
    );
    b.close().await;
}
