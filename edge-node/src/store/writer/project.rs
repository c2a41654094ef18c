//! Events to rows: every event the engine emits becomes one outbox row (the
//! next dense `seq`, the envelope the hub will get) and the domain rows it
//! changes — offers, registries, contacts, erasures — in the group's
//! transaction. The per-event SQL lives here and nowhere else.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use sync_protocol::wire::encode_envelope;
use sync_protocol::{
    ClaimVia, Envelope, Event, RecipientId, SealedContact, Subject, SurplusId, Timestamp,
    TraceContext,
};

use super::{StoreError, Writer};
use crate::store::rows::{insert_provider, insert_recipient, upsert_surplus};
use crate::store::stats::WriterStats;

impl Writer {
    /// Writes what the engine changed: an outbox row per event, the rows each
    /// event projects to, and the final row of each touched surplus.
    pub(super) fn write_output(
        &mut self,
        now: Timestamp,
        trace: Option<TraceContext>,
    ) -> Result<(), StoreError> {
        let out = self.engine.drain();
        let cells: HashMap<SurplusId, u64> = out
            .surplus
            .iter()
            .map(|s| (s.posted.id, s.posted.cell))
            .collect();
        for event in out.events {
            let cell = self.cell_of(&event, &cells);
            self.append(now, trace, cell, event)?;
        }
        for s in &out.surplus {
            upsert_surplus(&self.conn, s)?;
            self.group.views.push(s.snapshot());
        }
        self.group.alerts.extend(out.alerts);
        WriterStats::add(
            &self.stats.match_scan_limit_hits,
            u64::from(out.scan_limit_hits),
        );
        Ok(())
    }

    /// Appends one event to the outbox (next `seq`) and projects it.
    pub(super) fn append(
        &mut self,
        now: Timestamp,
        trace: Option<TraceContext>,
        cell: u64,
        event: Event,
    ) -> Result<(), StoreError> {
        let env = Envelope {
            edge_id: self.cfg.edge_id.clone(),
            seq: self.next_seq,
            lease_epoch: self.lease_epoch,
            at: now,
            trace_context: trace,
            event,
        };
        let subject = env.event.subject();
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (seq, cell, envelope, subject, committed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                env.seq as i64,
                cell as i64,
                encode_envelope(&env),
                subject.as_ref().map(|s| s.id_bytes().as_slice()),
                now.unix_ms()
            ])?;
        let day = now.local_day(self.cfg.engine.utc_offset_minutes);
        project(&self.conn, now, day, cell, &env.event)?;
        self.group.observe(&env.event);
        self.next_seq += 1;
        WriterStats::add(&self.stats.events, 1);
        Ok(())
    }

    /// The S2 cell an event concerns, shipped with it to the hub.
    fn cell_of(&self, event: &Event, surplus_cells: &HashMap<SurplusId, u64>) -> u64 {
        match event {
            Event::ProviderRegistered(p) => crate::cells::cell_at(self.cfg.cell_level, &p.location),
            Event::RecipientRegistered(r) => {
                self.engine.recipients().get(&r.id).map_or(0, |e| e.cell)
            }
            other => other
                .surplus_id()
                .and_then(|id| {
                    surplus_cells
                        .get(&id)
                        .copied()
                        .or_else(|| self.engine.surplus(&id).map(|s| s.posted.cell))
                })
                .unwrap_or(0),
        }
    }
}

/// The domain rows an event changes besides the surplus row itself. `day`
/// is the city's day at `now` (capacity is reserved per day); `cell` the
/// event's cell.
fn project(
    conn: &Connection,
    now: Timestamp,
    day: i64,
    cell: u64,
    event: &Event,
) -> Result<(), StoreError> {
    match event {
        Event::ProviderRegistered(p) => insert_provider(conn, p, now)?,
        Event::RecipientRegistered(r) => insert_recipient(conn, r, cell, now)?,
        Event::OfferMade {
            surplus_id,
            recipient_id,
            ack_deadline,
            attempt,
            fallback,
            ..
        } => {
            conn.prepare_cached(
                "INSERT INTO offers (surplus_id, recipient_id, attempt, made_at, ack_deadline,
                    reserved_day, fallback, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
            )?
            .execute(params![
                surplus_id.as_bytes(),
                recipient_id.as_bytes(),
                attempt,
                now.unix_ms(),
                ack_deadline.unix_ms(),
                day,
                fallback
            ])?;
        }
        Event::OfferDeclined {
            surplus_id,
            recipient_id,
            ..
        } => set_outcome(conn, now, surplus_id, recipient_id, "declined")?,
        Event::OfferTimedOut {
            surplus_id,
            recipient_id,
            ..
        } => set_outcome(conn, now, surplus_id, recipient_id, "timed_out")?,
        Event::Claimed {
            surplus_id,
            recipient_id,
            via,
            ..
        } => match via {
            ClaimVia::OfferAccepted => {
                set_outcome(conn, now, surplus_id, recipient_id, "accepted")?
            }
            ClaimVia::Direct => close_pending(conn, now, surplus_id, "superseded")?,
        },
        Event::Expired { surplus_id, .. } => close_pending(conn, now, surplus_id, "expired")?,
        Event::ContactResealed { subject, contact } => reseal(conn, subject, contact)?,
        Event::SubjectErased { subject } => erase(conn, now, subject)?,
        Event::SurplusPosted(_)
        | Event::PickedUp { .. }
        | Event::Delivered { .. }
        | Event::DeadLettered { .. }
        | Event::Audited(_) => {}
    }
    Ok(())
}

/// The table a subject's row lives in.
pub(super) fn table_of(s: &Subject) -> &'static str {
    match s {
        Subject::Provider(_) => "providers",
        Subject::Recipient(_) => "recipients",
    }
}

/// One offer's outcome.
fn set_outcome(
    conn: &Connection,
    now: Timestamp,
    s: &SurplusId,
    r: &RecipientId,
    outcome: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE offers SET outcome = ?3, decided_at = ?4 WHERE surplus_id = ?1 AND recipient_id = ?2",
    )?
    .execute(params![s.as_bytes(), r.as_bytes(), outcome, now.unix_ms()])?;
    Ok(())
}

/// The outcome of every offer of a surplus still pending.
fn close_pending(
    conn: &Connection,
    now: Timestamp,
    s: &SurplusId,
    outcome: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE offers SET outcome = ?2, decided_at = ?3 WHERE surplus_id = ?1 AND outcome = 'pending'",
    )?
    .execute(params![s.as_bytes(), outcome, now.unix_ms()])?;
    Ok(())
}

/// A contact sealed again under the active key: its row and every outbox
/// envelope that carried it.
fn reseal(conn: &Connection, subject: &Subject, contact: &SealedContact) -> Result<(), StoreError> {
    let table = table_of(subject);
    conn.prepare_cached(&format!(
        "UPDATE {table} SET contact_sealed = ?2 WHERE id = ?1 AND erased_at IS NULL"
    ))?
    .execute(params![subject.id_bytes(), contact.as_bytes()])?;
    crate::store::retention::reseal_outbox(conn, subject, contact)?;
    Ok(())
}

/// GDPR erasure: the subject's row loses name and contact (a provider's
/// surplus their descriptions), and the outbox envelopes are redacted.
fn erase(conn: &Connection, now: Timestamp, subject: &Subject) -> Result<(), StoreError> {
    let table = table_of(subject);
    let extra = match subject {
        Subject::Provider(_) => ", address = ''",
        Subject::Recipient(_) => ", food_types = 0, is_fallback = 0",
    };
    conn.prepare_cached(&format!(
        "UPDATE {table} SET name = ?2, contact_sealed = x'', erased_at = ?3{extra}
         WHERE id = ?1"
    ))?
    .execute(params![
        subject.id_bytes(),
        sync_protocol::ERASED_NAME,
        now.unix_ms()
    ])?;
    if let Subject::Provider(p) = subject {
        // Descriptions are the provider's free text.
        conn.prepare_cached("UPDATE surplus SET description = '' WHERE provider_id = ?1")?
            .execute([p.as_bytes()])?;
    }
    crate::store::retention::redact_outbox(conn, subject)?;
    Ok(())
}
