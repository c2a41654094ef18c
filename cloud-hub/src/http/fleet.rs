//! The fleet API under `/api/v1/fleet/` (viewers and admins): impact,
//! its daily series, the fleet table and the trouble list, as JSON with an
//! `ETag` (a poll that sends `If-None-Match` with it gets `304` while
//! nothing changed). Figures come from [`crate::db::fleet`]; kilograms
//! become meals and CO2e by `[dashboard]`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use s2::cellid::CellID;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, HttpState, with_db};
use crate::config::DashboardConfig;
use crate::db::fleet;
use crate::region::REGION_LEVEL;

/// Where the default CO2e factor comes from (`[dashboard] co2e_kg_per_kg`).
pub const CO2E_SOURCE: &str = "FAO (2013), Food Wastage Footprint: Impacts on Natural Resources, \
    Summary Report: 3.3 Gt CO2e for 1.3 Gt of food wasted, about 2.5 kg CO2e per kg";

/// An S2 cell (or region: a level-4 cell) as its token; `none` for 0.
pub fn cell_token(id: i64) -> String {
    if id == 0 {
        "none".into()
    } else {
        CellID(id as u64).to_token()
    }
}

/// Delivered food in the three units the dashboard shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    pub delivered_kg: f64,
    /// Whole meals at `meal_grams` each.
    pub meals: i64,
    pub co2e_kg: f64,
}

impl Figures {
    pub fn of(grams: i64, cfg: &DashboardConfig) -> Figures {
        let kg = grams as f64 / 1_000.0;
        Figures {
            delivered_kg: kg,
            meals: grams.div_euclid(i64::from(cfg.meal_grams.max(1))),
            co2e_kg: kg * cfg.co2e_kg_per_kg,
        }
    }
}

/// Today, the last seven days (today included) and all time; UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Periods {
    pub today: Figures,
    pub week: Figures,
    pub all_time: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RegionImpact {
    /// The region's S2 token (a level-4 cell).
    pub region: String,
    #[serde(flatten)]
    pub periods: Periods,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EdgeImpact {
    pub edge_id: String,
    pub region: String,
    #[serde(flatten)]
    pub periods: Periods,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ImpactReport {
    /// The UTC day "today" is.
    pub day: String,
    pub meal_grams: u32,
    pub co2e_kg_per_kg: f64,
    pub co2e_source: String,
    pub total: Periods,
    pub regions: Vec<RegionImpact>,
    pub edges: Vec<EdgeImpact>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RegionQuery {
    /// Only this region (its S2 token, a level-4 cell): one shard.
    #[param(pattern = "^[0-9ab][0-9a-f][13579bdf]$")]
    pub region: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    /// Days up to and including today (1 to 366; default 30).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
    /// Only this region (its S2 token, a level-4 cell): one shard.
    #[param(pattern = "^[0-9ab][0-9a-f][13579bdf]$")]
    pub region: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TroubleQuery {
    /// Rows per list, at most (1 to 1000; default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text()))
}

/// What a region's token looks like: a level-4 S2 cell is 12 bits — the
/// face (0 to 5) and 4 × 2 position bits — then the marker bit, so its
/// token is three hex digits, the first at most `b`, the last odd.
pub const REGION_TOKEN_PATTERN: &str = "^[0-9ab][0-9a-f][13579bdf]$";

/// A region token → its `geo_region_id`.
pub fn parse_region(token: &str) -> Result<i64, ApiError> {
    let id = CellID::from_token(token);
    if !crate::region::valid_cell(id.0) || id.level() != REGION_LEVEL {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_region",
            "region must be the S2 token of a level-4 cell",
        ));
    }
    Ok(id.0 as i64)
}

fn region_of(q: Option<&str>) -> Result<Option<i64>, ApiError> {
    q.map(parse_region).transpose()
}

/// JSON with a strong `ETag` of its bytes; `304` when the caller has it.
pub fn with_etag<T: Serialize>(headers: &HeaderMap, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let digest = crate::auth::sha256(&bytes);
    let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{tag}\"");
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn now_odt(s: &HttpState) -> OffsetDateTime {
    super::odt(s.clock.now())
}

fn periods(today: i64, week: i64, all: i64, cfg: &DashboardConfig) -> Periods {
    Periods {
        today: Figures::of(today, cfg),
        week: Figures::of(week, cfg),
        all_time: Figures::of(all, cfg),
    }
}

/// Per edge as stored, per region and in total as summed here.
pub fn impact_report(
    day: time::Date,
    rows: &[fleet::EdgeDelivered],
    cfg: &DashboardConfig,
) -> ImpactReport {
    let mut regions: std::collections::BTreeMap<i64, (i64, i64, i64)> = Default::default();
    let mut total = (0i64, 0i64, 0i64);
    for r in rows {
        let e = regions.entry(r.region).or_default();
        for (sum, g) in [
            (&mut e.0, r.today_g),
            (&mut e.1, r.week_g),
            (&mut e.2, r.all_time_g),
        ] {
            *sum = sum.saturating_add(g);
        }
        total = (
            total.0.saturating_add(r.today_g),
            total.1.saturating_add(r.week_g),
            total.2.saturating_add(r.all_time_g),
        );
    }
    ImpactReport {
        day: day.to_string(),
        meal_grams: cfg.meal_grams,
        co2e_kg_per_kg: cfg.co2e_kg_per_kg,
        co2e_source: CO2E_SOURCE.into(),
        total: periods(total.0, total.1, total.2, cfg),
        regions: regions
            .into_iter()
            .map(|(region, (t, w, a))| RegionImpact {
                region: cell_token(region),
                periods: periods(t, w, a, cfg),
            })
            .collect(),
        edges: rows
            .iter()
            .map(|r| EdgeImpact {
                edge_id: r.edge_id.clone(),
                region: cell_token(r.region),
                periods: periods(r.today_g, r.week_g, r.all_time_g, cfg),
            })
            .collect(),
    }
}

/// Impact today, this week and all time: the fleet, each region, each edge.
#[utoipa::path(get, path = "/api/v1/fleet/impact", params(RegionQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ImpactReport), (status = 304, description = "unchanged since the ETag sent"),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody)))]
pub async fn impact(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    q: Result<Query<RegionQuery>, QueryRejection>,
) -> Response {
    let region = match query(q).and_then(|q| region_of(q.region.as_deref())) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let today = now_odt(&s).date();
    let rows = with_db(&s, async |c| {
        fleet::delivered_by_edge(c, today, region, fleet::MAX_ROWS).await
    })
    .await;
    match rows {
        Ok(rows) => with_etag(&headers, &impact_report(today, &rows, &s.dashboard)),
        Err(resp) => resp,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayFigures {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub posted_kg: f64,
    #[serde(flatten)]
    pub delivered: Figures,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DailyReport {
    pub region: Option<String>,
    /// Oldest first, every day present.
    pub days: Vec<DayFigures>,
}

/// Posted and delivered food per UTC day, up to and including today.
#[utoipa::path(get, path = "/api/v1/fleet/impact/daily", params(DailyQuery),
    security(("bearer" = [])),
    responses((status = 200, body = DailyReport), (status = 304, description = "unchanged since the ETag sent"),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody)))]
pub async fn daily(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    q: Result<Query<DailyQuery>, QueryRejection>,
) -> Response {
    let parsed = query(q).and_then(|q| {
        let days = q.days.unwrap_or(30);
        if !(1..=fleet::MAX_DAYS).contains(&days) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_days",
                "days must be 1 to 366",
            ));
        }
        Ok((days, region_of(q.region.as_deref())?))
    });
    let (days, region) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let today = now_odt(&s).date();
    match with_db(&s, async |c| fleet::daily(c, today, days, region).await).await {
        Ok(rows) => {
            let report = DailyReport {
                region: region.map(cell_token),
                days: rows
                    .iter()
                    .map(|d| DayFigures {
                        day: d.day.to_string(),
                        posted_kg: d.posted_g as f64 / 1_000.0,
                        delivered: Figures::of(d.delivered_g, &s.dashboard),
                    })
                    .collect(),
            };
            with_etag(&headers, &report)
        }
        Err(resp) => resp,
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// One edge of the fleet table.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FleetEdge {
    pub edge_id: String,
    /// Its home region (where its log lives), an S2 token.
    pub region: String,
    /// The cells it holds unexpired leases on, as S2 tokens.
    pub cells: Vec<String>,
    /// Cells whose lease it held and let lapse.
    pub cells_lapsed: i64,
    /// The epoch it was last granted (0 before any lease).
    pub lease_epoch: i64,
    /// The last seq the hub applied.
    pub high_water: i64,
    /// When the hub last heard from it (a lease renewal or a batch).
    pub last_heard: Option<String>,
    /// Events committed at the edge and not yet at the hub, as of its last
    /// Hello: a lower bound between Hellos.
    pub backlog_at_hello: Option<i64>,
    /// Seconds between the newest applied event on the edge and its apply
    /// at the hub, at the last batch.
    pub replication_lag_secs: Option<f64>,
    /// The sync protocol version it spoke at its last Hello.
    pub protocol: Option<i32>,
    /// Not heard from for `stale_after_secs`.
    pub stale: bool,
    /// Sent events in the last hour for cells it did not hold (logged, not
    /// projected): another edge has its cells, or its lease lapsed.
    pub fenced: bool,
    pub fenced_events_last_hour: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EdgesReport {
    pub stale_after_secs: u64,
    pub items: Vec<FleetEdge>,
}

pub fn fleet_edge(r: &fleet::EdgeRow, now: OffsetDateTime, cfg: &DashboardConfig) -> FleetEdge {
    let stale_after =
        time::Duration::seconds(i64::try_from(cfg.stale_after_secs).unwrap_or(i64::MAX));
    FleetEdge {
        edge_id: r.edge_id.clone(),
        region: cell_token(r.home_region),
        cells: r.cells.iter().map(|c| cell_token(*c)).collect(),
        cells_lapsed: r.cells_lapsed,
        lease_epoch: r.max_cell_epoch.unwrap_or(0).max(r.lease_epoch),
        high_water: r.high_water,
        last_heard: r.last_heard.map(rfc3339),
        backlog_at_hello: r.hello_committed_seq.map(|c| (c - r.high_water).max(0)),
        replication_lag_secs: r.lag_secs.map(|l| l.max(0.0)),
        protocol: r.protocol,
        stale: r.last_heard.is_none_or(|t| now - t > stale_after),
        fenced: r.fenced_last_hour > 0,
        fenced_events_last_hour: r.fenced_last_hour,
    }
}

/// Every edge: cells and lease epochs, last heard, backlog, lag, version,
/// stale and fenced flags.
#[utoipa::path(get, path = "/api/v1/fleet/edges", security(("bearer" = [])),
    responses((status = 200, body = EdgesReport), (status = 304, description = "unchanged since the ETag sent"),
        (status = 401, body = super::ErrorBody)))]
pub async fn edges(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let now = now_odt(&s);
    match with_db(&s, async |c| fleet::fleet_edges(c, now).await).await {
        Ok(rows) => {
            let report = EdgesReport {
                stale_after_secs: s.dashboard.stale_after_secs,
                items: rows
                    .iter()
                    .map(|r| fleet_edge(r, now, &s.dashboard))
                    .collect(),
            };
            with_etag(&headers, &report)
        }
        Err(resp) => resp,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TroubleItem {
    pub surplus_id: String,
    pub edge_id: String,
    pub region: String,
    pub cell: String,
    /// `dead_lettered`, or `available`/`offered` and expiring within the hour.
    pub status: String,
    pub quantity_kg: f64,
    pub food_type: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FallbackAlert {
    pub surplus_id: String,
    pub recipient_id: String,
    pub edge_id: String,
    pub region: String,
    pub made_at: String,
    /// What became of the offer: pending, accepted, declined, timed_out, …
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UnansweredRecipient {
    pub recipient_id: String,
    /// Empty when erased or not known at the hub.
    pub name: String,
    pub edge_id: Option<String>,
    /// Offers it let time out in the last seven days.
    pub timed_out: i64,
    pub last_timed_out_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TroubleReport {
    /// Dead-lettered surplus and unclaimed surplus expiring within the
    /// hour, soonest expiry first.
    pub surplus: Vec<TroubleItem>,
    /// Offers to fallback recipients in the last day, newest first.
    pub fallback_alerts: Vec<FallbackAlert>,
    /// Recipients with the most timed-out offers in the last week.
    pub unanswered: Vec<UnansweredRecipient>,
}

pub fn trouble_report(t: &fleet::Trouble) -> TroubleReport {
    TroubleReport {
        surplus: t
            .surplus
            .iter()
            .map(|s| TroubleItem {
                surplus_id: s.id.to_string(),
                edge_id: s.edge_id.clone(),
                region: cell_token(s.region),
                cell: cell_token(s.cell),
                status: s.status.clone(),
                quantity_kg: s.quantity_g as f64 / 1_000.0,
                food_type: s.food_type.clone(),
                expires_at: rfc3339(s.expires_at),
            })
            .collect(),
        fallback_alerts: t
            .fallback
            .iter()
            .map(|f| FallbackAlert {
                surplus_id: f.surplus_id.to_string(),
                recipient_id: f.recipient_id.to_string(),
                edge_id: f.edge_id.clone(),
                region: cell_token(f.region),
                made_at: rfc3339(f.made_at),
                outcome: f.outcome.clone(),
            })
            .collect(),
        unanswered: t
            .unanswered
            .iter()
            .map(|u| UnansweredRecipient {
                recipient_id: u.recipient_id.to_string(),
                name: u.name.clone(),
                edge_id: u.edge_id.clone(),
                timed_out: u.timed_out,
                last_timed_out_at: u.last.map(rfc3339),
            })
            .collect(),
    }
}

/// Surplus about to be wasted, fallback alerts, unresponsive recipients.
#[utoipa::path(get, path = "/api/v1/fleet/trouble", params(TroubleQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TroubleReport), (status = 304, description = "unchanged since the ETag sent"),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody)))]
pub async fn trouble(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    q: Result<Query<TroubleQuery>, QueryRejection>,
) -> Response {
    let limit = match query(q).and_then(|q| {
        let limit = q.limit.unwrap_or(50);
        if (1..=fleet::MAX_ROWS).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_limit",
                "limit must be 1 to 1000",
            ))
        }
    }) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let now = now_odt(&s);
    match with_db(&s, async |c| fleet::trouble(c, now, limit).await).await {
        Ok(t) => with_etag(&headers, &trouble_report(&t)),
        Err(resp) => resp,
    }
}

/// One cell on the map: its S2 outline and what happened in it today.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MapCell {
    /// The S2 token.
    pub cell: String,
    /// The edge holding its lease (or last holding it); `null` for a cell
    /// food was delivered in that no lease names.
    pub edge_id: Option<String>,
    pub lease_epoch: Option<i64>,
    /// The lease has not expired.
    pub leased: bool,
    /// Kilograms delivered in it today (UTC).
    pub delivered_today_kg: f64,
    /// The cell's four corners, counter-clockwise, as `[lat, lon]` degrees.
    pub outline: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CellMap {
    pub day: String,
    pub items: Vec<MapCell>,
}

/// The four corners of an S2 cell, `[lat, lon]` in degrees.
pub fn cell_outline(id: i64) -> Vec<[f64; 2]> {
    let cell = s2::cell::Cell::from(CellID(id as u64));
    (0..4)
        .map(|k| {
            let ll = s2::latlng::LatLng::from(cell.vertex(k));
            [ll.lat.deg(), ll.lng.deg()]
        })
        .collect()
}

pub fn map_cell(r: &fleet::CellRow, now: OffsetDateTime) -> MapCell {
    MapCell {
        cell: cell_token(r.cell),
        edge_id: r.holder.clone(),
        lease_epoch: r.epoch,
        leased: r.expires_at.is_some_and(|t| t > now),
        delivered_today_kg: r.delivered_today_g as f64 / 1_000.0,
        outline: cell_outline(r.cell),
    }
}

/// Every leased cell and every cell food was delivered in today, with its
/// S2 outline: what the dashboard's map draws.
#[utoipa::path(get, path = "/api/v1/fleet/cells", security(("bearer" = [])),
    responses((status = 200, body = CellMap), (status = 304, description = "unchanged since the ETag sent"),
        (status = 401, body = super::ErrorBody)))]
pub async fn cells(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let now = now_odt(&s);
    let today = now.date();
    match with_db(&s, async |c| fleet::cell_map(c, today).await).await {
        Ok(rows) => with_etag(
            &headers,
            &CellMap {
                day: today.to_string(),
                items: rows.iter().map(|r| map_cell(r, now)).collect(),
            },
        ),
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kilograms_become_meals_and_co2e_by_the_configuration() {
        let cfg = DashboardConfig::default();
        let f = Figures::of(4_500, &cfg);
        assert_eq!((f.delivered_kg, f.meals, f.co2e_kg), (4.5, 10, 11.25));
        assert_eq!(Figures::of(449, &cfg).meals, 0, "whole meals only");
        let other = DashboardConfig {
            co2e_kg_per_kg: 1.0,
            meal_grams: 500,
            ..cfg
        };
        assert_eq!(Figures::of(4_500, &other).meals, 9);
        assert_eq!(Figures::of(4_500, &other).co2e_kg, 4.5);
    }

    #[test]
    fn an_etag_answers_304_only_to_its_own_tag() {
        let body = serde_json::json!({"a": 1});
        let first = with_etag(&HeaderMap::new(), &body);
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag.clone());
        assert_eq!(with_etag(&h, &body).status(), StatusCode::NOT_MODIFIED);
        let changed = with_etag(&h, &serde_json::json!({"a": 2}));
        assert_eq!(changed.status(), StatusCode::OK);
        assert_ne!(changed.headers()[header::ETAG], tag);
    }

    #[test]
    fn a_cells_outline_is_its_four_corners_around_its_centre() {
        let id = CellID::from(s2::latlng::LatLng::from_degrees(-6.2, 106.8)).parent(9);
        let outline = cell_outline(id.0 as i64);
        assert_eq!(outline.len(), 4);
        let (lat, lon) = (
            outline.iter().map(|p| p[0]).sum::<f64>() / 4.0,
            outline.iter().map(|p| p[1]).sum::<f64>() / 4.0,
        );
        // A level-9 cell is about 18 km across: its corners are within
        // 0.2 degrees of the point, and it contains the point.
        for p in &outline {
            assert!(
                (p[0] + 6.2).abs() < 0.2 && (p[1] - 106.8).abs() < 0.2,
                "{p:?}"
            );
        }
        let centre = CellID::from(s2::latlng::LatLng::from_degrees(lat, lon)).parent(9);
        assert_eq!(centre, id);
    }

    #[test]
    fn every_token_the_documented_pattern_allows_is_a_region_and_no_other() {
        let hex = "0123456789abcdef";
        let mut regions = 0;
        for a in hex.chars() {
            for b in hex.chars() {
                for c in hex.chars() {
                    let token = format!("{a}{b}{c}");
                    let allowed = "0123456789ab".contains(a) && "13579bdf".contains(c);
                    assert_eq!(parse_region(&token).is_ok(), allowed, "{token}");
                    regions += usize::from(allowed);
                }
            }
        }
        assert_eq!(regions, 6 * 256, "six faces of 4^4 cells");
        assert!(REGION_TOKEN_PATTERN.contains("[13579bdf]"));
    }

    #[test]
    fn a_region_is_a_level_4_token() {
        let jakarta = crate::region::region_of(
            CellID::from(s2::latlng::LatLng::from_degrees(-6.2, 106.8))
                .parent(9)
                .0,
        );
        assert_eq!(parse_region(&cell_token(jakarta)), Ok(jakarta));
        for bad in [
            "",
            "zz",
            "1",
            &CellID(jakarta as u64).child_begin().to_token(),
        ] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }
}
