//! Rows ↔ domain values. Every read validates what it reads: a corrupt row is
//! an error, never a panic.

use rusqlite::{Row, params};
use sync_protocol::{
    FoodType, FoodTypeSet, GeoPoint, Mass, Provider, ProviderId, Recipient, RecipientId,
    SealedContact, SurplusId, SurplusPosted, SurplusStatus, Timestamp,
};

use super::{StoreError, u64_from_sql, u64_to_sql};
use edge_core::lifecycle::LiveSurplus;
use sync_protocol::Surplus;

pub const SURPLUS_COLUMNS: &str = "id, provider_id, lat, lon, cell, quantity_g, food_type, \
    expires_at, description, posted_at, status, version, failed_offers, dlq_attempts, \
    dlq_retry_at, fallback_tried, claimed_by, claimed_at, claimed_day, delivered_g, updated_at";

pub const RECIPIENT_COLUMNS: &str = "id, name, lat, lon, cell, capacity_g_per_day, food_types, \
    is_fallback, contact_sealed";

pub const PROVIDER_COLUMNS: &str = "id, name, lat, lon, contact_sealed";

pub use sync_protocol::ERASED_NAME;

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        Box::new(StoreError::Corrupt(what.to_string())),
    )
}

fn id16(row: &Row<'_>, idx: usize) -> rusqlite::Result<[u8; 16]> {
    let v: Vec<u8> = row.get(idx)?;
    v.try_into().map_err(|_| corrupt("id is not 16 bytes"))
}

fn opt_id16(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<[u8; 16]>> {
    let v: Option<Vec<u8>> = row.get(idx)?;
    v.map(|v| v.try_into().map_err(|_| corrupt("id is not 16 bytes")))
        .transpose()
}

fn point(row: &Row<'_>, lat: usize, lon: usize) -> rusqlite::Result<GeoPoint> {
    GeoPoint::new(row.get(lat)?, row.get(lon)?).map_err(|_| corrupt("coordinates out of range"))
}

fn ts(v: i64) -> Timestamp {
    Timestamp::from_unix_ms(v)
}

fn mass(v: i64) -> rusqlite::Result<Mass> {
    u64::try_from(v)
        .map(Mass::from_grams)
        .map_err(|_| corrupt("negative mass"))
}

/// A surplus row as its live state (offers are filled in by the caller).
pub fn surplus_from_row(row: &Row<'_>) -> rusqlite::Result<LiveSurplus> {
    let food: String = row.get(6)?;
    let status: String = row.get(10)?;
    let posted = SurplusPosted {
        id: SurplusId::from_bytes(id16(row, 0)?),
        provider_id: ProviderId::from_bytes(id16(row, 1)?),
        location: point(row, 2, 3)?,
        cell: u64_from_sql(row.get(4)?),
        quantity: mass(row.get(5)?)?,
        food_type: food.parse::<FoodType>().map_err(|_| corrupt("food type"))?,
        expires_at: ts(row.get(7)?),
        description: row.get(8)?,
    };
    let delivered: Option<i64> = row.get(19)?;
    Ok(LiveSurplus {
        posted,
        posted_at: ts(row.get(9)?),
        status: status
            .parse::<SurplusStatus>()
            .map_err(|_| corrupt("status"))?,
        version: u64_from_sql(row.get(11)?),
        offer: None,
        offered_to: Vec::new(),
        failed_offers: row.get(12)?,
        dlq_attempts: row.get(13)?,
        dlq_retry_at: row.get::<_, Option<i64>>(14)?.map(ts),
        fallback_tried: row.get(15)?,
        claimed_by: opt_id16(row, 16)?.map(RecipientId::from_bytes),
        claimed_at: row.get::<_, Option<i64>>(17)?.map(ts),
        claimed_day: row.get(18)?,
        delivered: delivered.map(mass).transpose()?,
        updated_at: ts(row.get(20)?),
    })
}

pub fn upsert_surplus(conn: &rusqlite::Connection, s: &LiveSurplus) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO surplus (id, provider_id, lat, lon, cell, quantity_g, food_type, expires_at,
            description, posted_at, status, version, failed_offers, dlq_attempts, dlq_retry_at,
            fallback_tried, claimed_by, claimed_at, claimed_day, delivered_g, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21)
         ON CONFLICT (id) DO UPDATE SET status = ?11, version = ?12, failed_offers = ?13,
            dlq_attempts = ?14, dlq_retry_at = ?15, fallback_tried = ?16, claimed_by = ?17,
            claimed_at = ?18, claimed_day = ?19, delivered_g = ?20, updated_at = ?21",
    )?;
    let p = &s.posted;
    stmt.execute(params![
        p.id.as_bytes(),
        p.provider_id.as_bytes(),
        p.location.lat(),
        p.location.lon(),
        u64_to_sql(p.cell),
        u64_to_sql(p.quantity.grams()),
        p.food_type.as_str(),
        p.expires_at.unix_ms(),
        p.description,
        s.posted_at.unix_ms(),
        s.status.as_str(),
        u64_to_sql(s.version),
        s.failed_offers,
        s.dlq_attempts,
        s.dlq_retry_at.map(Timestamp::unix_ms),
        s.fallback_tried,
        s.claimed_by.as_ref().map(|r| r.as_bytes().as_slice()),
        s.claimed_at.map(Timestamp::unix_ms),
        s.claimed_day,
        s.delivered.map(|m| u64_to_sql(m.grams())),
        s.updated_at.unix_ms(),
    ])?;
    Ok(())
}

pub fn recipient_from_row(row: &Row<'_>) -> rusqlite::Result<(Recipient, u64)> {
    let bits: i64 = row.get(6)?;
    let recipient = Recipient {
        id: RecipientId::from_bytes(id16(row, 0)?),
        name: row.get(1)?,
        location: point(row, 2, 3)?,
        capacity_per_day: mass(row.get(5)?)?,
        accepted_food_types: FoodTypeSet::from_bits_truncate(u8::try_from(bits).unwrap_or(0)),
        is_fallback: row.get(7)?,
        contact: SealedContact(row.get(8)?),
    };
    Ok((recipient, u64_from_sql(row.get(4)?)))
}

pub fn insert_recipient(
    conn: &rusqlite::Connection,
    r: &Recipient,
    cell: u64,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO recipients (id, name, lat, lon, cell, capacity_g_per_day, food_types,
            is_fallback, contact_sealed, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    stmt.execute(params![
        r.id.as_bytes(),
        r.name,
        r.location.lat(),
        r.location.lon(),
        u64_to_sql(cell),
        u64_to_sql(r.capacity_per_day.grams()),
        r.accepted_food_types.bits(),
        r.is_fallback,
        r.contact.as_bytes(),
        now.unix_ms(),
    ])?;
    Ok(())
}

/// A neighbour's recipient its owner erased: no name, no contact, never
/// matched again (only rows another edge owns).
pub fn forget_foreign_recipient(
    conn: &rusqlite::Connection,
    id: &sync_protocol::RecipientId,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE recipients SET name = ?2, contact_sealed = x'', erased_at = ?3,
            food_types = 0, is_fallback = 0
         WHERE id = ?1 AND owner_edge IS NOT NULL",
    )?
    .execute(params![id.as_bytes(), ERASED_NAME, now.unix_ms()])?;
    Ok(())
}

/// Inserts or refreshes a recipient owned by another edge.
pub fn upsert_foreign_recipient(
    conn: &rusqlite::Connection,
    r: &Recipient,
    cell: u64,
    owner: &str,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO recipients (id, name, lat, lon, cell, capacity_g_per_day, food_types,
            is_fallback, created_at, owner_edge)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET name = ?2, lat = ?3, lon = ?4, cell = ?5,
            capacity_g_per_day = ?6, food_types = ?7, is_fallback = ?8, owner_edge = ?10
         WHERE owner_edge IS NOT NULL",
    )?
    .execute(params![
        r.id.as_bytes(),
        r.name,
        r.location.lat(),
        r.location.lon(),
        u64_to_sql(cell),
        u64_to_sql(r.capacity_per_day.grams()),
        r.accepted_food_types.bits(),
        r.is_fallback,
        now.unix_ms(),
        owner,
    ])?;
    Ok(())
}

pub fn provider_from_row(row: &Row<'_>) -> rusqlite::Result<Provider> {
    Ok(Provider {
        id: ProviderId::from_bytes(id16(row, 0)?),
        name: row.get(1)?,
        location: point(row, 2, 3)?,
        contact: SealedContact(row.get(4)?),
    })
}

pub fn insert_provider(
    conn: &rusqlite::Connection,
    p: &Provider,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO providers (id, name, lat, lon, contact_sealed, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    stmt.execute(params![
        p.id.as_bytes(),
        p.name,
        p.location.lat(),
        p.location.lon(),
        p.contact.as_bytes(),
        now.unix_ms(),
    ])?;
    Ok(())
}

/// Reads one surplus by id, with its pending offer, as a view.
pub fn read_surplus_view(
    conn: &rusqlite::Connection,
    id: &SurplusId,
) -> Result<Option<Surplus>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SURPLUS_COLUMNS} FROM surplus WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id.as_bytes()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let s = surplus_from_row(row)?;
    let mut view = s.snapshot();
    if s.status == SurplusStatus::Offered {
        let mut stmt = conn.prepare_cached(
            "SELECT recipient_id, ack_deadline, fallback FROM offers
             WHERE surplus_id = ?1 AND outcome = 'pending'",
        )?;
        let mut rows = stmt.query([id.as_bytes()])?;
        if let Some(row) = rows.next()? {
            view.offer = Some(sync_protocol::Offer {
                recipient_id: RecipientId::from_bytes(id16(row, 0)?),
                expires_at: ts(row.get(1)?),
                fallback: row.get(2)?,
            });
        }
    }
    Ok(Some(view))
}
