//! The hub's dashboard, end to end: a real hub on a throwaway PostgreSQL,
//! fed by a real `pahlawan edge run` over QUIC, a login code from
//! `pahlawan hub login-code`, and Debian's headless Chromium driving the
//! page over WebDriver (`testkit::browser`). Food delivered through the
//! edge's API appears on the page with its value; a dead-lettered surplus
//! appears in the trouble list; the edge's cells are drawn on the map; an
//! edge that stops turns stale; the language switch changes labels and
//! number formats and is remembered; sign-out ends the session.
//! Screenshots under `target/browser-artefacts/dashboard-*.png`.

mod common;

use common::{certs_for_edges, edge_config, hub_in_process, in_minutes, post, start_edge};
use serde_json::json;
use std::process::Command;
use testkit::browser::Browser;
use testkit::pg;

const EDGE: &str = "dash-jkt";

/// `pahlawan hub login-code` against the running hub: the code it prints.
fn login_code(base: &str, certs: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args([
            "hub",
            "login-code",
            "--role",
            "viewer",
            "--sub",
            "siti@example.org",
            "--url",
            base,
        ])
        .arg("--certs-dir")
        .arg(certs)
        .env("RUST_LOG", "off")
        .output()
        .expect("run hub login-code");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// WCAG AA on the page as it is now: contrast, focus visible, nothing
/// revealed only on hover, and each of `reach` in the Tab order.
async fn accessible(b: &Browser, state: &str, reach: &[&str]) {
    let mut failures = Vec::new();
    for (what, found) in [
        ("contrast below WCAG AA", b.contrast_failures().await),
        ("focus not visible", b.focus_visible_failures().await),
        ("hover reveals content", b.hover_reveal_rules().await),
        ("text under 12px", b.small_text(12.0).await),
    ] {
        failures.extend(found.into_iter().map(|f| format!("{what}: {f}")));
    }
    let walk = b.keyboard_walk(40).await;
    for r in reach {
        if !walk.iter().any(|w| w.contains(r)) {
            failures.push(format!("Tab never reaches {r}: {walk:?}"));
        }
    }
    assert!(failures.is_empty(), "{state}:\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_an_edge_delivered_its_trouble_and_its_going_stale() {
    let db = pg::fresh_database().await;
    let certs = certs_for_edges(&[EDGE]);
    let hub = hub_in_process(&db.url, certs.path(), |c| {
        c.dashboard.stale_after_secs = 10;
    })
    .await;
    let hub_base = format!("http://{}", hub.http_addr());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = edge_config(
        dir.path(),
        &data,
        certs.path(),
        EDGE,
        &hub.quic_addr().to_string(),
    );
    let mut edge = Some(start_edge(&config));
    let base = edge.as_ref().unwrap().base.clone();
    let admin = common::admin_client(&data);

    // A bakery, a food bank that takes bread (not frozen food): 12.5 kg of
    // bread delivered as 12.4 kg, and 3 kg of frozen food nobody can take.
    let (s, p) = post(
        &admin,
        format!("{base}/api/v1/providers"),
        json!({"name": "Toko Roti Makmur", "lat": -6.2, "lon": 106.816,
               "contact_phone": "+62 21 555 1234", "contact_email": "roti@example.org"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{p}");
    let provider = p["id"].as_str().unwrap().to_string();
    let (s, r) = post(
        &admin,
        format!("{base}/api/v1/recipients"),
        json!({"name": "Bank Makanan Menteng", "lat": -6.205, "lon": 106.82, "capacity_kg_per_day": 500,
               "accepted_food_types": ["bakery"], "contact_phone": "+62 21 555 9876",
               "contact_email": "bank@example.org"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{r}");
    let recipient = r["id"].as_str().unwrap().to_string();
    let surplus = |kg: f64, food: &str| {
        json!({"provider_id": provider, "lat": -6.2, "lon": 106.816, "quantity_kg": kg,
               "food_type": food, "expires_at": in_minutes(240), "description": "dashboard test"})
    };
    let (s, bread) = post(
        &admin,
        format!("{base}/api/v1/surplus"),
        surplus(12.5, "bakery"),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{bread}");
    let bread = bread["id"].as_str().unwrap().to_string();
    for (path, body) in [
        (
            format!("/offers/{bread}/accept"),
            json!({"recipient_id": recipient}),
        ),
        (
            format!("/surplus/{bread}/pickup"),
            json!({"recipient_id": recipient}),
        ),
        (
            format!("/surplus/{bread}/deliver"),
            json!({"recipient_id": recipient, "delivered_kg": 12.4}),
        ),
    ] {
        let (s, v) = post(&admin, format!("{base}/api/v1{path}"), body)
            .await
            .unwrap();
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (s, frozen) = post(
        &admin,
        format!("{base}/api/v1/surplus"),
        surplus(3.0, "frozen"),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{frozen}");
    assert_eq!(
        frozen["status"], "dead_lettered",
        "nobody takes frozen food: {frozen}"
    );
    common::wait_caught_up(&admin, &base, "the delivery").await;

    let code = {
        let (hub_base, certs) = (hub_base.clone(), certs.path().to_path_buf());
        tokio::task::spawn_blocking(move || login_code(&hub_base, &certs))
            .await
            .unwrap()
    };
    let Some(b) = Browser::start("dashboard", "en").await else {
        return;
    };
    b.goto(&format!("{hub_base}/dashboard")).await;
    b.until_js(
        "the sign-in form",
        "return !document.getElementById('sign-in').hidden;",
    )
    .await;
    b.type_into("#sign-in-secret", "7KQ2-MXW9-PA3D").await;
    b.click("#sign-in-button").await;
    b.until_text("#sign-in-error", "unknown, used or expired")
        .await;
    b.screenshot("en-sign-in").await;
    accessible(
        &b,
        "sign-in with an error",
        &["#sign-in-secret", "#sign-in-button", "#lang-id"],
    )
    .await;
    // Signing in by keyboard alone: Tab to the field, type, Enter.
    b.js(
        "document.getElementById('sign-in-secret').value = '';",
        vec![],
    )
    .await;
    b.tab_to("#sign-in-secret", 10).await;
    b.type_keys(&code.to_lowercase()).await;
    b.press_enter().await;
    b.until_text("#who", "siti@example.org").await;

    // The figures: 12.4 kg today, 27 meals at 450 g, 31 kg CO2e at 2.5.
    assert_eq!(b.until_text("#today-kg", "12.4").await, "12.4");
    assert_eq!(b.text("#week-kg").await.as_deref(), Some("12.4"));
    assert_eq!(b.text("#all-kg").await.as_deref(), Some("12.4"));
    assert_eq!(b.text("#today-meals").await.as_deref(), Some("27"));
    assert_eq!(b.text("#today-co2e").await.as_deref(), Some("31"));
    // The chart's last bar is today's 12.4 kg.
    let last_bar = b
        .until_js(
            "the chart's bars",
            "var bars = document.querySelectorAll('#chart rect.bar');
             return bars.length === 30 ? bars[29].textContent : null;",
        )
        .await;
    assert!(last_bar.as_str().unwrap().contains("12.4 kg"), "{last_bar}");
    // The fleet table: the edge, healthy, with its 12.4 kg today.
    let row = format!("#fleet-rows tr[data-edge='{EDGE}']");
    let text = b.until_text(&row, "Healthy").await;
    assert!(text.contains("12.4"), "{text}");
    // The trouble list: the frozen food, dead-lettered.
    let trouble = b.until_text("#trouble-surplus", "dead-lettered").await;
    assert!(
        trouble.contains("3 kg Frozen food") && trouble.contains(EDGE),
        "{trouble}"
    );
    // The map: the edge's leased cells, the delivery's one darkest.
    let cells = b
        .until_js(
            "the map's cells",
            "var c = document.querySelectorAll('#map polygon.cell.leased');
             return c.length > 0 ? c.length : null;",
        )
        .await;
    let darkest = b
        .js(
            "return document.querySelectorAll('#map polygon[fill=\"#1b5e20\"]').length;",
            vec![],
        )
        .await;
    assert_eq!(
        darkest,
        json!(1),
        "one cell had food delivered today ({cells} cells)"
    );
    b.screenshot("en-fleet").await;
    accessible(&b, "the fleet in English", &["#lang-id", "#sign-out"]).await;

    // Bahasa Indonesia (by keyboard: Tab to it, Space): labels change,
    // numbers take the Indonesian format, and the choice survives a reload
    // (the session too: the cookie).
    b.tab_to("#lang-id", 10).await;
    b.press_space().await;
    b.until_text("#impact-title", "Makanan yang diantar").await;
    assert_eq!(b.text("#today-kg").await.as_deref(), Some("12,4"));
    b.until_text(&row, "Sehat").await;
    b.until_text("#trouble-surplus", "Makanan beku").await;
    b.screenshot("id-fleet").await;
    accessible(
        &b,
        "the fleet in Bahasa Indonesia",
        &["#lang-en", "#sign-out"],
    )
    .await;
    b.goto(&format!("{hub_base}/dashboard")).await;
    b.until_text("#who", "Masuk sebagai siti@example.org").await;
    b.until_text("#today-kg", "12,4").await;

    // The edge stops: after stale_after_secs unheard it is stale.
    if let Some(mut e) = edge.take() {
        e.proc.terminate();
    }
    let stale = b.until_text(&format!("{row}.stale"), "Basi").await;
    assert!(stale.contains(EDGE), "{stale}");
    b.screenshot("id-stale").await;
    accessible(&b, "a stale edge", &["#lang-en"]).await;
    b.click("#lang-en").await;
    b.until_text(&format!("{row}.stale"), "Stale").await;
    b.screenshot("en-stale").await;

    // The page polls with the ETags it was given: unchanged answers were
    // 304s (the hub's own request counter says so).
    let metrics = reqwest::get(format!("{hub_base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let not_modified = metrics
        .lines()
        .any(|l| l.contains("route=\"/api/v1/fleet/trouble\"") && l.contains("status=\"304\""));
    assert!(
        not_modified,
        "no 304 for the trouble list among:\n{metrics}"
    );

    // Sign out: the sign-in form again, and the session is gone at the hub.
    b.click("#sign-out").await;
    b.until_js(
        "the sign-in form",
        "return !document.getElementById('sign-in').hidden;",
    )
    .await;
    // The cookie is gone from the browser: the API answers 401.
    let status = b
        .js(
            "var x = new XMLHttpRequest(); x.open('GET', '/api/v1/fleet/edges', false); x.send(); return x.status;",
            vec![],
        )
        .await;
    assert_eq!(status, json!(401), "signed out");
    let c = pg::connect(&db.url).await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM dashboard_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the session ended at the hub");
    b.close().await;
    hub.shutdown().await;
}
