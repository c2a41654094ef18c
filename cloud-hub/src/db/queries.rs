//! Reads (and an edge's first registration): an edge's progress, the
//! recipients of neighbouring cells, and the dashboards' figures.
//!
//! Shard routing under Citus (each statement is a `SQL_*` constant, and
//! `cloud-hub/tests/citus.rs` checks its plan on a real cluster):
//! `progress` reads the `edges` reference table, then one `edge_progress`
//! row by its distribution key (one shard); `register` writes the reference
//! table once per edge, ever; `registry` reads the `recipients` reference
//! table; `edge_status` joins the reference table with `edge_progress`
//! across shards (the fleet table, bounded by the number of edges);
//! `region_impact` names one `geo_region_id` (one shard); `global_impact`
//! aggregates every shard and is meant for dashboards.

use serde::Serialize;
use sync_protocol::session::RegistryEntry;
use sync_protocol::session::feed::{Cursor, ReceivedAt};
use sync_protocol::{EdgeId, FoodTypeSet, GeoPoint, Mass, RecipientId};
use time::OffsetDateTime;
use tokio_postgres::Client;

use super::DbError;
use crate::region::region_of;

/// Where an edge's log lives and how far it has been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The edge's home region: the distribution key of its log and progress.
    pub home_region: i64,
    pub high_water: u64,
}

/// An edge's home region, from the `edges` reference table (read where the
/// coordinator stands).
pub const SQL_HOME_REGION: &str = "SELECT home_region FROM edges WHERE edge_id = $1";

/// An edge's high-water mark, in its home region (one shard).
pub const SQL_PROGRESS: &str =
    "SELECT high_water FROM edge_progress WHERE geo_region_id = $1 AND edge_id = $2";

/// The edge's progress, or `None` for an edge never seen. Two statements,
/// so that the second names its shard: a join from the reference table
/// would ask every shard.
pub async fn progress(client: &Client, edge: &EdgeId) -> Result<Option<Progress>, DbError> {
    let Some(home) = client.query_opt(SQL_HOME_REGION, &[&edge.as_str()]).await? else {
        return Ok(None);
    };
    let home_region: i64 = home.get(0);
    let row = client
        .query_opt(SQL_PROGRESS, &[&home_region, &edge.as_str()])
        .await?;
    Ok(row.map(|r| Progress {
        home_region,
        high_water: r.get::<_, i64>(0).max(0) as u64,
    }))
}

/// The home region an edge serving `cells` gets: that of its lowest valid
/// cell (0 when it names none).
pub fn home_region_for(cells: &[u64]) -> i64 {
    cells
        .iter()
        .copied()
        .filter(|c| region_of(*c) != 0)
        .min()
        .map_or(0, region_of)
}

/// Registers the edge at its first Hello (its home region is fixed from
/// then on); returns its progress.
pub async fn register(client: &Client, edge: &EdgeId, cells: &[u64]) -> Result<Progress, DbError> {
    let home = home_region_for(cells);
    client
        .execute(
            "INSERT INTO edges (edge_id, home_region) VALUES ($1, $2) ON CONFLICT (edge_id) DO NOTHING",
            &[&edge.as_str(), &home],
        )
        .await?;
    client
        .execute(
            "INSERT INTO edge_progress (geo_region_id, edge_id)
             SELECT home_region, edge_id FROM edges WHERE edge_id = $1
             ON CONFLICT (geo_region_id, edge_id) DO NOTHING",
            &[&edge.as_str()],
        )
        .await?;
    progress(client, edge)
        .await?
        .ok_or_else(|| DbError::Integrity(format!("edge {edge} vanished while registering")))
}

/// The registry feed: recipients of other edges in a set of leaf-cell
/// ranges (a reference table: read where the coordinator stands).
pub const SQL_REGISTRY: &str =
    "SELECT r.id, r.edge_id, r.cell, r.name, r.lat, r.lon, r.capacity_g_per_day, r.food_types,
            r.is_fallback, r.received_at, r.erased_at IS NOT NULL
     FROM recipients r
     WHERE r.edge_id <> $3 AND (r.received_at, r.id) > ($4, $5)
       AND EXISTS (SELECT 1 FROM UNNEST($1::bigint[], $2::bigint[]) AS n(lo, hi)
                   WHERE r.leaf_cell BETWEEN n.lo AND n.hi)
     ORDER BY r.received_at, r.id LIMIT $6";

/// Recipients of other edges whose leaf cell lies in one of `cells` (at any
/// S2 level), in the order the hub received them (`received_at`, the hub's
/// clock, then id) after `after`, at most `limit`, each with its key.
/// An erased recipient is sent once more, as a tombstone (`erased`, no
/// name), so the neighbours that imported it forget it.
pub async fn registry(
    client: &Client,
    edge: &EdgeId,
    cells: &[u64],
    after: Cursor,
    limit: usize,
) -> Result<Vec<(RegistryEntry, ReceivedAt)>, DbError> {
    let after_at = to_odt(after.received_at);
    let after_id = *after.id.as_uuid();
    let (lo, hi): (Vec<i64>, Vec<i64>) = cells
        .iter()
        .filter(|c| crate::region::valid_cell(**c))
        .map(|c| s2::cellid::CellID(*c))
        .map(|c| (c.range_min().0 as i64, c.range_max().0 as i64))
        .unzip();
    let rows = client
        .query(
            SQL_REGISTRY,
            &[
                &lo,
                &hi,
                &edge.as_str(),
                &after_at,
                &after_id,
                &(limit as i64),
            ],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (Ok(owner), Ok(location)) = (
            EdgeId::new(row.get::<_, &str>(1)),
            GeoPoint::new(row.get(4), row.get(5)),
        ) else {
            continue;
        };
        let erased: bool = row.get(10);
        let entry = if erased {
            RegistryEntry {
                id: RecipientId::from_uuid(row.get(0)),
                owner,
                cell: row.get::<_, i64>(2) as u64,
                name: String::new(),
                location,
                capacity_per_day: Mass::ZERO,
                accepted_food_types: FoodTypeSet::default(),
                is_fallback: false,
                erased: true,
            }
        } else {
            RegistryEntry {
                id: RecipientId::from_uuid(row.get(0)),
                owner,
                cell: row.get::<_, i64>(2) as u64,
                name: row.get(3),
                location,
                capacity_per_day: Mass::from_grams(row.get::<_, i64>(6).max(0) as u64),
                accepted_food_types: FoodTypeSet::from_bits_truncate(row.get::<_, i16>(7) as u8),
                is_fallback: row.get(8),
                erased: false,
            }
        };
        out.push((entry, received_at(row.get(9))));
    }
    Ok(out)
}

/// A `timestamptz` as the feed's receive time: microseconds, exactly.
fn received_at(t: OffsetDateTime) -> ReceivedAt {
    ReceivedAt::from_unix_us((t.unix_timestamp_nanos() / 1_000) as i64)
}

/// The feed's receive time as a `timestamptz` (the epoch for one out of
/// range, which no stored row has).
fn to_odt(t: ReceivedAt) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.unix_us()) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Every edge with its progress: the fleet table (asks every shard of
/// `edge_progress`; bounded by the number of edges).
pub const SQL_EDGE_STATUS: &str = "SELECT e.edge_id, COALESCE(p.high_water, 0), e.lease_epoch,
            (extract(epoch FROM GREATEST(e.last_seen, p.last_applied)) * 1000)::bigint,
            extract(epoch FROM (now() - p.last_event_at))::float8
     FROM edges e LEFT JOIN edge_progress p
       ON p.geo_region_id = e.home_region AND p.edge_id = e.edge_id
     ORDER BY e.edge_id";

#[derive(Debug, Clone, Serialize)]
pub struct EdgeStatus {
    pub edge_id: String,
    pub high_water: i64,
    pub lease_epoch: i64,
    pub last_seen_unix_ms: i64,
    /// Seconds since the newest applied event happened on the edge (grows
    /// while the edge is idle; replication lag is measured at apply time).
    pub seconds_since_last_event: Option<f64>,
}

pub async fn edge_status(client: &Client) -> Result<Vec<EdgeStatus>, DbError> {
    let rows = client.query(SQL_EDGE_STATUS, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| EdgeStatus {
            edge_id: r.get(0),
            high_water: r.get(1),
            lease_epoch: r.get(2),
            last_seen_unix_ms: r.get(3),
            seconds_since_last_event: r.get(4),
        })
        .collect())
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Impact {
    pub surplus_posted: i64,
    pub surplus_delivered: i64,
    pub delivered_kg: f64,
    pub posted_kg: f64,
}

/// The live surplus's figures plus what retention folded into
/// `impact_daily`, over the rows `filter` keeps.
macro_rules! impact_sql {
    ($filter:literal) => {
        concat!(
            "SELECT (SELECT count(*) FROM surplus WHERE ",
            $filter,
            ")
                    + (SELECT COALESCE(sum(posted_n), 0) FROM impact_daily WHERE ",
            $filter,
            ")::bigint,
                    (SELECT count(*) FILTER (WHERE status = 'delivered') FROM surplus WHERE ",
            $filter,
            ")
                    + (SELECT COALESCE(sum(delivered_n), 0) FROM impact_daily WHERE ",
            $filter,
            ")::bigint,
                    ((SELECT COALESCE(sum(delivered_g), 0) FROM surplus WHERE ",
            $filter,
            ")
                     + (SELECT COALESCE(sum(delivered_g), 0) FROM impact_daily WHERE ",
            $filter,
            "))::float8 / 1000,
                    ((SELECT COALESCE(sum(quantity_g), 0) FROM surplus WHERE ",
            $filter,
            ")
                     + (SELECT COALESCE(sum(posted_g), 0) FROM impact_daily WHERE ",
            $filter,
            "))::float8 / 1000"
        )
    };
}

/// The whole world's impact: aggregates every shard (dashboards only).
pub const SQL_GLOBAL_IMPACT: &str = impact_sql!("true");

/// One region's impact: every part names the region (one shard each).
pub const SQL_REGION_IMPACT: &str = impact_sql!("geo_region_id = $1");

fn impact(r: &tokio_postgres::Row) -> Impact {
    Impact {
        surplus_posted: r.get(0),
        surplus_delivered: r.get(1),
        delivered_kg: r.get(2),
        posted_kg: r.get(3),
    }
}

/// The whole world's impact (a multi-shard aggregate under Citus).
pub async fn global_impact(client: &Client) -> Result<Impact, DbError> {
    Ok(impact(&client.query_one(SQL_GLOBAL_IMPACT, &[]).await?))
}

/// One region's impact (routed to the region's shard under Citus).
pub async fn region_impact(client: &Client, region: i64) -> Result<Impact, DbError> {
    Ok(impact(
        &client.query_one(SQL_REGION_IMPACT, &[&region]).await?,
    ))
}
