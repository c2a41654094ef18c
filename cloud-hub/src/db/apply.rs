//! Applying one batch of an edge's events, in one PostgreSQL transaction:
//! the `(edge_id, seq)` rows of the event log, their effects on the global
//! views, and the edge's new high-water mark commit together (the dedupe
//! state lives with the output). Rows are written with multi-row `UNNEST`
//! statements, a handful per batch, not one per event.
//!
//! Personal data: contacts arrive sealed by the edge and are stored as the
//! bytes it sent (the hub has no key). A reseal replaces them; an erasure
//! anonymises the subject's row and redacts the hub's stored copies of the
//! subject's events in the edge's log, leaving surplus, offers and delivered
//! kilograms as they are. Audit records go to the append-only `audit_log`.

use std::borrow::Cow;
use std::collections::HashMap;

use sync_protocol::lease::{Lease, is_fenced};
use sync_protocol::session::hub::Apply;
use sync_protocol::{
    AuditRecord, ClaimVia, EdgeId, Envelope, Event, RecipientId, SealedContact, Subject, SurplusId,
    SurplusStatus, Timestamp,
};
use time::OffsetDateTime;
use tokio_postgres::Client;
use uuid::Uuid;

use super::{DbError, partitions};
use crate::region::{located, region_of};

/// The leaf (level-30) cell of a point, as stored.
fn leaf_cell(at: &sync_protocol::GeoPoint) -> i64 {
    s2::cellid::CellID::from(s2::latlng::LatLng::from_degrees(at.lat(), at.lon())).0 as i64
}

pub fn odt(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.unix_ms()) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What a batch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub events: usize,
    pub fenced: usize,
    /// The newest event's `at`.
    pub newest: Option<Timestamp>,
    /// Every event's `at`, for per-event replication lag.
    pub ats: Vec<Timestamp>,
    /// Grams delivered in the events projected.
    pub delivered_g: u64,
}

#[derive(Default)]
struct LogRows {
    seq: Vec<i64>,
    cell: Vec<i64>,
    kind: Vec<&'static str>,
    at: Vec<OffsetDateTime>,
    epoch: Vec<i64>,
    trace: Vec<Option<Vec<u8>>>,
    fenced: Vec<bool>,
    envelope: Vec<Vec<u8>>,
    /// The data subject whose personal data the event carries.
    subject: Vec<Option<Uuid>>,
}

/// What an erased subject's name becomes, in its row and in the hub's
/// stored copies of its events.
pub use sync_protocol::ERASED_NAME;

/// A change to a subject's personal data, applied in event order after the
/// batch's registrations (rare: written row by row).
enum SubjectOp {
    Reseal {
        subject: Subject,
        contact: SealedContact,
    },
    Erase {
        subject: Subject,
        at: Timestamp,
    },
}

struct NewSurplus {
    region: i64,
    row: sync_protocol::SurplusPosted,
    posted_at: Timestamp,
    state: SurplusState,
}

#[derive(Clone, Copy)]
struct SurplusState {
    region: i64,
    status: SurplusStatus,
    version: u64,
    claimed_by: Option<RecipientId>,
    delivered_g: Option<u64>,
    updated_at: Timestamp,
}

struct OfferRow {
    region: i64,
    attempt: u32,
    made_at: Timestamp,
    ack_deadline: Timestamp,
    fallback: bool,
    outcome: &'static str,
    decided_at: Option<Timestamp>,
}

/// Every effect of a batch, folded in event order so each row is written once.
#[derive(Default)]
struct Fold {
    log: LogRows,
    /// (S2 cell, provider, registered at)
    providers: Vec<(i64, sync_protocol::Provider, Timestamp)>,
    /// (S2 cell, recipient, registered at)
    recipients: Vec<(i64, sync_protocol::Recipient, Timestamp)>,
    new_surplus: HashMap<SurplusId, NewSurplus>,
    updates: HashMap<SurplusId, SurplusState>,
    new_offers: HashMap<(SurplusId, RecipientId), OfferRow>,
    /// Outcomes of offers made in earlier batches.
    outcomes: Vec<(i64, SurplusId, RecipientId, &'static str, Timestamp)>,
    /// "Close whatever offer is pending" for offers made in earlier batches.
    close_pending: Vec<(i64, SurplusId, &'static str, Timestamp)>,
    pending_in_batch: HashMap<SurplusId, RecipientId>,
    subject_ops: Vec<SubjectOp>,
    /// (seq, at, record)
    audits: Vec<(i64, Timestamp, AuditRecord)>,
}

impl Fold {
    fn set_state(
        &mut self,
        id: SurplusId,
        region: i64,
        at: Timestamp,
        f: impl FnOnce(&mut SurplusState),
    ) {
        if let Some(n) = self.new_surplus.get_mut(&id) {
            f(&mut n.state);
            n.state.updated_at = at;
            return;
        }
        let s = self.updates.entry(id).or_insert(SurplusState {
            region,
            status: SurplusStatus::Available,
            version: 0,
            claimed_by: None,
            delivered_g: None,
            updated_at: at,
        });
        f(s);
        s.updated_at = at;
    }

    fn status(
        &mut self,
        id: SurplusId,
        region: i64,
        at: Timestamp,
        status: SurplusStatus,
        version: u64,
    ) {
        self.set_state(id, region, at, |s| {
            s.status = status;
            s.version = version;
        });
    }

    fn outcome(
        &mut self,
        region: i64,
        s: SurplusId,
        r: RecipientId,
        outcome: &'static str,
        at: Timestamp,
    ) {
        if let Some(o) = self.new_offers.get_mut(&(s, r)) {
            o.outcome = outcome;
            o.decided_at = Some(at);
        } else {
            self.outcomes.push((region, s, r, outcome, at));
        }
        if self.pending_in_batch.get(&s) == Some(&r) {
            self.pending_in_batch.remove(&s);
        }
    }

    fn close_pending(&mut self, region: i64, s: SurplusId, outcome: &'static str, at: Timestamp) {
        match self.pending_in_batch.get(&s).copied() {
            Some(r) => self.outcome(region, s, r, outcome, at),
            None => self.close_pending.push((region, s, outcome, at)),
        }
    }

    fn project(&mut self, cell: u64, env: &Envelope) {
        use SurplusStatus as S;
        let region = region_of(cell);
        let at = env.at;
        match &env.event {
            Event::ProviderRegistered(p) => self.providers.push((cell as i64, p.clone(), at)),
            Event::RecipientRegistered(r) => self.recipients.push((cell as i64, r.clone(), at)),
            Event::SurplusPosted(p) => {
                // The event carries its own cell: trust it over the hint.
                let region = region_of(p.cell);
                self.new_surplus.insert(
                    p.id,
                    NewSurplus {
                        region,
                        row: p.clone(),
                        posted_at: at,
                        state: SurplusState {
                            region,
                            status: S::Available,
                            version: 1,
                            claimed_by: None,
                            delivered_g: None,
                            updated_at: at,
                        },
                    },
                );
            }
            Event::OfferMade {
                surplus_id,
                recipient_id,
                ack_deadline,
                attempt,
                fallback,
                version,
            } => {
                self.status(*surplus_id, region, at, S::Offered, *version);
                self.new_offers.insert(
                    (*surplus_id, *recipient_id),
                    OfferRow {
                        region,
                        attempt: *attempt,
                        made_at: at,
                        ack_deadline: *ack_deadline,
                        fallback: *fallback,
                        outcome: "pending",
                        decided_at: None,
                    },
                );
                self.pending_in_batch.insert(*surplus_id, *recipient_id);
            }
            Event::OfferDeclined {
                surplus_id,
                recipient_id,
                version,
            } => {
                self.status(*surplus_id, region, at, S::Available, *version);
                self.outcome(region, *surplus_id, *recipient_id, "declined", at);
            }
            Event::OfferTimedOut {
                surplus_id,
                recipient_id,
                version,
            } => {
                self.status(*surplus_id, region, at, S::Available, *version);
                self.outcome(region, *surplus_id, *recipient_id, "timed_out", at);
            }
            Event::Claimed {
                surplus_id,
                recipient_id,
                via,
                version,
            } => {
                let r = *recipient_id;
                self.set_state(*surplus_id, region, at, |s| {
                    s.status = S::Claimed;
                    s.version = *version;
                    s.claimed_by = Some(r);
                });
                match via {
                    ClaimVia::OfferAccepted => self.outcome(region, *surplus_id, r, "accepted", at),
                    ClaimVia::Direct => self.close_pending(region, *surplus_id, "superseded", at),
                }
            }
            Event::PickedUp {
                surplus_id,
                version,
                ..
            } => self.status(*surplus_id, region, at, S::PickedUp, *version),
            Event::Delivered {
                surplus_id,
                delivered,
                version,
                ..
            } => {
                let g = delivered.grams();
                self.set_state(*surplus_id, region, at, |s| {
                    s.status = S::Delivered;
                    s.version = *version;
                    s.delivered_g = Some(g);
                });
            }
            Event::Expired {
                surplus_id,
                version,
            } => {
                self.status(*surplus_id, region, at, S::Expired, *version);
                self.close_pending(region, *surplus_id, "expired", at);
            }
            Event::DeadLettered {
                surplus_id,
                version,
                ..
            } => {
                self.status(*surplus_id, region, at, S::DeadLettered, *version);
            }
            Event::ContactResealed { subject, contact } => {
                self.subject_ops.push(SubjectOp::Reseal {
                    subject: *subject,
                    contact: contact.clone(),
                });
            }
            Event::SubjectErased { subject } => {
                self.subject_ops.push(SubjectOp::Erase {
                    subject: *subject,
                    at,
                });
            }
            Event::Audited(record) => self.audits.push((env.seq as i64, at, record.clone())),
        }
    }
}

fn log_row(log: &mut LogRows, cell: u64, env: &Envelope, fenced: bool) {
    log.seq.push(env.seq as i64);
    log.cell.push(cell as i64);
    log.kind.push(env.event.kind());
    log.at.push(odt(env.at));
    log.epoch.push(env.lease_epoch as i64);
    log.trace
        .push(env.trace_context.map(|t| t.trace_id.to_vec()));
    log.fenced.push(fenced);
    log.envelope.push(sync_protocol::wire::encode_envelope(env));
    log.subject
        .push(env.event.subject().map(|s| subject_uuid(&s)));
}

fn subject_uuid(s: &Subject) -> Uuid {
    Uuid::from_bytes(*s.id_bytes())
}

/// Where the hub places an event, from the event itself where it can: the
/// cell an edge ships beside an event is a hint it does not trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The event concerns this cell (0: none known; nothing to project).
    Cell(u64),
    /// A registration or posting whose cell does not contain its location:
    /// logged, never projected.
    Misplaced,
}

/// Places every event of `batch`. Postings and registrations are checked
/// against their own locations; later events of a surplus take the cell of
/// its posting (from this batch, else from the hint, else from the stored
/// row). A lying hint can only misplace the edge's own rows: every update
/// is also scoped to the edge.
async fn place(
    tx: &tokio_postgres::Transaction<'_>,
    edge: &EdgeId,
    batch: &Apply,
) -> Result<Vec<Place>, DbError> {
    let mut posted: HashMap<SurplusId, u64> = HashMap::new();
    let mut places = Vec::with_capacity(batch.events.len());
    let mut unknown: Vec<Uuid> = Vec::new();
    for (hint, env) in &batch.events {
        let p = match &env.event {
            Event::ProviderRegistered(p) if located(*hint, &p.location) => Place::Cell(*hint),
            Event::RecipientRegistered(r) if located(*hint, &r.location) => Place::Cell(*hint),
            Event::ProviderRegistered(_) | Event::RecipientRegistered(_) => Place::Misplaced,
            Event::SurplusPosted(p) if located(p.cell, &p.location) => {
                posted.insert(p.id, p.cell);
                Place::Cell(p.cell)
            }
            Event::SurplusPosted(_) => Place::Misplaced,
            other => match other.surplus_id() {
                Some(id) => match posted.get(&id) {
                    Some(cell) => Place::Cell(*cell),
                    None if region_of(*hint) != 0 => Place::Cell(*hint),
                    None => {
                        unknown.push(*id.as_uuid());
                        Place::Cell(0)
                    }
                },
                None => Place::Cell(0),
            },
        };
        places.push(p);
    }
    if unknown.is_empty() {
        return Ok(places);
    }
    // Rare (an edge that no longer knew the cell): a lookup across regions.
    let rows = tx
        .query(
            "SELECT id, cell FROM surplus WHERE edge_id = $1 AND id = ANY($2)",
            &[&edge.as_str(), &unknown],
        )
        .await?;
    let found: HashMap<Uuid, u64> = rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect();
    for ((_, env), p) in batch.events.iter().zip(places.iter_mut()) {
        if *p == Place::Cell(0)
            && let Some(cell) = env
                .event
                .surplus_id()
                .and_then(|id| found.get(id.as_uuid()))
        {
            *p = Place::Cell(*cell);
        }
    }
    Ok(places)
}

/// Applies `batch` from `edge`, whose log lives in `home_region`, in one
/// transaction, received now. Fails without effect if the stored
/// high-water mark is not `batch.first_seq - 1`.
pub async fn apply_batch(
    client: &mut Client,
    edge: &EdgeId,
    home_region: i64,
    batch: &Apply,
) -> Result<Applied, DbError> {
    apply_batch_at(client, edge, home_region, batch, OffsetDateTime::now_utc()).await
}

/// [`apply_batch`] with the hub's receive time given: it picks the month
/// partition the log rows and new surplus land in. A month without its
/// partition (housekeeping late, or a test's clock) gets one, once.
pub async fn apply_batch_at(
    client: &mut Client,
    edge: &EdgeId,
    home_region: i64,
    batch: &Apply,
    received_at: OffsetDateTime,
) -> Result<Applied, DbError> {
    match apply_once(client, edge, home_region, batch, received_at).await {
        Err(e) if partitions::is_missing_partition(&e) => {
            let month = partitions::Month::of(received_at);
            for table in partitions::PARTITIONED {
                partitions::ensure(client, table, month).await?;
            }
            apply_once(client, edge, home_region, batch, received_at).await
        }
        other => other,
    }
}

/// Locks the edge's high-water mark (one row, one shard).
pub const SQL_LOCK_PROGRESS: &str = "SELECT high_water FROM edge_progress
     WHERE geo_region_id = $1 AND edge_id = $2 FOR UPDATE";

/// Moves the edge's high-water mark (one row, one shard).
pub const SQL_MOVE_PROGRESS: &str =
    "UPDATE edge_progress SET high_water = $3, last_applied = now(),
            last_event_at = GREATEST(last_event_at, $4)
     WHERE geo_region_id = $1 AND edge_id = $2";

async fn apply_once(
    client: &mut Client,
    edge: &EdgeId,
    home_region: i64,
    batch: &Apply,
    received_at: OffsetDateTime,
) -> Result<Applied, DbError> {
    let tx = client.transaction().await?;
    let hw = lock_progress(&tx, edge, home_region).await?;
    if hw + 1 != batch.first_seq {
        return Err(DbError::NotContiguous {
            high_water: hw,
            got: batch.first_seq,
        });
    }
    let places = place(&tx, edge, batch).await?;
    let leases = load_leases(&tx, &places).await?;
    let (fold, out, event_spans) = fold_batch(edge, batch, places, &leases);
    write(&tx, edge, home_region, &fold, received_at).await?;
    let newest = out.newest.map(odt);
    tx.execute(
        SQL_MOVE_PROGRESS,
        &[
            &home_region,
            &edge.as_str(),
            &(batch.last_seq as i64),
            &newest,
        ],
    )
    .await?;
    tx.commit().await?;
    drop(event_spans);
    Ok(out)
}

/// Locks the edge's high-water mark for this transaction and reads it.
async fn lock_progress(
    tx: &tokio_postgres::Transaction<'_>,
    edge: &EdgeId,
    home_region: i64,
) -> Result<u64, DbError> {
    let hw: i64 = tx
        .query_opt(SQL_LOCK_PROGRESS, &[&home_region, &edge.as_str()])
        .await?
        .ok_or_else(|| {
            DbError::Integrity(format!(
                "edge {edge} has no progress in region {home_region}"
            ))
        })?
        .get(0);
    Ok(hw as u64)
}

/// Folds a placed batch into rows: every event is logged, the fenced and
/// misplaced ones are not projected. Each traced event's span is returned
/// open so it can stay open until the batch is committed — the edge's trace
/// then shows when its event became durable at the hub.
fn fold_batch(
    edge: &EdgeId,
    batch: &Apply,
    places: Vec<Place>,
    leases: &HashMap<u64, Lease>,
) -> (Fold, Applied, Vec<tracing::Span>) {
    let mut fold = Fold::default();
    let mut out = Applied::default();
    let mut event_spans: Vec<tracing::Span> = Vec::new();
    for ((hint, env), place) in batch.events.iter().zip(places) {
        let (cell, fenced) = match place {
            Place::Misplaced => {
                tracing::warn!(%edge, seq = env.seq, kind = env.event.kind(), "event's cell does not contain its location: logged, not projected");
                (*hint, true)
            }
            Place::Cell(c) => (
                c,
                c != 0 && is_fenced(leases.get(&c), edge, env.lease_epoch),
            ),
        };
        // The event's trace continues here: kiosk → edge → hub.
        let span = env.trace_context.map(|tc| {
            let span = tracing::info_span!(
                "hub.apply_event",
                edge.id = %edge,
                seq = env.seq,
                kind = env.event.kind()
            );
            sync_protocol::trace::otel::set_parent(&span, &tc);
            span
        });
        log_row(&mut fold.log, cell, env, fenced);
        out.events += 1;
        out.ats.push(env.at);
        out.newest = out.newest.max(Some(env.at));
        if fenced {
            out.fenced += 1;
            continue;
        }
        if let Event::Delivered { delivered, .. } = &env.event {
            out.delivered_g += delivered.grams();
        }
        match span {
            Some(span) => {
                span.in_scope(|| fold.project(cell, env));
                event_spans.push(span);
            }
            None => fold.project(cell, env),
        }
    }
    (fold, out, event_spans)
}

async fn load_leases(
    tx: &tokio_postgres::Transaction<'_>,
    places: &[Place],
) -> Result<HashMap<u64, Lease>, DbError> {
    let mut cells: Vec<i64> = places
        .iter()
        .filter_map(|p| match p {
            Place::Cell(c) if *c != 0 => Some(*c as i64),
            _ => None,
        })
        .collect();
    cells.sort_unstable();
    cells.dedup();
    let rows = tx.query(SQL_LEASES, &[&cells]).await?;
    Ok(super::leases::leases_by_cell(&rows))
}

/// The batch's log rows, in the edge's home region (one shard).
pub const SQL_INSERT_LOG: &str = "INSERT INTO event_log (geo_region_id, edge_id, seq, cell, kind, at, lease_epoch, trace_id,
                            fenced, envelope, subject_id, received_at)
     SELECT $1, $2, u.*, $12 FROM UNNEST($3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[],
                                         $7::bigint[], $8::bytea[], $9::bool[], $10::bytea[], $11::uuid[]) AS u";

/// Writes the fold. Under Citus each statement on a distributed table names
/// one `geo_region_id` as a constant — one statement per region the batch
/// touches — so each is routed to a single shard, and a batch whose events
/// all lie in the edge's home region stays in one colocation group.
async fn write(
    tx: &tokio_postgres::Transaction<'_>,
    edge: &EdgeId,
    home_region: i64,
    f: &Fold,
    received_at: OffsetDateTime,
) -> Result<(), DbError> {
    let e = edge.as_str();
    let l = &f.log;
    tx.execute(
        SQL_INSERT_LOG,
        &[
            &home_region,
            &e,
            &l.seq,
            &l.cell,
            &l.kind,
            &l.at,
            &l.epoch,
            &l.trace,
            &l.fenced,
            &l.envelope,
            &l.subject,
            &received_at,
        ],
    )
    .await?;
    write_registry(tx, e, f).await?;
    // After the registrations (a subject registered and resealed or erased
    // in one batch) and after the log rows (an erasure redacts this batch's
    // copies too).
    for op in &f.subject_ops {
        match op {
            SubjectOp::Reseal { subject, contact } => {
                reseal(tx, e, home_region, subject, contact).await?
            }
            SubjectOp::Erase { subject, at } => erase(tx, e, home_region, subject, *at).await?,
        }
    }
    write_audits(tx, e, home_region, f).await?;
    let mut regions: Vec<i64> = f
        .new_surplus
        .values()
        .map(|n| n.region)
        .chain(f.updates.values().map(|u| u.region))
        .chain(f.new_offers.values().map(|o| o.region))
        .chain(f.outcomes.iter().map(|o| o.0))
        .chain(f.close_pending.iter().map(|c| c.0))
        .filter(|r| *r != 0)
        .collect();
    regions.sort_unstable();
    regions.dedup();
    for region in regions {
        write_surplus(tx, e, region, f, received_at).await?;
        write_offers(tx, e, region, f).await?;
    }
    Ok(())
}

async fn write_registry(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    f: &Fold,
) -> Result<(), DbError> {
    if !f.providers.is_empty() {
        write_providers(tx, e, &f.providers).await?;
    }
    if !f.recipients.is_empty() {
        write_recipients(tx, e, &f.recipients).await?;
    }
    Ok(())
}

async fn write_providers(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    p: &[(i64, sync_protocol::Provider, Timestamp)],
) -> Result<(), DbError> {
    let ids: Vec<Uuid> = p.iter().map(|(_, x, _)| *x.id.as_uuid()).collect();
    let names: Vec<&str> = p.iter().map(|(_, x, _)| x.name.as_str()).collect();
    let lat: Vec<f64> = p.iter().map(|(_, x, _)| x.location.lat()).collect();
    let lon: Vec<f64> = p.iter().map(|(_, x, _)| x.location.lon()).collect();
    let cell: Vec<i64> = p.iter().map(|(c, _, _)| *c).collect();
    // Sealed by the edge; stored byte for byte.
    let sealed: Vec<&[u8]> = p.iter().map(|(_, x, _)| x.contact.as_bytes()).collect();
    let at: Vec<OffsetDateTime> = p.iter().map(|(_, _, t)| odt(*t)).collect();
    tx.execute(
        "INSERT INTO providers (id, edge_id, name, lat, lon, cell, contact_sealed, created_at)
         SELECT u.id, $1, u.name, u.lat, u.lon, u.cell, u.sealed, u.at
         FROM UNNEST($2::uuid[], $3::text[], $4::float8[], $5::float8[], $6::bigint[], $7::bytea[], $8::timestamptz[])
              AS u(id, name, lat, lon, cell, sealed, at)
         ON CONFLICT (id) DO NOTHING",
        &[&e, &ids, &names, &lat, &lon, &cell, &sealed, &at],
    )
    .await?;
    Ok(())
}

async fn write_recipients(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    r: &[(i64, sync_protocol::Recipient, Timestamp)],
) -> Result<(), DbError> {
    let ids: Vec<Uuid> = r.iter().map(|(_, x, _)| *x.id.as_uuid()).collect();
    let names: Vec<&str> = r.iter().map(|(_, x, _)| x.name.as_str()).collect();
    let lat: Vec<f64> = r.iter().map(|(_, x, _)| x.location.lat()).collect();
    let lon: Vec<f64> = r.iter().map(|(_, x, _)| x.location.lon()).collect();
    // The cell column holds the recipient's own S2 cell; the region is derived.
    let cell: Vec<i64> = r.iter().map(|(c, _, _)| *c).collect();
    let cap: Vec<i64> = r
        .iter()
        .map(|(_, x, _)| x.capacity_per_day.grams() as i64)
        .collect();
    let types: Vec<i16> = r
        .iter()
        .map(|(_, x, _)| i16::from(x.accepted_food_types.bits()))
        .collect();
    let fallback: Vec<bool> = r.iter().map(|(_, x, _)| x.is_fallback).collect();
    let sealed: Vec<&[u8]> = r.iter().map(|(_, x, _)| x.contact.as_bytes()).collect();
    let at: Vec<OffsetDateTime> = r.iter().map(|(_, _, t)| odt(*t)).collect();
    // The leaf cell places the recipient for neighbours at any S2 level.
    let leaf: Vec<i64> = r.iter().map(|(_, x, _)| leaf_cell(&x.location)).collect();
    tx.execute(
        "INSERT INTO recipients (id, edge_id, name, lat, lon, cell, leaf_cell, capacity_g_per_day, food_types,
                                 is_fallback, contact_sealed, created_at, received_at)
         SELECT u.id, $1, u.name, u.lat, u.lon, u.cell, u.leaf, u.cap, u.types, u.fallback, u.sealed,
                u.at, clock_timestamp()
         FROM UNNEST($2::uuid[], $3::text[], $4::float8[], $5::float8[], $6::bigint[], $7::bigint[],
                     $8::int2[], $9::bool[], $10::bytea[], $11::timestamptz[], $12::bigint[])
              AS u(id, name, lat, lon, cell, cap, types, fallback, sealed, at, leaf)
         ON CONFLICT (id) DO NOTHING",
        &[&e, &ids, &names, &lat, &lon, &cell, &cap, &types, &fallback, &sealed, &at, &leaf],
    )
    .await?;
    Ok(())
}

/// A new sealed contact for one of this edge's subjects; an erased subject
/// stays erased, and the log's copy of a reseal arriving after its erasure
/// is redacted at once.
async fn reseal(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    home_region: i64,
    subject: &Subject,
    contact: &SealedContact,
) -> Result<(), DbError> {
    let sql = match subject {
        Subject::Provider(_) => {
            "UPDATE providers SET contact_sealed = $3 WHERE id = $1 AND edge_id = $2 AND erased_at IS NULL"
        }
        Subject::Recipient(_) => {
            "UPDATE recipients SET contact_sealed = $3 WHERE id = $1 AND edge_id = $2 AND erased_at IS NULL"
        }
    };
    let id = subject_uuid(subject);
    if tx.execute(sql, &[&id, &e, &contact.as_bytes()]).await? > 0 {
        return reseal_log(tx, e, home_region, subject, contact).await;
    }
    let erased = match subject {
        Subject::Provider(_) => {
            "SELECT 1 FROM providers WHERE id = $1 AND edge_id = $2 AND erased_at IS NOT NULL"
        }
        Subject::Recipient(_) => {
            "SELECT 1 FROM recipients WHERE id = $1 AND edge_id = $2 AND erased_at IS NOT NULL"
        }
    };
    if tx.query_opt(erased, &[&id, &e]).await?.is_some() {
        redact_log(tx, e, home_region, subject).await?;
    }
    Ok(())
}

/// Erases one of this edge's subjects: its row keeps its id, place and
/// capacity (surplus, offers and delivered kilograms refer to them) but
/// loses its name and contact; every stored copy of its events in this
/// edge's log loses them too. Idempotent: erasing again changes nothing.
async fn erase(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    home_region: i64,
    subject: &Subject,
    at: Timestamp,
) -> Result<(), DbError> {
    let id = subject_uuid(subject);
    match subject {
        Subject::Provider(_) => {
            tx.execute(
                "UPDATE providers SET name = $3, contact_sealed = ''::bytea, erased_at = COALESCE(erased_at, $4)
                 WHERE id = $1 AND edge_id = $2",
                &[&id, &e, &ERASED_NAME, &odt(at)],
            )
            .await?;
        }
        Subject::Recipient(_) => {
            // The registry feed's clock, read first: Citus refuses a
            // volatile function inside an UPDATE of a distributed or
            // reference table.
            let received: OffsetDateTime =
                tx.query_one("SELECT clock_timestamp()", &[]).await?.get(0);
            tx.execute(
                "UPDATE recipients SET name = $3, contact_sealed = ''::bytea, erased_at = COALESCE(erased_at, $4),
                        received_at = $5
                 WHERE id = $1 AND edge_id = $2",
                &[&id, &e, &ERASED_NAME, &odt(at), &received],
            )
            .await?;
        }
    }
    if let Subject::Provider(_) = subject {
        // Descriptions are the provider's free text (a name, a phone number).
        tx.execute(
            "UPDATE surplus SET description = '' WHERE provider_id = $1 AND edge_id = $2",
            &[&id, &e],
        )
        .await?;
    }
    redact_log(tx, e, home_region, subject).await
}

/// Redacts the name and contact of `subject` in every stored copy of its
/// events in this edge's log.
async fn redact_log(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    home_region: i64,
    subject: &Subject,
) -> Result<(), DbError> {
    rewrite_log(tx, e, home_region, subject, |event| event.redact(subject)).await
}

/// Key rotation reached the hub: every stored copy of `subject`'s sealed
/// contact is replaced by the one sealed under the new key, so no stored
/// event still needs the old key.
async fn reseal_log(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    home_region: i64,
    subject: &Subject,
    contact: &SealedContact,
) -> Result<(), DbError> {
    rewrite_log(tx, e, home_region, subject, |event| {
        event.reseal(subject, contact)
    })
    .await
}

/// Rewrites the stored envelopes of `subject` in this edge's log that
/// `change` changes (one that no longer decodes is emptied).
async fn rewrite_log(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    home_region: i64,
    subject: &Subject,
    change: impl Fn(&mut Event) -> bool,
) -> Result<(), DbError> {
    let id = subject_uuid(subject);
    let rows = tx
        .query(
            "SELECT seq, envelope FROM event_log
             WHERE geo_region_id = $1 AND edge_id = $2 AND subject_id = $3",
            &[&home_region, &e, &id],
        )
        .await?;
    let mut seqs: Vec<i64> = Vec::new();
    let mut envelopes: Vec<Vec<u8>> = Vec::new();
    for row in rows {
        let seq: i64 = row.get(0);
        let stored: &[u8] = row.get(1);
        let redacted = match sync_protocol::wire::decode_envelope(stored) {
            Ok(mut env) => {
                if !change(&mut env.event) {
                    continue;
                }
                sync_protocol::wire::encode_envelope(&env)
            }
            // The hub wrote it, so it decodes unless the wire version moved
            // on since: what cannot be redacted is not kept.
            Err(err) => {
                tracing::warn!(edge = e, seq, error = %err, "erasure: a stored envelope of the subject does not decode; emptied");
                Vec::new()
            }
        };
        if redacted != stored {
            seqs.push(seq);
            envelopes.push(redacted);
        }
    }
    if !seqs.is_empty() {
        tx.execute(
            "UPDATE event_log l SET envelope = u.envelope
             FROM UNNEST($3::bigint[], $4::bytea[]) AS u(seq, envelope)
             WHERE l.geo_region_id = $1 AND l.edge_id = $2 AND l.seq = u.seq",
            &[&home_region, &e, &seqs, &envelopes],
        )
        .await?;
    }
    Ok(())
}

/// PostgreSQL `text` cannot hold NUL: one in an audit field would fail the
/// batch forever, so it is replaced.
fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

async fn write_audits(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    home_region: i64,
    f: &Fold,
) -> Result<(), DbError> {
    let a = &f.audits;
    if a.is_empty() {
        return Ok(());
    }
    let seq: Vec<i64> = a.iter().map(|(s, _, _)| *s).collect();
    let at: Vec<OffsetDateTime> = a.iter().map(|(_, t, _)| odt(*t)).collect();
    let actor: Vec<Cow<'_, str>> = a.iter().map(|(_, _, r)| pg_text(&r.actor)).collect();
    let role: Vec<Cow<'_, str>> = a.iter().map(|(_, _, r)| pg_text(&r.role)).collect();
    let action: Vec<Cow<'_, str>> = a.iter().map(|(_, _, r)| pg_text(&r.action)).collect();
    let resource: Vec<Cow<'_, str>> = a.iter().map(|(_, _, r)| pg_text(&r.resource)).collect();
    let status: Vec<i32> = a.iter().map(|(_, _, r)| i32::from(r.status)).collect();
    let ip: Vec<Option<Cow<'_, str>>> = a
        .iter()
        .map(|(_, _, r)| r.ip.as_deref().map(pg_text))
        .collect();
    let agent: Vec<Option<Cow<'_, str>>> = a
        .iter()
        .map(|(_, _, r)| r.user_agent.as_deref().map(pg_text))
        .collect();
    // The log's key: a batch applied again adds nothing.
    tx.execute(
        SQL_INSERT_AUDIT,
        &[
            &home_region,
            &e,
            &seq,
            &at,
            &actor,
            &role,
            &action,
            &resource,
            &status,
            &ip,
            &agent,
        ],
    )
    .await?;
    Ok(())
}

/// Which of `ids` a region already holds (one shard): a posting applied
/// again inserts nothing, whichever month partition holds the first.
pub const SQL_EXISTING_SURPLUS: &str =
    "SELECT id FROM surplus WHERE geo_region_id = $1 AND id = ANY($2)";

/// New surplus of one region (one shard; the month of `received_at`).
pub const SQL_INSERT_SURPLUS: &str = "INSERT INTO surplus (geo_region_id, id, edge_id, provider_id, lat, lon, cell, quantity_g, food_type,
                          description, expires_at, posted_at, status, version, claimed_by, delivered_g,
                          updated_at, received_at)
     SELECT $1, u.id, $2, u.provider, u.lat, u.lon, u.cell, u.qty, u.food, u.descr, u.expires,
            u.posted, u.status, u.version, u.claimed, u.delivered, u.updated, $18
     FROM UNNEST($3::uuid[], $4::uuid[], $5::float8[], $6::float8[], $7::bigint[],
                 $8::bigint[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[],
                 $13::text[], $14::bigint[], $15::uuid[], $16::bigint[], $17::timestamptz[])
          AS u(id, provider, lat, lon, cell, qty, food, descr, expires, posted, status,
               version, claimed, delivered, updated)
     ON CONFLICT (geo_region_id, id, received_at) DO NOTHING";

/// Later states of one region's surplus, scoped to the edge (one shard).
pub const SQL_UPDATE_SURPLUS: &str = "UPDATE surplus s SET status = u.status, version = u.version,
            claimed_by = COALESCE(u.claimed, s.claimed_by),
            delivered_g = COALESCE(u.delivered, s.delivered_g), updated_at = u.updated
     FROM UNNEST($3::uuid[], $4::text[], $5::bigint[], $6::uuid[], $7::bigint[], $8::timestamptz[])
          AS u(id, status, version, claimed, delivered, updated)
     WHERE s.geo_region_id = $1 AND s.edge_id = $2 AND s.id = u.id AND s.version < u.version";

async fn write_surplus(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    k: i64,
    f: &Fold,
    received_at: OffsetDateTime,
) -> Result<(), DbError> {
    let mut n: Vec<&NewSurplus> = f.new_surplus.values().filter(|x| x.region == k).collect();
    if !n.is_empty() {
        let ids: Vec<Uuid> = n.iter().map(|x| *x.row.id.as_uuid()).collect();
        let existing: std::collections::HashSet<Uuid> = tx
            .query(SQL_EXISTING_SURPLUS, &[&k, &ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        n.retain(|x| !existing.contains(x.row.id.as_uuid()));
    }
    if !n.is_empty() {
        insert_surplus(tx, e, k, &n, received_at).await?;
    }
    let u: Vec<(&SurplusId, &SurplusState)> =
        f.updates.iter().filter(|(_, s)| s.region == k).collect();
    if !u.is_empty() {
        update_surplus(tx, e, k, &u).await?;
    }
    Ok(())
}

/// Inserts the surplus first posted in this batch (region `k`).
async fn insert_surplus(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    k: i64,
    n: &[&NewSurplus],
    received_at: OffsetDateTime,
) -> Result<(), DbError> {
    let id: Vec<Uuid> = n.iter().map(|x| *x.row.id.as_uuid()).collect();
    let provider: Vec<Uuid> = n.iter().map(|x| *x.row.provider_id.as_uuid()).collect();
    let lat: Vec<f64> = n.iter().map(|x| x.row.location.lat()).collect();
    let lon: Vec<f64> = n.iter().map(|x| x.row.location.lon()).collect();
    let cell: Vec<i64> = n.iter().map(|x| x.row.cell as i64).collect();
    let qty: Vec<i64> = n.iter().map(|x| x.row.quantity.grams() as i64).collect();
    let food: Vec<&str> = n.iter().map(|x| x.row.food_type.as_str()).collect();
    let desc: Vec<&str> = n.iter().map(|x| x.row.description.as_str()).collect();
    let expires: Vec<OffsetDateTime> = n.iter().map(|x| odt(x.row.expires_at)).collect();
    let posted: Vec<OffsetDateTime> = n.iter().map(|x| odt(x.posted_at)).collect();
    let status: Vec<&str> = n.iter().map(|x| x.state.status.as_str()).collect();
    let version: Vec<i64> = n.iter().map(|x| x.state.version as i64).collect();
    let claimed: Vec<Option<Uuid>> = n
        .iter()
        .map(|x| x.state.claimed_by.map(|r| *r.as_uuid()))
        .collect();
    let delivered: Vec<Option<i64>> = n
        .iter()
        .map(|x| x.state.delivered_g.map(|g| g as i64))
        .collect();
    let updated: Vec<OffsetDateTime> = n.iter().map(|x| odt(x.state.updated_at)).collect();
    tx.execute(
        SQL_INSERT_SURPLUS,
        &[
            &k,
            &e,
            &id,
            &provider,
            &lat,
            &lon,
            &cell,
            &qty,
            &food,
            &desc,
            &expires,
            &posted,
            &status,
            &version,
            &claimed,
            &delivered,
            &updated,
            &received_at,
        ],
    )
    .await?;
    Ok(())
}

/// Moves the state of surplus this batch changed (region `k`).
async fn update_surplus(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    k: i64,
    u: &[(&SurplusId, &SurplusState)],
) -> Result<(), DbError> {
    let id: Vec<Uuid> = u.iter().map(|(i, _)| *i.as_uuid()).collect();
    let status: Vec<&str> = u.iter().map(|(_, s)| s.status.as_str()).collect();
    let version: Vec<i64> = u.iter().map(|(_, s)| s.version as i64).collect();
    let claimed: Vec<Option<Uuid>> = u
        .iter()
        .map(|(_, s)| s.claimed_by.map(|r| *r.as_uuid()))
        .collect();
    let delivered: Vec<Option<i64>> = u
        .iter()
        .map(|(_, s)| s.delivered_g.map(|g| g as i64))
        .collect();
    let updated: Vec<OffsetDateTime> = u.iter().map(|(_, s)| odt(s.updated_at)).collect();
    // Scoped to the edge: an edge changes only the surplus it posted.
    tx.execute(
        SQL_UPDATE_SURPLUS,
        &[
            &k, &e, &id, &status, &version, &claimed, &delivered, &updated,
        ],
    )
    .await?;
    Ok(())
}

/// New offers of one region (one shard).
pub const SQL_INSERT_OFFERS: &str = "INSERT INTO matching_history (geo_region_id, surplus_id, recipient_id, edge_id, attempt, made_at,
                                           ack_deadline, fallback, outcome, decided_at)
             SELECT $1, u.sid, u.rid, $2, u.attempt, u.made, u.ack, u.fallback, u.outcome, u.decided
             FROM UNNEST($3::uuid[], $4::uuid[], $5::int4[], $6::timestamptz[], $7::timestamptz[],
                         $8::bool[], $9::text[], $10::timestamptz[])
                  AS u(sid, rid, attempt, made, ack, fallback, outcome, decided)
             ON CONFLICT (geo_region_id, surplus_id, recipient_id) DO NOTHING";

/// Outcomes of offers made in earlier batches, in one region (one shard).
pub const SQL_OFFER_OUTCOMES: &str = "UPDATE matching_history m SET outcome = u.outcome, decided_at = u.at
             FROM UNNEST($3::uuid[], $4::uuid[], $5::text[], $6::timestamptz[]) AS u(sid, rid, outcome, at)
             WHERE m.geo_region_id = $1 AND m.edge_id = $2 AND m.surplus_id = u.sid AND m.recipient_id = u.rid";

/// Closes the pending offers of one region's surplus (one shard).
pub const SQL_CLOSE_PENDING: &str = "UPDATE matching_history m SET outcome = u.outcome, decided_at = u.at
             FROM UNNEST($3::uuid[], $4::text[], $5::timestamptz[]) AS u(sid, outcome, at)
             WHERE m.geo_region_id = $1 AND m.edge_id = $2 AND m.surplus_id = u.sid AND m.outcome = 'pending'";

/// Audit records, in the edge's home region (one shard).
pub const SQL_INSERT_AUDIT: &str = "INSERT INTO audit_log (geo_region_id, edge_id, seq, at, actor, role, action, resource, status, ip, user_agent)
         SELECT $1, $2, * FROM UNNEST($3::bigint[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
                                      $8::text[], $9::int4[], $10::text[], $11::text[])
         ON CONFLICT (geo_region_id, edge_id, seq) DO NOTHING";

/// The leases of the batch's cells (a reference table: read where the
/// coordinator stands).
pub const SQL_LEASES: &str =
    "SELECT cell, holder, epoch, fence_below, expires_at FROM cell_leases WHERE cell = ANY($1)";

async fn write_offers(
    tx: &tokio_postgres::Transaction<'_>,
    e: &str,
    k: i64,
    f: &Fold,
) -> Result<(), DbError> {
    let o: Vec<(&(SurplusId, RecipientId), &OfferRow)> =
        f.new_offers.iter().filter(|(_, r)| r.region == k).collect();
    if !o.is_empty() {
        let sid: Vec<Uuid> = o.iter().map(|((s, _), _)| *s.as_uuid()).collect();
        let rid: Vec<Uuid> = o.iter().map(|((_, r), _)| *r.as_uuid()).collect();
        let attempt: Vec<i32> = o.iter().map(|(_, r)| r.attempt as i32).collect();
        let made: Vec<OffsetDateTime> = o.iter().map(|(_, r)| odt(r.made_at)).collect();
        let ack: Vec<OffsetDateTime> = o.iter().map(|(_, r)| odt(r.ack_deadline)).collect();
        let fallback: Vec<bool> = o.iter().map(|(_, r)| r.fallback).collect();
        let outcome: Vec<&str> = o.iter().map(|(_, r)| r.outcome).collect();
        let decided: Vec<Option<OffsetDateTime>> =
            o.iter().map(|(_, r)| r.decided_at.map(odt)).collect();
        tx.execute(
            SQL_INSERT_OFFERS,
            &[
                &k, &e, &sid, &rid, &attempt, &made, &ack, &fallback, &outcome, &decided,
            ],
        )
        .await?;
    }
    let outcomes: Vec<_> = f.outcomes.iter().filter(|x| x.0 == k).collect();
    if !outcomes.is_empty() {
        let sid: Vec<Uuid> = outcomes.iter().map(|x| *x.1.as_uuid()).collect();
        let rid: Vec<Uuid> = outcomes.iter().map(|x| *x.2.as_uuid()).collect();
        let outcome: Vec<&str> = outcomes.iter().map(|x| x.3).collect();
        let at: Vec<OffsetDateTime> = outcomes.iter().map(|x| odt(x.4)).collect();
        tx.execute(SQL_OFFER_OUTCOMES, &[&k, &e, &sid, &rid, &outcome, &at])
            .await?;
    }
    let close: Vec<_> = f.close_pending.iter().filter(|x| x.0 == k).collect();
    if !close.is_empty() {
        let sid: Vec<Uuid> = close.iter().map(|x| *x.1.as_uuid()).collect();
        let outcome: Vec<&str> = close.iter().map(|x| x.2).collect();
        let at: Vec<OffsetDateTime> = close.iter().map(|x| odt(x.3)).collect();
        tx.execute(SQL_CLOSE_PENDING, &[&k, &e, &sid, &outcome, &at])
            .await?;
    }
    Ok(())
}
