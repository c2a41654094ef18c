//! Cell leases in PostgreSQL, decided by the I/O-free rules in
//! `sync_protocol::lease`: granted at Hello, renewed while the edge is heard.

use std::collections::HashMap;

use sync_protocol::lease::{Decision, Lease, decide};
use sync_protocol::{Duration, EdgeId, Timestamp};
use time::OffsetDateTime;
use tokio_postgres::Client;

use super::DbError;
use super::apply::odt;

/// The outcome of a Hello's lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The epoch the edge stamps on new events.
    pub epoch: u64,
    /// Cells another edge holds.
    pub conflicts: Vec<u64>,
}

fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_unix_ms((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Grants, renews or refuses each cell the edge asks for, in one transaction.
pub async fn grant(
    client: &mut Client,
    edge: &EdgeId,
    cells: &[u64],
    edge_epoch: u64,
    now: Timestamp,
    ttl: Duration,
) -> Result<Granted, DbError> {
    let tx = client.transaction().await?;
    let wanted: Vec<i64> = cells.iter().map(|c| *c as i64).collect();
    let current = locked_leases(&tx, &wanted).await?;
    let new_epoch: i64 = tx
        .query_one("SELECT nextval('lease_epoch_seq')", &[])
        .await?
        .get(0);
    let expires = now + ttl;
    let mut epoch = edge_epoch;
    let mut conflicts = Vec::new();
    for &cell in cells {
        match decide(
            current.get(&cell),
            cell,
            edge,
            now,
            expires,
            new_epoch as u64,
        ) {
            Decision::Grant(l) => {
                tx.execute(
                    "INSERT INTO cell_leases (cell, holder, epoch, fence_below, expires_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (cell) DO UPDATE SET holder = $2, epoch = $3, fence_below = $4, expires_at = $5",
                    &[&(cell as i64), &edge.as_str(), &(l.epoch as i64), &(l.fence_below as i64), &odt(l.expires_at)],
                )
                .await?;
                epoch = epoch.max(l.epoch);
            }
            Decision::Renew => {
                tx.execute(
                    "UPDATE cell_leases SET expires_at = $2 WHERE cell = $1",
                    &[&(cell as i64), &odt(expires)],
                )
                .await?;
                if let Some(l) = current.get(&cell) {
                    epoch = epoch.max(l.epoch);
                }
            }
            Decision::Conflict { holder } => {
                tracing::warn!(%edge, %holder, cell, "cell lease held by another edge");
                conflicts.push(cell);
            }
        }
    }
    tx.execute(
        "UPDATE edges SET lease_epoch = $2, last_seen = now() WHERE edge_id = $1",
        &[&edge.as_str(), &(epoch as i64)],
    )
    .await?;
    tx.commit().await?;
    Ok(Granted { epoch, conflicts })
}

/// Reads and locks (FOR UPDATE) the current leases of `wanted` cells.
async fn locked_leases(
    tx: &tokio_postgres::Transaction<'_>,
    wanted: &[i64],
) -> Result<HashMap<u64, Lease>, DbError> {
    let rows = tx
        .query(
            "SELECT cell, holder, epoch, fence_below, expires_at FROM cell_leases
             WHERE cell = ANY($1) ORDER BY cell FOR UPDATE",
            &[&wanted],
        )
        .await?;
    let current = leases_by_cell(&rows);
    Ok(current)
}

/// Leases from rows of `cell, holder, epoch, fence_below, expires_at`, by
/// cell; a row whose holder is not a valid edge id is skipped.
pub(crate) fn leases_by_cell(rows: &[tokio_postgres::Row]) -> HashMap<u64, Lease> {
    rows.iter()
        .filter_map(|row| {
            let holder = EdgeId::new(row.get::<_, &str>(1)).ok()?;
            let cell = row.get::<_, i64>(0) as u64;
            Some((
                cell,
                Lease {
                    cell,
                    holder,
                    epoch: row.get::<_, i64>(2) as u64,
                    fence_below: row.get::<_, i64>(3) as u64,
                    expires_at: ts(row.get(4)),
                },
            ))
        })
        .collect()
}

/// Extends every lease `edge` holds to `expires_at` (while its session
/// lives, at the cadence `sync_protocol::lease::Renewal` decides).
pub async fn renew(client: &Client, edge: &EdgeId, expires_at: Timestamp) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE cell_leases SET expires_at = $2 WHERE holder = $1",
            &[&edge.as_str(), &odt(expires_at)],
        )
        .await?;
    Ok(())
}
