//! The fleet API's figures on a real PostgreSQL: events applied as edges
//! send them, daily totals as retention leaves them, then the queries at a
//! fixed "now" (exact values), and the HTTP routes a dashboard polls
//! (tokens, ETags, bad parameters, the OpenAPI document).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use cloud_hub::config::{DashboardConfig, TlsFiles};
use cloud_hub::db::{apply::apply_batch, fleet, leases};
use cloud_hub::http::fleet::{fleet_edge, impact_report, trouble_report};
use cloud_hub::http::odt;
use cloud_hub::region::region_of;
use common::{T0, cell, delivered_story, log_of, offer, posted, rid, setup, sid};
use sync_protocol::{DeadLetterReason, Duration, EdgeId, Event, Mass};
use testkit::pg;

const JAKARTA: (f64, f64) = (-6.2, 106.8);
const BERLIN: (f64, f64) = (52.5, 13.4);

/// Surplus `n` posted in `x`, `grams`, expiring `expires_in` after T0.
fn posted_expiring(n: u8, x: u64, grams: u64, expires_in: Duration) -> Event {
    let Event::SurplusPosted(mut p) = posted(n, x) else {
        unreachable!("posted makes a posting")
    };
    p.quantity = Mass::from_grams(grams);
    p.expires_at = T0 + expires_in;
    Event::SurplusPosted(p)
}

/// Jakarta's edge: 4.5 kg delivered on T0's day, one surplus expiring in
/// 40 minutes, one dead-lettered, one offered to the fallback, three offers
/// timed out (two by recipient 7, one by 8). Berlin's: 0.9 kg delivered.
async fn a_day_of_two_edges() -> (pg::TestDb, tokio_postgres::Client, i64, i64) {
    let jkt = EdgeId::new("jkt-1").unwrap();
    let x = cell(JAKARTA.0, JAKARTA.1);
    let (tdb, mut c, home) = setup(&[&jkt], x).await;
    let mut log = log_of(&jkt);
    delivered_story(&mut log, x, 1, 4_500);
    log.push(x, posted_expiring(2, x, 1_000, Duration::from_mins(40)));
    log.push(x, posted_expiring(3, x, 2_000, Duration::from_mins(300)));
    log.push(
        x,
        Event::DeadLettered {
            surplus_id: sid(3),
            reason: DeadLetterReason::OffersExhausted,
            dlq_attempts: 0,
            retry_at: None,
            version: 2,
        },
    );
    log.push(x, posted_expiring(4, x, 1_000, Duration::from_mins(300)));
    let Event::OfferMade {
        surplus_id,
        recipient_id,
        ack_deadline,
        attempt,
        version,
        ..
    } = offer(4, 9, 2)
    else {
        unreachable!("offer makes an offer")
    };
    log.push(
        x,
        Event::OfferMade {
            surplus_id,
            recipient_id,
            ack_deadline,
            attempt,
            fallback: true,
            version,
        },
    );
    for (n, r) in [(5u8, 7u8), (6, 7), (7, 8)] {
        log.push(x, posted_expiring(n, x, 1_000, Duration::from_mins(300)));
        log.push(x, offer(n, r, 2));
        log.push(
            x,
            Event::OfferTimedOut {
                surplus_id: sid(n),
                recipient_id: rid(r),
                version: 3,
            },
        );
    }
    apply_batch(&mut c, &jkt, home, &log.batch()).await.unwrap();

    let ber = EdgeId::new("ber-1").unwrap();
    let y = cell(BERLIN.0, BERLIN.1);
    let berlin = cloud_hub::db::queries::register(&c, &ber, &[y])
        .await
        .unwrap()
        .home_region;
    let mut log = log_of(&ber);
    delivered_story(&mut log, y, 20, 900);
    // Posted where Berlin's cell is (the story posts in Jakarta).
    let (_, Event::SurplusPosted(here)) = common::posted_at(20, BERLIN.0, BERLIN.1) else {
        unreachable!("posted_at makes a posting")
    };
    let Event::SurplusPosted(p) = &mut log.pending[0].1.event else {
        unreachable!("the story starts with its posting")
    };
    p.location = here.location;
    p.quantity = Mass::from_grams(900);
    apply_batch(&mut c, &ber, berlin, &log.batch())
        .await
        .unwrap();
    (tdb, c, home, berlin)
}

fn today() -> time::Date {
    odt(T0).date()
}

#[tokio::test]
async fn impact_per_edge_region_and_period_adds_live_surplus_and_folded_days() {
    let (_tdb, c, home, berlin) = a_day_of_two_edges().await;
    // What retention folded away: 1 kg three days ago, 2 kg a month ago.
    for (days_ago, grams) in [(3, 1_000i64), (30, 2_000)] {
        let day = today() - time::Duration::days(days_ago);
        c.execute(
            "INSERT INTO impact_daily (geo_region_id, day, edge_id, delivered_n, delivered_g)
             VALUES ($1, $2, 'jkt-1', 1, $3)",
            &[&home, &day, &grams],
        )
        .await
        .unwrap();
    }
    let rows = fleet::delivered_by_edge(&c, today(), None, 100)
        .await
        .unwrap();
    let got: Vec<(String, i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.edge_id.clone(), r.today_g, r.week_g, r.all_time_g))
        .collect();
    let mut want = vec![
        ("jkt-1".to_string(), 4_500, 5_500, 7_500),
        ("ber-1".into(), 900, 900, 900),
    ];
    want.sort_by_key(|w| rows.iter().position(|r| r.edge_id == w.0));
    assert_eq!(got, want);

    let report = impact_report(today(), &rows, &DashboardConfig::default());
    assert_eq!(report.total.today.delivered_kg, 5.4);
    assert_eq!(report.total.today.meals, 12, "5,400 g at 450 g a meal");
    assert_eq!(report.total.all_time.delivered_kg, 8.4);
    assert!(
        (report.total.all_time.co2e_kg - 21.0).abs() < 1e-9,
        "2.5 kg CO2e per kg"
    );
    assert_eq!(report.regions.len(), 2, "two regions");

    let only = fleet::delivered_by_edge(&c, today(), Some(berlin), 100)
        .await
        .unwrap();
    assert_eq!(
        only.iter().map(|r| r.edge_id.as_str()).collect::<Vec<_>>(),
        ["ber-1"]
    );
    assert_eq!(region_of(cell(BERLIN.0, BERLIN.1)), berlin);

    let days = fleet::daily(&c, today(), 7, Some(home)).await.unwrap();
    assert_eq!(days.len(), 7, "every day present");
    assert_eq!(days[6].day, today());
    assert_eq!(days[6].delivered_g, 4_500);
    assert_eq!(days[6].posted_g, 4_500 + 1_000 + 2_000 + 1_000 + 3 * 1_000);
    assert_eq!(days[3].delivered_g, 1_000, "the folded day three days ago");
    assert_eq!(
        days.iter().map(|d| d.delivered_g).sum::<i64>(),
        5_500,
        "the month-old day is outside"
    );
}

#[tokio::test]
async fn the_trouble_list_names_what_is_about_to_be_wasted() {
    let (_tdb, c, _, _) = a_day_of_two_edges().await;
    let now = odt(T0 + Duration::from_mins(10));
    let t = fleet::trouble(&c, now, 50).await.unwrap();
    let surplus: Vec<(uuid::Uuid, &str)> = t
        .surplus
        .iter()
        .map(|s| (s.id, s.status.as_str()))
        .collect();
    assert_eq!(
        surplus,
        [
            (*sid(2).as_uuid(), "available"),
            (*sid(3).as_uuid(), "dead_lettered")
        ],
        "expiring within the hour first, then the dead letter (its expiry is later)"
    );
    let fallback: Vec<uuid::Uuid> = t.fallback.iter().map(|f| f.surplus_id).collect();
    assert_eq!(fallback, [*sid(4).as_uuid()]);
    let unanswered: Vec<(uuid::Uuid, i64)> = t
        .unanswered
        .iter()
        .map(|u| (u.recipient_id, u.timed_out))
        .collect();
    assert_eq!(unanswered, [(*rid(7).as_uuid(), 2), (*rid(8).as_uuid(), 1)]);
    let report = trouble_report(&t);
    assert_eq!(report.surplus[0].quantity_kg, 1.0);

    // Two hours on, the 40-minute surplus is past; a week on, nothing is.
    let later = fleet::trouble(&c, odt(T0 + Duration::from_mins(120)), 50)
        .await
        .unwrap();
    assert_eq!(later.surplus.len(), 1, "{later:?}");
    let week = fleet::trouble(&c, odt(T0 + Duration::from_mins(8 * 24 * 60)), 50)
        .await
        .unwrap();
    assert!(
        week.surplus.is_empty() && week.fallback.is_empty() && week.unanswered.is_empty(),
        "{week:?}"
    );
    let one = fleet::trouble(&c, now, 1).await.unwrap();
    assert_eq!(
        (one.surplus.len(), one.unanswered.len()),
        (1, 1),
        "the limit bounds each list"
    );
}

#[tokio::test]
async fn the_fleet_table_shows_leases_backlog_and_who_went_stale() {
    let (_tdb, mut c, _, _) = a_day_of_two_edges().await;
    let jkt = EdgeId::new("jkt-1").unwrap();
    let x = cell(JAKARTA.0, JAKARTA.1);
    let ttl = Duration::from_secs(300);
    let granted = leases::grant(&mut c, &jkt, &[x], 0, T0, ttl).await.unwrap();
    fleet::record_hello(&c, "jkt-1", 40, 1, odt(T0))
        .await
        .unwrap();
    let now = odt(T0 + Duration::from_mins(1));
    let rows = fleet::fleet_edges(&c, now).await.unwrap();
    let cfg = DashboardConfig::default();
    let edges: Vec<_> = rows.iter().map(|r| fleet_edge(r, now, &cfg)).collect();
    let j = edges
        .iter()
        .find(|e| e.edge_id == "jkt-1")
        .expect("jkt-1 listed");
    assert_eq!(j.cells, [cloud_hub::http::fleet::cell_token(x as i64)]);
    assert_eq!(j.lease_epoch, granted.epoch as i64);
    assert_eq!(j.high_water, 19);
    assert_eq!(j.backlog_at_hello, Some(40 - 19));
    assert_eq!(j.protocol, Some(1));
    assert!(!j.fenced);
    let b = edges
        .iter()
        .find(|e| e.edge_id == "ber-1")
        .expect("ber-1 listed");
    assert!(b.cells.is_empty() && b.backlog_at_hello.is_none());

    // Lease time passes with no renewal and no batch: stale, lease lapsed.
    let later = odt(T0 + Duration::from_mins(60));
    let rows = fleet::fleet_edges(&c, later).await.unwrap();
    let j = rows.iter().find(|r| r.edge_id == "jkt-1").unwrap();
    assert_eq!((j.cells_held, j.cells_lapsed), (0, 1));
    // last_heard is the hub's own clock (now()) for renewals and batches: judge it from there.
    let heard = j.last_heard.expect("heard");
    assert!(
        fleet_edge(j, heard + time::Duration::seconds(179), &cfg)
            .stale
            .eq(&false)
    );
    assert!(fleet_edge(j, heard + time::Duration::seconds(181), &cfg).stale);
}

async fn start_hub(url: &str, dir: &std::path::Path) -> cloud_hub::Hub {
    cloud_hub::certs::init(dir, &[], false).unwrap();
    cloud_hub::Hub::start(cloud_hub::HubConfig {
        database_url: url.to_string(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: dir.join(cloud_hub::certs::CA_CERT),
            cert: dir.join(cloud_hub::certs::HUB_CERT),
            key: dir.join(cloud_hub::certs::HUB_KEY),
        },
        ..cloud_hub::HubConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_dashboard_polls_the_fleet_routes_with_etags() {
    let (tdb, _c, _, _) = a_day_of_two_edges().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&tdb.url, dir.path()).await;
    let now = sync_link::Clock::now(&sync_link::SystemClock);
    let auth = cloud_hub::config::HubAuthConfig::default();
    let viewer = cloud_hub::auth::issue(
        &auth,
        &dir.path().join("tokens"),
        cloud_hub::auth::HubRole::Viewer,
        "siti",
        600,
        now,
    )
    .unwrap();
    let base = format!("http://{}", hub.http_addr());
    let http = reqwest::Client::new();
    for path in [
        "/api/v1/fleet/impact",
        "/api/v1/fleet/impact/daily?days=3",
        "/api/v1/fleet/edges",
        "/api/v1/fleet/trouble?limit=5",
    ] {
        let url = format!("{base}{path}");
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        let r = http.get(&url).bearer_auth(&viewer).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let etag = r.headers()["etag"].clone();
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body.is_object(), "{path}: {body}");
        let again = http
            .get(&url)
            .bearer_auth(&viewer)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}: nothing changed");
    }
    let r = http
        .get(format!("{base}/api/v1/fleet/impact"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    let impact: serde_json::Value = r.json().await.unwrap();
    assert_eq!(impact["total"]["all_time"]["delivered_kg"], 5.4, "{impact}");
    assert_eq!(impact["total"]["all_time"]["meals"], 12, "{impact}");
    assert_eq!(impact["co2e_kg_per_kg"], 2.5);

    let cases = [
        ("/api/v1/fleet/impact/daily?days=0", 422, "invalid_days"),
        ("/api/v1/fleet/impact/daily?days=367", 422, "invalid_days"),
        ("/api/v1/fleet/impact/daily?days=soon", 400, "invalid_query"),
        ("/api/v1/fleet/impact?region=zz", 422, "invalid_region"),
        ("/api/v1/fleet/impact?everything=1", 400, "invalid_query"),
        ("/api/v1/fleet/trouble?limit=1001", 422, "invalid_limit"),
    ];
    for (path, status, code) in cases {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }

    let doc: serde_json::Value = reqwest::get(format!("{base}/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/fleet/impact",
        "/api/v1/fleet/impact/daily",
        "/api/v1/fleet/edges",
        "/api/v1/fleet/trouble",
        "/api/v1/login-codes",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the OpenAPI document"
        );
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn the_map_has_each_leased_cell_and_each_cell_food_reached_today() {
    let (_tdb, mut c, _, _) = a_day_of_two_edges().await;
    let jkt = EdgeId::new("jkt-1").unwrap();
    let x = cell(JAKARTA.0, JAKARTA.1);
    let granted = leases::grant(&mut c, &jkt, &[x], 0, T0, Duration::from_secs(300))
        .await
        .unwrap();
    let rows = fleet::cell_map(&c, today()).await.unwrap();
    let now = odt(T0 + Duration::from_mins(1));
    let map: Vec<_> = rows
        .iter()
        .map(|r| cloud_hub::http::fleet::map_cell(r, now))
        .collect();
    let jakarta = map
        .iter()
        .find(|m| m.cell == cloud_hub::http::fleet::cell_token(x as i64))
        .expect("the leased cell");
    assert_eq!(jakarta.edge_id.as_deref(), Some("jkt-1"));
    assert_eq!(jakarta.lease_epoch, Some(granted.epoch as i64));
    assert!(jakarta.leased);
    assert_eq!(jakarta.delivered_today_kg, 4.5);
    assert_eq!(jakarta.outline.len(), 4);
    // Berlin's cell holds no lease here, but food was delivered in it.
    let berlin = map
        .iter()
        .find(|m| m.cell == cloud_hub::http::fleet::cell_token(cell(BERLIN.0, BERLIN.1) as i64))
        .expect("the cell food reached");
    assert_eq!((berlin.edge_id.as_deref(), berlin.leased), (None, false));
    assert_eq!(berlin.delivered_today_kg, 0.9);
    assert_eq!(map.len(), 2);
    // Tomorrow nothing was delivered yet; the lease has lapsed by then.
    let later = odt(T0 + Duration::from_mins(24 * 60));
    let tomorrow = fleet::cell_map(&c, later.date()).await.unwrap();
    assert_eq!(tomorrow.len(), 1, "only the leased cell");
    assert_eq!(tomorrow[0].delivered_today_g, 0);
    assert!(!cloud_hub::http::fleet::map_cell(&tomorrow[0], later).leased);
}
