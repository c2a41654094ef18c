//! Forgetting, on purpose: the retention job deletes operational data older
//! than the configured window (finished surplus and their offers, used
//! idempotency keys, outbox events the hub acknowledged), folding delivered
//! kilograms into `impact_daily` first so impact totals stay true; and GDPR
//! erasure redacts the outbox envelopes that carried a subject's personal
//! data. The audit log is never touched. Runs inside the writer's
//! transaction, like every write.

use rusqlite::{Connection, params};
use sync_protocol::wire::{decode_envelope, encode_envelope};
use sync_protocol::{Event, SealedContact, Subject, Timestamp};

use super::StoreError;

/// Deletes up to `limit` rows last touched before `cutoff`; returns how many.
pub fn retain(
    conn: &Connection,
    cutoff: Timestamp,
    limit: usize,
    utc_offset_minutes: i32,
) -> Result<usize, StoreError> {
    let limit = limit.max(1) as i64;
    let cutoff = cutoff.unix_ms();
    let mut finished: Vec<(Vec<u8>, String, Option<i64>, i64)> = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, status, delivered_g, updated_at FROM surplus
             WHERE status IN ('delivered', 'expired') AND updated_at < ?1 LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![cutoff, limit])?;
        while let Some(row) = rows.next()? {
            finished.push((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?));
        }
    }
    let mut deleted = 0usize;
    for (id, status, delivered_g, updated_at) in &finished {
        let day = Timestamp::from_unix_ms(*updated_at).local_day(utc_offset_minutes);
        let (d_n, d_g, e_n) = if status == "delivered" {
            (1, delivered_g.unwrap_or(0), 0)
        } else {
            (0, 0, 1)
        };
        conn.prepare_cached(
            "INSERT INTO impact_daily (day, delivered_n, delivered_g, expired_n)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (day) DO UPDATE SET delivered_n = delivered_n + ?2,
                delivered_g = delivered_g + ?3, expired_n = expired_n + ?4",
        )?
        .execute(params![day, d_n, d_g, e_n])?;
        deleted += conn
            .prepare_cached("DELETE FROM offers WHERE surplus_id = ?1")?
            .execute([id])?;
        deleted += conn
            .prepare_cached("DELETE FROM surplus WHERE id = ?1")?
            .execute([id])?;
    }
    deleted += conn
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE (provider_id, key) IN
                (SELECT provider_id, key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff, limit])?;
    deleted += conn
        .prepare_cached(
            "DELETE FROM action_keys WHERE (recipient_id, key) IN
                (SELECT recipient_id, key FROM action_keys WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff, limit])?;
    deleted += conn
        .prepare_cached(
            "DELETE FROM outbox WHERE seq IN
                (SELECT seq FROM outbox
                 WHERE seq <= (SELECT published_seq FROM sync_state WHERE id = 1)
                   AND committed_at < ?1
                 ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![cutoff, limit])?;
    Ok(deleted)
}

/// Rewrites every outbox envelope that carried `subject`'s personal data
/// with the name and contact removed.
pub fn redact_outbox(conn: &Connection, subject: &Subject) -> Result<usize, StoreError> {
    rewrite_outbox(conn, subject, |event| event.redact(subject))
}

/// Key rotation: every outbox envelope that carries `subject`'s sealed
/// contact gets the contact sealed under the new key, so no stored event
/// still needs the old one.
pub fn reseal_outbox(
    conn: &Connection,
    subject: &Subject,
    contact: &SealedContact,
) -> Result<usize, StoreError> {
    rewrite_outbox(conn, subject, |event| event.reseal(subject, contact))
}

/// Rewrites the outbox envelopes of `subject` that `change` changes.
fn rewrite_outbox(
    conn: &Connection,
    subject: &Subject,
    mut change: impl FnMut(&mut Event) -> bool,
) -> Result<usize, StoreError> {
    let mut found: Vec<(i64, Vec<u8>)> = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT seq, envelope FROM outbox WHERE subject = ?1")?;
        let mut rows = stmt.query([subject.id_bytes()])?;
        while let Some(row) = rows.next()? {
            found.push((row.get(0)?, row.get(1)?));
        }
    }
    let mut n = 0;
    for (seq, bytes) in found {
        let mut env = decode_envelope(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("outbox seq {seq}: {e}")))?;
        if !change(&mut env.event) {
            continue;
        }
        conn.prepare_cached("UPDATE outbox SET envelope = ?2 WHERE seq = ?1")?
            .execute(params![seq, encode_envelope(&env)])?;
        n += 1;
    }
    Ok(n)
}
