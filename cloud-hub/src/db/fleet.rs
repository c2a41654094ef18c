//! The dashboard's reads: impact per region and per edge (today, this
//! week, all time), a daily series, the fleet table and the trouble list.
//! Days are UTC days, like `impact_daily`'s.
//!
//! Shard routing under Citus — each statement is a `SQL_*` constant and
//! says where it goes (`cloud-hub/tests/citus.rs` checks the plans):
//! the `REGION_` forms name one `geo_region_id` in every part (one shard);
//! the fleet-wide forms fan out to every shard, each one bounded — by a
//! time window (the series: at most [`MAX_DAYS`] days; the trouble list:
//! the next hour, the last day or week), by `LIMIT` (at most
//! [`MAX_ROWS`] rows), or by the number of edges (impact per edge, the
//! fleet table). Shards aggregate their own rows; only the grouped rows
//! travel to the coordinator.

use serde::Serialize;
use time::{Date, OffsetDateTime};
use tokio_postgres::Client;

use super::DbError;

/// The longest daily series.
pub const MAX_DAYS: i64 = 366;
/// The most rows a list (edges' impact, trouble) returns.
pub const MAX_ROWS: i64 = 1_000;

/// Delivered grams per (region, edge): on `$1` (today), in the seven days
/// to `$1`, and ever; from live surplus (by the day it was delivered) and
/// the daily totals retention folded away. `$2`: the row limit.
macro_rules! delivered_by_edge {
    ($filter:literal) => {
        concat!(
            "WITH d AS (
                SELECT geo_region_id, edge_id, (updated_at AT TIME ZONE 'UTC')::date AS day,
                       delivered_g AS g
                FROM surplus WHERE status = 'delivered' AND delivered_g IS NOT NULL AND ",
            $filter,
            "
                UNION ALL
                SELECT geo_region_id, edge_id, day, delivered_g FROM impact_daily
                WHERE delivered_g > 0 AND ",
            $filter,
            ")
             SELECT geo_region_id, edge_id,
                    COALESCE(sum(g) FILTER (WHERE day = $1), 0)::bigint,
                    COALESCE(sum(g) FILTER (WHERE day > $1 - 7 AND day <= $1), 0)::bigint,
                    COALESCE(sum(g), 0)::bigint
             FROM d GROUP BY geo_region_id, edge_id
             ORDER BY geo_region_id, edge_id LIMIT $2"
        )
    };
}

/// Every region's edges: fans out to every shard, one row per edge back.
pub const SQL_IMPACT_BY_EDGE: &str = delivered_by_edge!("true");
/// One region's edges (`$3`): one shard.
pub const SQL_REGION_IMPACT_BY_EDGE: &str = delivered_by_edge!("geo_region_id = $3");

/// Posted and delivered grams per UTC day from `$2` (a date; `$1` the same
/// instant) to before `$3`.
macro_rules! daily {
    ($filter:literal) => {
        concat!(
            "WITH d AS (
                SELECT (posted_at AT TIME ZONE 'UTC')::date AS day, quantity_g AS posted_g,
                       0::bigint AS delivered_g
                FROM surplus WHERE posted_at >= $1 AND ",
            $filter,
            "
                UNION ALL
                SELECT (updated_at AT TIME ZONE 'UTC')::date, 0, delivered_g
                FROM surplus WHERE status = 'delivered' AND delivered_g IS NOT NULL
                  AND updated_at >= $1 AND ",
            $filter,
            "
                UNION ALL
                SELECT day, posted_g, delivered_g FROM impact_daily WHERE day >= $2 AND ",
            $filter,
            ")
             SELECT day, COALESCE(sum(posted_g), 0)::bigint, COALESCE(sum(delivered_g), 0)::bigint
             FROM d WHERE day >= $2 AND day < $3 GROUP BY day ORDER BY day"
        )
    };
}

/// The fleet's series: fans out, time-windowed (at most [`MAX_DAYS`] rows).
pub const SQL_DAILY: &str = daily!("true");
/// One region's series (`$4`): one shard.
pub const SQL_REGION_DAILY: &str = daily!("geo_region_id = $4");

/// Delivered grams of one edge in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeDelivered {
    pub region: i64,
    pub edge_id: String,
    pub today_g: i64,
    pub week_g: i64,
    pub all_time_g: i64,
}

/// Delivered grams per edge (of one region, or all), at most `limit` rows.
pub async fn delivered_by_edge(
    client: &Client,
    today: Date,
    region: Option<i64>,
    limit: i64,
) -> Result<Vec<EdgeDelivered>, DbError> {
    let limit = limit.clamp(1, MAX_ROWS);
    let rows = match region {
        Some(r) => {
            client
                .query(SQL_REGION_IMPACT_BY_EDGE, &[&today, &limit, &r])
                .await?
        }
        None => client.query(SQL_IMPACT_BY_EDGE, &[&today, &limit]).await?,
    };
    Ok(rows
        .iter()
        .map(|r| EdgeDelivered {
            region: r.get(0),
            edge_id: r.get(1),
            today_g: r.get(2),
            week_g: r.get(3),
            all_time_g: r.get(4),
        })
        .collect())
}

/// One UTC day of the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub day: Date,
    pub posted_g: i64,
    pub delivered_g: i64,
}

/// What [`daily`] asks [`SQL_DAILY`] for, for `days` (already clamped) up
/// to and including `today`: the first day's midnight (UTC), the first
/// day, and the day after today.
pub fn daily_window(today: Date, days: i64) -> (OffsetDateTime, Date, Date) {
    let first = today - time::Duration::days(days - 1);
    (
        first.midnight().assume_utc(),
        first,
        today + time::Duration::days(1),
    )
}

/// The `days` days up to and including `today`, every day present (zeros
/// where nothing happened).
pub async fn daily(
    client: &Client,
    today: Date,
    days: i64,
    region: Option<i64>,
) -> Result<Vec<Day>, DbError> {
    let days = days.clamp(1, MAX_DAYS);
    let (from, first, end) = daily_window(today, days);
    let rows = match region {
        Some(r) => {
            client
                .query(SQL_REGION_DAILY, &[&from, &first, &end, &r])
                .await?
        }
        None => client.query(SQL_DAILY, &[&from, &first, &end]).await?,
    };
    let mut out: Vec<Day> = (0..days)
        .map(|i| Day {
            day: first + time::Duration::days(i),
            posted_g: 0,
            delivered_g: 0,
        })
        .collect();
    for r in rows {
        let day: Date = r.get(0);
        let i = (day - first).whole_days();
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            slot.posted_g = r.get(1);
            slot.delivered_g = r.get(2);
        }
    }
    Ok(out)
}

/// The fleet table: every edge, its progress in its home region, what it
/// said at its last Hello, its leases (the reference table) — fans out to
/// every shard of `edge_progress`, one row per edge (bounded by the fleet).
pub const SQL_FLEET_EDGES: &str = "SELECT e.edge_id, e.home_region, COALESCE(p.high_water, 0),
            e.lease_epoch, GREATEST(e.last_seen, p.last_applied), p.last_applied,
            extract(epoch FROM (p.last_applied - p.last_event_at))::float8,
            e.hello_committed_seq, e.protocol,
            (SELECT count(*) FROM cell_leases l WHERE l.holder = e.edge_id AND l.expires_at > $1),
            (SELECT count(*) FROM cell_leases l WHERE l.holder = e.edge_id AND l.expires_at <= $1),
            (SELECT max(l.epoch) FROM cell_leases l WHERE l.holder = e.edge_id),
            (SELECT COALESCE(array_agg(l.cell ORDER BY l.cell), '{}') FROM cell_leases l
              WHERE l.holder = e.edge_id AND l.expires_at > $1)
     FROM edges e LEFT JOIN edge_progress p
       ON p.geo_region_id = e.home_region AND p.edge_id = e.edge_id
     ORDER BY e.edge_id LIMIT $2";

/// Events logged but not projected in the last hour (`$1` = an hour ago),
/// by edge: fans out, time-windowed (the month partitions it touches),
/// one row per edge.
pub const SQL_FENCED_RECENTLY: &str = "SELECT edge_id, count(*) FROM event_log
     WHERE fenced AND received_at > $1 GROUP BY edge_id ORDER BY edge_id LIMIT $2";

/// One row of the fleet table, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRow {
    pub edge_id: String,
    pub home_region: i64,
    pub high_water: i64,
    pub lease_epoch: i64,
    /// The latest of its lease renewal and its last applied batch.
    pub last_heard: Option<OffsetDateTime>,
    pub last_applied: Option<OffsetDateTime>,
    /// Seconds between the newest applied event happening on the edge and
    /// the hub applying it, at the last batch.
    pub lag_secs: Option<f64>,
    pub hello_committed_seq: Option<i64>,
    pub protocol: Option<i32>,
    pub cells_held: i64,
    pub cells_lapsed: i64,
    pub max_cell_epoch: Option<i64>,
    /// The cells it holds an unexpired lease on (at most
    /// `MAX_HELLO_CELLS` per edge).
    pub cells: Vec<i64>,
    /// Events fenced in the last hour.
    pub fenced_last_hour: i64,
}

/// How far back the fleet table counts fenced events.
pub const FENCED_WINDOW: time::Duration = time::Duration::hours(1);

pub async fn fleet_edges(client: &Client, now: OffsetDateTime) -> Result<Vec<EdgeRow>, DbError> {
    let rows = client.query(SQL_FLEET_EDGES, &[&now, &MAX_ROWS]).await?;
    let hour_ago = now - FENCED_WINDOW;
    let fenced: std::collections::HashMap<String, i64> = client
        .query(SQL_FENCED_RECENTLY, &[&hour_ago, &MAX_ROWS])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(rows
        .iter()
        .map(|r| {
            let edge_id: String = r.get(0);
            EdgeRow {
                fenced_last_hour: fenced.get(&edge_id).copied().unwrap_or(0),
                edge_id,
                home_region: r.get(1),
                high_water: r.get(2),
                lease_epoch: r.get(3),
                last_heard: r.get(4),
                last_applied: r.get(5),
                lag_secs: r.get(6),
                hello_committed_seq: r.get(7),
                protocol: r.get(8),
                cells_held: r.get(9),
                cells_lapsed: r.get(10),
                max_cell_epoch: r.get(11),
                cells: r.get(12),
            }
        })
        .collect())
}

/// Surplus in trouble: dead-lettered (not yet expired), or nobody's yet and
/// expiring within the hour (`$1` now, `$2` an hour on), soonest first.
/// Fans out, bounded by the window and `LIMIT $3`.
pub const SQL_TROUBLE_SURPLUS: &str = "SELECT geo_region_id, id, edge_id, status, quantity_g,
            food_type, expires_at, cell
     FROM surplus
     WHERE (status = 'dead_lettered' AND expires_at > $1)
        OR (status IN ('available', 'offered') AND expires_at > $1 AND expires_at <= $2)
     ORDER BY expires_at, id LIMIT $3";

/// Offers made to fallback recipients since `$1` (the last day), newest
/// first: the fallback alerts. Fans out, time-windowed, `LIMIT $2`.
pub const SQL_FALLBACK_ALERTS: &str = "SELECT m.geo_region_id, m.surplus_id, m.recipient_id,
            m.edge_id, m.made_at, m.outcome
     FROM matching_history m
     WHERE m.fallback AND m.made_at > $1
     ORDER BY m.made_at DESC, m.surplus_id LIMIT $2";

/// Recipients with the most offers left unanswered (timed out) since `$1`
/// (the last week), with their name from the registry (a reference table,
/// joined on every shard). Fans out, time-windowed, `LIMIT $2`.
pub const SQL_UNANSWERED: &str = "SELECT m.recipient_id, count(*), max(m.decided_at)
     FROM matching_history m
     WHERE m.outcome = 'timed_out' AND m.decided_at > $1
     GROUP BY m.recipient_id ORDER BY count(*) DESC, m.recipient_id LIMIT $2";
/// Their names and edges (the reference table, where the coordinator stands).
pub const SQL_RECIPIENT_NAMES: &str = "SELECT id, name, edge_id, erased_at IS NOT NULL
     FROM recipients WHERE id = ANY($1)";

#[derive(Debug, Clone, PartialEq)]
pub struct TroubleSurplus {
    pub region: i64,
    pub id: uuid::Uuid,
    pub edge_id: String,
    pub status: String,
    pub quantity_g: i64,
    pub food_type: String,
    pub expires_at: OffsetDateTime,
    pub cell: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FallbackOffer {
    pub region: i64,
    pub surplus_id: uuid::Uuid,
    pub recipient_id: uuid::Uuid,
    pub edge_id: String,
    pub made_at: OffsetDateTime,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unanswered {
    pub recipient_id: uuid::Uuid,
    /// Empty when erased or never registered at the hub.
    pub name: String,
    pub edge_id: Option<String>,
    pub timed_out: i64,
    pub last: Option<OffsetDateTime>,
}

/// The trouble list's three parts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trouble {
    pub surplus: Vec<TroubleSurplus>,
    pub fallback: Vec<FallbackOffer>,
    pub unanswered: Vec<Unanswered>,
}

/// The trouble list's windows: surplus expiring within [`EXPIRING_WITHIN`]
/// of now, fallback offers of the last [`ALERTS_WINDOW`], offers left
/// unanswered in the last [`UNANSWERED_WINDOW`].
pub const EXPIRING_WITHIN: time::Duration = time::Duration::hours(1);
pub const ALERTS_WINDOW: time::Duration = time::Duration::days(1);
pub const UNANSWERED_WINDOW: time::Duration = time::Duration::days(7);

pub async fn trouble(client: &Client, now: OffsetDateTime, limit: i64) -> Result<Trouble, DbError> {
    let limit = limit.clamp(1, MAX_ROWS);
    let hour = now + EXPIRING_WITHIN;
    let surplus = client
        .query(SQL_TROUBLE_SURPLUS, &[&now, &hour, &limit])
        .await?
        .iter()
        .map(|r| TroubleSurplus {
            region: r.get(0),
            id: r.get(1),
            edge_id: r.get(2),
            status: r.get(3),
            quantity_g: r.get(4),
            food_type: r.get(5),
            expires_at: r.get(6),
            cell: r.get(7),
        })
        .collect();
    let day_ago = now - ALERTS_WINDOW;
    let fallback = client
        .query(SQL_FALLBACK_ALERTS, &[&day_ago, &limit])
        .await?
        .iter()
        .map(|r| FallbackOffer {
            region: r.get(0),
            surplus_id: r.get(1),
            recipient_id: r.get(2),
            edge_id: r.get(3),
            made_at: r.get(4),
            outcome: r.get(5),
        })
        .collect();
    let unanswered = unanswered(client, now - UNANSWERED_WINDOW, limit).await?;
    Ok(Trouble {
        surplus,
        fallback,
        unanswered,
    })
}

async fn unanswered(
    client: &Client,
    since: OffsetDateTime,
    limit: i64,
) -> Result<Vec<Unanswered>, DbError> {
    let counts = client.query(SQL_UNANSWERED, &[&since, &limit]).await?;
    let ids: Vec<uuid::Uuid> = counts.iter().map(|r| r.get(0)).collect();
    let names: std::collections::HashMap<uuid::Uuid, (String, String)> = client
        .query(SQL_RECIPIENT_NAMES, &[&ids])
        .await?
        .iter()
        .map(|r| {
            let erased: bool = r.get(3);
            let name = if erased { String::new() } else { r.get(1) };
            (r.get(0), (name, r.get(2)))
        })
        .collect();
    Ok(counts
        .iter()
        .map(|r| {
            let id: uuid::Uuid = r.get(0);
            let known = names.get(&id);
            Unanswered {
                recipient_id: id,
                name: known.map(|k| k.0.clone()).unwrap_or_default(),
                edge_id: known.map(|k| k.1.clone()),
                timed_out: r.get(1),
                last: r.get(2),
            }
        })
        .collect())
}

/// What an edge said at its Hello (the `edges` reference table, once per
/// Hello).
pub const SQL_RECORD_HELLO: &str =
    "UPDATE edges SET hello_committed_seq = $2, protocol = $3, hello_at = $4 WHERE edge_id = $1";

pub async fn record_hello(
    client: &Client,
    edge: &str,
    committed_seq: u64,
    protocol: u16,
    at: OffsetDateTime,
) -> Result<(), DbError> {
    let seq = i64::try_from(committed_seq).unwrap_or(i64::MAX);
    client
        .execute(SQL_RECORD_HELLO, &[&edge, &seq, &i32::from(protocol), &at])
        .await?;
    Ok(())
}

/// The map: every leased cell (a reference table, read on the coordinator)
/// with the grams delivered in it since `$1` (the start of today, UTC).
/// The delivered part fans out to every shard, time-windowed to one day,
/// each shard grouping its own rows by cell; at most `$2` cells.
pub const SQL_CELL_MAP: &str = "WITH d AS (
        SELECT cell, sum(delivered_g)::bigint AS g FROM surplus
        WHERE status = 'delivered' AND delivered_g IS NOT NULL AND updated_at >= $1
        GROUP BY cell
    )
    SELECT l.cell, l.holder, l.epoch, l.expires_at, COALESCE(d.g, 0)::bigint
    FROM cell_leases l LEFT JOIN d ON d.cell = l.cell
    UNION ALL
    SELECT d.cell, NULL, NULL, NULL, d.g FROM d
    WHERE NOT EXISTS (SELECT 1 FROM cell_leases l WHERE l.cell = d.cell)
    ORDER BY 1 LIMIT $2";

/// One cell on the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellRow {
    pub cell: i64,
    /// The edge holding (or last holding) its lease; `None` for a cell
    /// food was delivered in that no lease names.
    pub holder: Option<String>,
    pub epoch: Option<i64>,
    pub expires_at: Option<OffsetDateTime>,
    pub delivered_today_g: i64,
}

/// The cells of the map, at most [`MAX_ROWS`].
pub async fn cell_map(client: &Client, today: Date) -> Result<Vec<CellRow>, DbError> {
    let start = today.midnight().assume_utc();
    let rows = client.query(SQL_CELL_MAP, &[&start, &MAX_ROWS]).await?;
    Ok(rows
        .iter()
        .map(|r| CellRow {
            cell: r.get(0),
            holder: r.get(1),
            epoch: r.get(2),
            expires_at: r.get(3),
            delivered_today_g: r.get(4),
        })
        .collect())
}
