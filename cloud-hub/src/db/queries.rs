//! Reads: an edge's high-water mark, the recipients of neighbouring cells,
//! and the dashboards' figures.
//!
//! Shard routing under Citus: `high_water` and `edge_status` read the
//! `edges` reference table (local on every node); `registry` reads the
//! `recipients` reference table; `region_impact` filters on
//! `geo_region_id` (one shard); `global_impact` aggregates across all
//! shards of `surplus` and is meant for dashboards, not hot paths.

use serde::Serialize;
use sync_protocol::session::RegistryEntry;
use sync_protocol::{EdgeId, FoodTypeSet, GeoPoint, Mass, RecipientId};
use time::OffsetDateTime;
use tokio_postgres::Client;

use super::DbError;

/// Registers the edge if new; returns its high-water mark.
pub async fn high_water(client: &Client, edge: &EdgeId) -> Result<u64, DbError> {
    client
        .execute(
            "INSERT INTO edges (edge_id) VALUES ($1) ON CONFLICT (edge_id) DO NOTHING",
            &[&edge.as_str()],
        )
        .await?;
    let hw: i64 = client
        .query_one(
            "SELECT high_water FROM edges WHERE edge_id = $1",
            &[&edge.as_str()],
        )
        .await?
        .get(0);
    Ok(hw as u64)
}

/// Recipients in `cells` registered by other edges after `since`, oldest
/// first, with the registration time of the newest one returned.
pub async fn registry(
    client: &Client,
    edge: &EdgeId,
    cells: &[u64],
    since: Option<OffsetDateTime>,
    limit: usize,
) -> Result<(Vec<RegistryEntry>, Option<OffsetDateTime>), DbError> {
    let cells: Vec<i64> = cells.iter().map(|c| *c as i64).collect();
    let since = since.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let rows = client
        .query(
            "SELECT id, edge_id, cell, name, lat, lon, capacity_g_per_day, food_types, is_fallback, created_at
             FROM recipients WHERE cell = ANY($1) AND edge_id <> $2 AND created_at > $3
             ORDER BY created_at LIMIT $4",
            &[&cells, &edge.as_str(), &since, &(limit as i64)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut newest = None;
    for row in rows {
        newest = Some(row.get::<_, OffsetDateTime>(9));
        let (Ok(owner), Ok(location)) = (
            EdgeId::new(row.get::<_, &str>(1)),
            GeoPoint::new(row.get(4), row.get(5)),
        ) else {
            continue;
        };
        out.push(RegistryEntry {
            id: RecipientId::from_uuid(row.get(0)),
            owner,
            cell: row.get::<_, i64>(2) as u64,
            name: row.get(3),
            location,
            capacity_per_day: Mass::from_grams(row.get::<_, i64>(6).max(0) as u64),
            accepted_food_types: FoodTypeSet::from_bits_truncate(row.get::<_, i16>(7) as u8),
            is_fallback: row.get(8),
        });
    }
    Ok((out, newest))
}

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
    let rows = client
        .query(
            "SELECT edge_id, high_water, lease_epoch,
                    (extract(epoch FROM last_seen) * 1000)::bigint,
                    extract(epoch FROM (now() - last_event_at))::float8
             FROM edges ORDER BY edge_id",
            &[],
        )
        .await?;
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

/// The whole world's impact (a multi-shard aggregate under Citus).
pub async fn global_impact(client: &Client) -> Result<Impact, DbError> {
    let r = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'delivered'),
                    COALESCE(sum(delivered_g), 0)::float8 / 1000, COALESCE(sum(quantity_g), 0)::float8 / 1000
             FROM surplus",
            &[],
        )
        .await?;
    Ok(Impact {
        surplus_posted: r.get(0),
        surplus_delivered: r.get(1),
        delivered_kg: r.get(2),
        posted_kg: r.get(3),
    })
}
