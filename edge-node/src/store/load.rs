//! Rebuilding in-memory state from SQLite at start (and after a failed
//! commit): recipients into the R-tree with their acceptance record and the
//! day's reservations, providers, every unfinished surplus with its offers,
//! and the next outbox sequence number.

use std::collections::HashMap;

use rusqlite::Connection;
use sync_protocol::{Mass, ProviderId, RecipientId, SurplusId, SurplusStatus, Timestamp};

use super::rows::{RECIPIENT_COLUMNS, SURPLUS_COLUMNS, recipient_from_row, surplus_from_row};
use super::{StoreError, u64_from_sql};
use edge_core::engine::{Engine, EngineConfig};
use edge_core::index::{AcceptanceStats, RecipientEntry, Reservation};
use edge_core::lifecycle::{LiveSurplus, PendingOffer};

/// Everything the writer needs to resume.
#[derive(Debug)]
pub struct Loaded {
    pub engine: Engine,
    /// The `seq` the next outbox event gets.
    pub next_seq: u64,
}

pub fn load(conn: &Connection, cfg: EngineConfig, now: Timestamp) -> Result<Loaded, StoreError> {
    let today = now.local_day(cfg.utc_offset_minutes);
    let mut live = load_live_surplus(conn)?;
    attach_offers(conn, &mut live)?;
    let recipients = load_recipients(conn, today, &live)?;
    let providers = conn
        .prepare("SELECT id FROM providers WHERE erased_at IS NULL")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .map(|b| {
            let b = b?;
            let arr: [u8; 16] = b
                .try_into()
                .map_err(|_| StoreError::Corrupt("provider id".into()))?;
            Ok(ProviderId::from_bytes(arr))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // Retention may have deleted every acknowledged row: the sequence goes on
    // from the newest of what is left and what the hub acknowledged.
    let max_seq: i64 = conn.query_row(
        "SELECT max(COALESCE((SELECT MAX(seq) FROM outbox), 0),
                    COALESCE((SELECT published_seq FROM sync_state WHERE id = 1), 0))",
        [],
        |r| r.get(0),
    )?;
    let engine = Engine::restore(cfg, recipients, providers, live.into_values().collect());
    if let Err(e) = engine.check_invariants() {
        return Err(StoreError::Corrupt(e));
    }
    Ok(Loaded {
        engine,
        next_seq: u64_from_sql(max_seq) + 1,
    })
}

/// Surplus that live in memory: not finished, not picked up (a picked-up
/// surplus is brought back only when its delivery is reported).
fn load_live_surplus(conn: &Connection) -> Result<HashMap<SurplusId, LiveSurplus>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SURPLUS_COLUMNS} FROM surplus WHERE status NOT IN ('delivered', 'expired', 'picked_up')"
    ))?;
    let rows = stmt.query_map([], surplus_from_row)?;
    let mut live = HashMap::new();
    for s in rows {
        let s = s?;
        live.insert(s.posted.id, s);
    }
    Ok(live)
}

/// Surplus finished or picked up since `since`, oldest first (at most
/// `limit`), to refill the listing's recent window after a restart.
pub fn recent_finished(
    conn: &Connection,
    since: Timestamp,
    limit: usize,
) -> Result<Vec<LiveSurplus>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SURPLUS_COLUMNS} FROM surplus
         WHERE status IN ('delivered', 'expired', 'picked_up') AND updated_at >= ?1
         ORDER BY updated_at DESC LIMIT ?2"
    ))?;
    let mut out = stmt
        .query_map(
            rusqlite::params![since.unix_ms(), limit as i64],
            surplus_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    out.reverse();
    Ok(out)
}

/// One stored surplus with its offers, whatever its status.
pub fn load_one(conn: &Connection, id: &SurplusId) -> Result<Option<LiveSurplus>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SURPLUS_COLUMNS} FROM surplus WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id.as_bytes()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut s = surplus_from_row(row)?;
    let mut stmt = conn.prepare_cached(
        "SELECT recipient_id, made_at, ack_deadline, reserved_day, fallback, outcome
         FROM offers WHERE surplus_id = ?1 ORDER BY attempt",
    )?;
    let mut rows = stmt.query([id.as_bytes()])?;
    while let Some(row) = rows.next()? {
        let rid = RecipientId::from_bytes(blob16(row.get(0)?)?);
        s.offered_to.push(rid);
        if row.get::<_, String>(5)? == "pending" {
            s.offer = Some(PendingOffer {
                recipient_id: rid,
                made_at: Timestamp::from_unix_ms(row.get(1)?),
                ack_deadline: Timestamp::from_unix_ms(row.get(2)?),
                reserved_day: row.get(3)?,
                fallback: row.get(4)?,
            });
        }
    }
    Ok(Some(s))
}

fn attach_offers(
    conn: &Connection,
    live: &mut HashMap<SurplusId, LiveSurplus>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT o.surplus_id, o.recipient_id, o.made_at, o.ack_deadline, o.reserved_day,
                o.fallback, o.outcome
         FROM offers o JOIN surplus s ON s.id = o.surplus_id
         WHERE s.status NOT IN ('delivered', 'expired', 'picked_up')
         ORDER BY o.surplus_id, o.attempt",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let sid = SurplusId::from_bytes(blob16(row.get(0)?)?);
        let rid = RecipientId::from_bytes(blob16(row.get(1)?)?);
        let Some(s) = live.get_mut(&sid) else {
            continue;
        };
        s.offered_to.push(rid);
        let outcome: String = row.get(6)?;
        if outcome == "pending" {
            if s.status != SurplusStatus::Offered {
                return Err(StoreError::Corrupt(format!(
                    "{sid}: pending offer while {}",
                    s.status
                )));
            }
            s.offer = Some(PendingOffer {
                recipient_id: rid,
                made_at: Timestamp::from_unix_ms(row.get(2)?),
                ack_deadline: Timestamp::from_unix_ms(row.get(3)?),
                reserved_day: row.get(4)?,
                fallback: row.get(5)?,
            });
        }
    }
    Ok(())
}

fn load_recipients(
    conn: &Connection,
    today: i64,
    live: &HashMap<SurplusId, LiveSurplus>,
) -> Result<Vec<RecipientEntry>, StoreError> {
    let mut stats: HashMap<RecipientId, AcceptanceStats> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT recipient_id, COUNT(*), SUM(outcome = 'accepted') FROM offers GROUP BY recipient_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id = RecipientId::from_bytes(blob16(row.get(0)?)?);
        stats.insert(
            id,
            AcceptanceStats {
                offers_made: row.get(1)?,
                offers_accepted: row.get(2)?,
            },
        );
    }
    // Today's reservations: pending offers made today, and claims counted
    // against today (delivered ones included, so a finished claim still counts).
    let mut reserved: HashMap<RecipientId, Mass> = HashMap::new();
    for s in live.values() {
        if let Some(o) = s.offer.filter(|o| o.reserved_day == today) {
            let e = reserved.entry(o.recipient_id).or_default();
            *e = e.saturating_add(s.posted.quantity);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT claimed_by, SUM(quantity_g) FROM surplus
         WHERE claimed_day = ?1 AND claimed_by IS NOT NULL GROUP BY claimed_by",
    )?;
    let mut rows = stmt.query([today])?;
    while let Some(row) = rows.next()? {
        let id = RecipientId::from_bytes(blob16(row.get(0)?)?);
        let grams: i64 = row.get(1)?;
        let e = reserved.entry(id).or_default();
        *e = e.saturating_add(Mass::from_grams(u64_from_sql(grams)));
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE erased_at IS NULL"
    ))?;
    let rows = stmt.query_map([], recipient_from_row)?;
    let mut out = Vec::new();
    for r in rows {
        let (recipient, cell) = r?;
        let id = recipient.id;
        out.push(RecipientEntry {
            recipient,
            cell,
            stats: stats.get(&id).copied().unwrap_or_default(),
            reserved: Reservation {
                day: today,
                mass: reserved.get(&id).copied().unwrap_or_default(),
            },
            open_claims: 0, // counted by Engine::restore from the live surplus
        });
    }
    Ok(out)
}

/// The lease epoch last granted by the hub (0 if never).
pub fn lease_epoch(conn: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM edge_meta WHERE key = 'lease_epoch'",
            [],
            |r| r.get(0),
        )
        .ok();
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn blob16(v: Vec<u8>) -> Result<[u8; 16], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt("id is not 16 bytes".into()))
}
