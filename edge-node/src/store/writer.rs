//! The single writer: one OS thread owns the write connection and the engine.
//! It takes whatever commands are queued (up to `max_batch`), applies them in
//! order inside one transaction — domain rows and outbox events together —
//! commits once (one fsync for the whole group), and only then answers. A
//! failed commit rolls back, reloads the engine from SQLite and answers every
//! command in the group with `Unavailable`: nothing is acknowledged that is
//! not durable.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::{Connection, params};
use sync_protocol::wire::encode_envelope;
use sync_protocol::{
    AuditRecord, ClaimVia, EdgeId, Envelope, Event, Provider, ProviderId, Recipient, RecipientId,
    SealedContact, Subject, SurplusId, SurplusPosted, SurplusStatus, Timestamp, TraceContext,
};
use tokio::sync::oneshot;

use super::StoreError;
use super::load::load;
use super::rows::{insert_provider, insert_recipient, read_surplus_view, upsert_surplus};
use crate::clock::Clock;
use crate::commands::{
    Actor, IdempotencyKey, NewProvider, NewRecipient, NewSurplus, Posted, Rejected, Rejection,
    SurplusAction,
};
use crate::ids::IdGen;
use crate::read_model::OfferNotice;
use crate::shared::Shared;
use crate::stats::Stats;
use edge_core::engine::{Alert, CommandRefusal, Engine, EngineConfig};
use edge_core::lifecycle::{LiveSurplus, Refusal};
use sync_protocol::Surplus;

/// The store could not make the write durable; nothing was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the edge could not commit: {0}")]
pub struct Unavailable(pub String);

/// Marks the writer dead when its thread ends for any reason (readiness).
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0
            .stats
            .writer_alive
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

fn subject_table(s: &Subject) -> &'static str {
    match s {
        Subject::Provider(_) => "providers",
        Subject::Recipient(_) => "recipients",
    }
}

/// A refusal with no surplus to show.
fn refused(r: CommandRefusal) -> Rejection {
    Rejection {
        reason: r.into(),
        current: None,
    }
}

/// A group taking longer than this is logged: it delays every reply in it.
const SLOW_GROUP: std::time::Duration = std::time::Duration::from_millis(100);

pub type Reply<T> = oneshot::Sender<Result<T, Unavailable>>;

pub enum Command {
    RegisterProvider {
        new: NewProvider,
        actor: Option<Box<Actor>>,
        reply: Reply<Result<Provider, Rejection>>,
    },
    RegisterRecipient {
        new: NewRecipient,
        cell: u64,
        actor: Option<Box<Actor>>,
        reply: Reply<Result<Recipient, Rejection>>,
    },
    Post {
        new: NewSurplus,
        cell: u64,
        idempotency: Option<IdempotencyKey>,
        trace: Option<TraceContext>,
        actor: Option<Box<Actor>>,
        /// Routed travel times for some recipients (none: from distance).
        hints: Option<Box<edge_core::matching::TravelHints>>,
        reply: Reply<Result<Posted, Rejection>>,
    },
    Act {
        surplus_id: SurplusId,
        action: SurplusAction,
        trace: Option<TraceContext>,
        actor: Option<Box<Actor>>,
        reply: Reply<Result<Surplus, Rejection>>,
    },
    /// GDPR erasure of one of this edge's subjects (false: not ours or
    /// unknown).
    Erase {
        subject: Subject,
        actor: Option<Box<Actor>>,
        reply: Reply<bool>,
    },
    /// Re-seals up to `limit` contacts sealed under an older key; answers
    /// how many (0: none left).
    Reseal { limit: usize, reply: Reply<usize> },
    /// An audit record with no write of its own (a refusal, a read of
    /// personal data).
    Audit {
        record: AuditRecord,
        reply: Reply<()>,
    },
    /// Deletes up to `limit` rows of operational data last touched before
    /// `cutoff`; answers how many (0: done).
    Retain {
        cutoff: Timestamp,
        limit: usize,
        reply: Reply<usize>,
    },
    /// Fire due timers now (the manual clock's way of moving time).
    Tick { reply: Reply<usize> },
    /// The hub acknowledged the outbox up to `seq`.
    MarkPublished { seq: u64, reply: Reply<()> },
    /// The hub granted this lease epoch: stamp it on new events.
    SetLeaseEpoch { epoch: u64, reply: Reply<()> },
    /// Recipients of neighbouring cells, from the hub (no events: not ours).
    ImportRecipients {
        entries: Vec<sync_protocol::session::RegistryEntry>,
        reply: Reply<usize>,
    },
    /// Finish what is queued ahead of this, then stop. Handles that outlive
    /// the edge (a lingering connection) then get `Unavailable`.
    Stop,
}

/// An answer held back until the group commits.
enum Pending {
    Provider(
        Reply<Result<Provider, Rejection>>,
        Result<Provider, Rejection>,
    ),
    Recipient(
        Reply<Result<Recipient, Rejection>>,
        Result<Recipient, Rejection>,
    ),
    Post(Reply<Result<Posted, Rejection>>, Result<Posted, Rejection>),
    Act(
        Reply<Result<Surplus, Rejection>>,
        Result<Surplus, Rejection>,
    ),
    Tick(Reply<usize>, usize),
    Erased(Reply<bool>, bool),
    Done(Reply<()>),
}

impl Pending {
    fn send(self, failure: Option<&Unavailable>) {
        // A dropped receiver means the client went away; nothing to do.
        macro_rules! answer {
            ($reply:expr, $value:expr) => {{
                let _ = $reply.send(match failure {
                    None => Ok($value),
                    Some(e) => Err(e.clone()),
                });
            }};
        }
        match self {
            Pending::Provider(r, v) => answer!(r, v),
            Pending::Recipient(r, v) => answer!(r, v),
            Pending::Post(r, v) => answer!(r, v),
            Pending::Act(r, v) => answer!(r, v),
            Pending::Tick(r, v) => answer!(r, v),
            Pending::Erased(r, v) => answer!(r, v),
            Pending::Done(r) => answer!(r, ()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub edge_id: EdgeId,
    pub max_batch: usize,
    /// The S2 level of owned cells (to place providers' events).
    pub cell_level: u8,
    /// Keep the recipient directory (a routing service is configured).
    pub directory: bool,
    pub engine: EngineConfig,
}

pub struct Writer {
    conn: Connection,
    engine: Engine,
    cfg: WriterConfig,
    next_seq: u64,
    clock: Arc<dyn Clock>,
    ids: IdGen,
    shared: Arc<Shared>,
    /// Views changed in the current group, for the read model.
    views: Vec<Surplus>,
    /// Offers made in the current group: (recipient, surplus).
    offers_made: Vec<(RecipientId, SurplusId)>,
    /// The epoch stamped on new events (granted by the hub; 0 before).
    lease_epoch: u64,
    /// The group erased a subject: scrub the WAL after its commit.
    scrub_wal: bool,
    /// What the group's events add to the counters, applied after commit.
    counts: crate::metrics::GroupCounts,
    /// Providers erased in the group: their surplus lose their descriptions
    /// in the read model after the commit.
    erased_providers: Vec<ProviderId>,
    /// Recipients changed: rebuild the directory after the commit (when
    /// `cfg.directory` is on).
    directory_dirty: bool,
}

enum Wake {
    Command(Command),
    Timer,
    Closed,
}

/// Whether the writer keeps running after a group.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

impl Writer {
    pub fn new(
        conn: Connection,
        cfg: WriterConfig,
        clock: Arc<dyn Clock>,
        ids: IdGen,
        shared: Arc<Shared>,
    ) -> Result<Writer, StoreError> {
        let loaded = load(&conn, cfg.engine, clock.now())?;
        let lease_epoch = super::load::lease_epoch(&conn)?;
        shared.committed_seq.send_replace(loaded.next_seq - 1);
        Ok(Writer {
            lease_epoch,
            conn,
            engine: loaded.engine,
            cfg,
            next_seq: loaded.next_seq,
            clock,
            ids,
            shared,
            views: Vec::new(),
            offers_made: Vec::new(),
            scrub_wal: false,
            counts: crate::metrics::GroupCounts::default(),
            directory_dirty: true,
            erased_providers: Vec::new(),
        })
    }

    /// The views of every live surplus, to seed the read model at start.
    pub fn live_views(&self) -> Vec<Surplus> {
        self.engine.live().map(LiveSurplus::snapshot).collect()
    }

    /// Surplus finished within `window` before `now`, oldest first.
    pub fn recent_views(
        &self,
        now: Timestamp,
        window: sync_protocol::Duration,
        limit: usize,
    ) -> Result<Vec<Surplus>, StoreError> {
        let since = now + sync_protocol::Duration::from_ms(-window.as_ms());
        Ok(super::load::recent_finished(&self.conn, since, limit)?
            .iter()
            .map(LiveSurplus::snapshot)
            .collect())
    }

    /// Runs until told to stop (or every sender is dropped), finishing
    /// what was queued before that.
    pub fn run(mut self, rx: Receiver<Command>) {
        let _alive = AliveGuard(self.shared.clone());
        let mut batch = Vec::with_capacity(self.cfg.max_batch);
        let mut next = Next::Continue;
        while next == Next::Continue {
            match self.wait(&rx) {
                Wake::Command(Command::Stop) | Wake::Closed => next = Next::Stop,
                Wake::Command(c) => batch.push(c),
                Wake::Timer => {}
            }
            while next == Next::Continue && batch.len() < self.cfg.max_batch {
                match rx.try_recv() {
                    Ok(Command::Stop) => next = Next::Stop,
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let now = self.clock.now();
            let timers_due = self.engine.next_deadline().is_some_and(|t| t <= now);
            if !batch.is_empty() || timers_due {
                self.process(now, &mut batch);
            }
        }
        tracing::debug!("writer stopped");
    }

    fn wait(&self, rx: &Receiver<Command>) -> Wake {
        let deadline = self
            .engine
            .next_deadline()
            .filter(|_| !self.clock.is_manual());
        let Some(due) = deadline else {
            return rx.recv().map_or(Wake::Closed, Wake::Command);
        };
        let wait_ms = (due - self.clock.now()).as_ms().clamp(0, 1_000);
        if wait_ms == 0 {
            return Wake::Timer;
        }
        match rx.recv_timeout(std::time::Duration::from_millis(wait_ms as u64)) {
            Ok(c) => Wake::Command(c),
            Err(RecvTimeoutError::Timeout) => Wake::Timer,
            Err(RecvTimeoutError::Disconnected) => Wake::Closed,
        }
    }

    fn process(&mut self, now: Timestamp, batch: &mut Vec<Command>) {
        let size = batch.len() as u64;
        let mut pending = Vec::with_capacity(batch.len());
        let started = Instant::now();
        // A bug that panics inside a group must not take the edge down: the
        // transaction is rolled back, state is reloaded from SQLite (the source
        // of truth) and every command in the group is answered 503.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_group(now, batch, &mut pending)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Stats::add(&self.shared.stats.writer_panics, 1);
            Err(StoreError::Corrupt(format!("the writer panicked: {what}")))
        });
        batch.clear(); // commands not reached drop their reply: the caller sees Unavailable
        let shared = self.shared.clone();
        let stats = &shared.stats;
        match result {
            Ok(commit_ns) => {
                Stats::add(&stats.batches, 1);
                Stats::add(&stats.commands, size);
                let _ = stats.commit_ns.lock().record(commit_ns.max(1));
                let _ = stats.batch_size.lock().record(size.max(1));
                self.publish(now);
                for p in pending {
                    p.send(None);
                }
                let group = started.elapsed();
                let _ = stats
                    .group_ns
                    .lock()
                    .record((group.as_nanos() as u64).max(1));
                if group > SLOW_GROUP {
                    tracing::warn!(
                        commands = size,
                        group_ms = group.as_millis() as u64,
                        commit_ms = commit_ns / 1_000_000,
                        "slow group commit"
                    );
                }
            }
            Err(e) => {
                let failure = Unavailable(e.to_string());
                tracing::error!(error = %e, commands = size, "group commit failed; rolled back");
                Stats::add(&stats.commit_failures, 1);
                let _ = self.conn.execute_batch("ROLLBACK");
                self.views.clear();
                self.offers_made.clear();
                self.recover();
                for p in pending {
                    p.send(Some(&failure));
                }
            }
        }
    }

    /// Reloads the engine from what SQLite holds (the last committed state).
    fn recover(&mut self) {
        self.erased_providers.clear();
        self.counts = crate::metrics::GroupCounts::default();
        self.directory_dirty = true;
        let healthy = match load(&self.conn, self.cfg.engine, self.clock.now()) {
            Ok(loaded) => {
                self.engine = loaded.engine;
                self.next_seq = loaded.next_seq;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading state after a failed commit failed");
                false
            }
        };
        self.shared
            .stats
            .writer_healthy
            .store(healthy, std::sync::atomic::Ordering::Relaxed);
    }

    /// One transaction for the whole group; returns the commit's duration.
    fn run_group(
        &mut self,
        now: Timestamp,
        batch: &mut Vec<Command>,
        pending: &mut Vec<Pending>,
    ) -> Result<u64, StoreError> {
        let _group = tracing::info_span!("store.group", commands = batch.len()).entered();
        // Each traced command gets a `store.commit` span in its own trace,
        // open until the group's commit is durable: the request's trace
        // shows what the group commit (and its fsync) cost it.
        let commits: Vec<tracing::Span> = batch
            .iter()
            .filter_map(|c| match c {
                Command::Post { trace, .. } | Command::Act { trace, .. } => trace.as_ref(),
                _ => None,
            })
            .map(|tc| {
                let span = tracing::info_span!("store.commit", commands = batch.len());
                sync_protocol::trace::otel::set_parent(&span, tc);
                span
            })
            .collect();
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.engine.tick(now);
        self.write_output(now, None)?;
        for cmd in batch.drain(..) {
            pending.push(self.apply(now, cmd)?);
        }
        let t = Instant::now();
        self.conn.execute_batch("COMMIT")?;
        drop(commits);
        if std::mem::take(&mut self.scrub_wal) {
            // An erasure: the WAL still holds the old page images (names,
            // sealed contacts). Checkpoint them over and truncate it; with
            // `secure_delete` the freed space is zeroed. Readers holding an
            // old snapshot can make this partial: it is retried at the next
            // erasure, and the next checkpoint overwrites the frames anyway.
            if let Err(e) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            {
                tracing::warn!(error = %e, "checkpoint after an erasure failed");
            }
        }
        self.shared
            .stats
            .writer_healthy
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(t.elapsed().as_nanos() as u64)
    }

    fn apply(&mut self, now: Timestamp, cmd: Command) -> Result<Pending, StoreError> {
        Ok(match cmd {
            Command::RegisterProvider { new, actor, reply } => {
                let id = ProviderId::from_uuid(self.ids.next(now));
                let p = Provider {
                    id,
                    name: new.name,
                    location: new.location,
                    contact: self.seal(&new.contact, &Subject::Provider(id)),
                };
                let result = self
                    .engine
                    .register_provider(p.clone())
                    .map(|()| p)
                    .map_err(refused);
                self.write_output(now, None)?;
                self.audit_outcome(now, actor.map(|a| *a), "provider.register", &result, |p| {
                    (format!("provider/{}", p.id), 201)
                })?;
                Pending::Provider(reply, result)
            }
            Command::RegisterRecipient {
                new,
                cell,
                actor,
                reply,
            } => {
                let id = RecipientId::from_uuid(self.ids.next(now));
                let r = Recipient {
                    id,
                    name: new.name,
                    location: new.location,
                    capacity_per_day: new.capacity_per_day,
                    accepted_food_types: new.accepted_food_types,
                    is_fallback: new.is_fallback,
                    contact: self.seal(&new.contact, &Subject::Recipient(id)),
                };
                let result = self
                    .engine
                    .register_recipient(r.clone(), cell)
                    .map(|()| r)
                    .map_err(refused);
                self.write_output(now, None)?;
                self.directory_dirty = true;
                self.audit_outcome(now, actor.map(|a| *a), "recipient.register", &result, |r| {
                    (format!("recipient/{}", r.id), 201)
                })?;
                Pending::Recipient(reply, result)
            }
            Command::Post {
                new,
                cell,
                idempotency,
                trace,
                actor,
                hints,
                reply,
            } => {
                let hints = hints.map(|h| *h).unwrap_or_default();
                let outcome = self.post(now, new, cell, idempotency, trace, hints)?;
                self.audit_outcome(now, actor.map(|a| *a), "surplus.post", &outcome, |p| {
                    (format!("surplus/{}", p.surplus.id), 201)
                })?;
                Pending::Post(reply, outcome)
            }
            Command::Act {
                surplus_id,
                action,
                trace,
                actor,
                reply,
            } => {
                let outcome = self.act(now, surplus_id, action, trace)?;
                let resource = format!("surplus/{surplus_id}");
                if let Some(actor) = actor {
                    let status = outcome.as_ref().map_or_else(|r| r.reason.status(), |_| 200);
                    self.audit(now, actor.record(action.name(), resource, status))?;
                }
                Pending::Act(reply, outcome)
            }
            Command::Erase {
                subject,
                actor,
                reply,
            } => {
                let erased = self.erase(now, subject)?;
                self.directory_dirty |= erased;
                if let Some(actor) = actor {
                    let status = if erased { 200 } else { 404 };
                    let record = actor.record("subject.erase", subject.to_string(), status);
                    self.audit(now, record)?;
                }
                Pending::Erased(reply, erased)
            }
            Command::Reseal { limit, reply } => {
                let n = self.reseal(now, limit)?;
                Pending::Tick(reply, n)
            }
            Command::Audit { record, reply } => {
                self.audit(now, record)?;
                Pending::Done(reply)
            }
            Command::Retain {
                cutoff,
                limit,
                reply,
            } => {
                let n = super::retention::retain(
                    &self.conn,
                    cutoff,
                    limit,
                    self.cfg.engine.utc_offset_minutes,
                )?;
                Pending::Tick(reply, n)
            }
            Command::Tick { reply } => {
                let fired = self.engine.tick(now);
                self.write_output(now, None)?;
                Pending::Tick(reply, fired)
            }
            Command::MarkPublished { seq, reply } => {
                let seq = seq.min(self.next_seq - 1) as i64;
                self.conn
                    .prepare_cached(
                        "UPDATE sync_state SET published_seq = max(published_seq, ?1) WHERE id = 1",
                    )?
                    .execute([seq])?;
                Pending::Done(reply)
            }
            Command::SetLeaseEpoch { epoch, reply } => {
                self.conn
                    .prepare_cached("UPDATE edge_meta SET value = ?1 WHERE key = 'lease_epoch'")?
                    .execute([epoch.to_string()])?;
                self.lease_epoch = epoch;
                Pending::Done(reply)
            }
            Command::ImportRecipients { entries, reply } => {
                self.directory_dirty = true;
                let n = self.import(now, entries)?;
                Pending::Tick(reply, n)
            }
            Command::Stop => unreachable!("Stop never enters a batch"),
        })
    }

    fn post(
        &mut self,
        now: Timestamp,
        new: NewSurplus,
        cell: u64,
        idempotency: Option<IdempotencyKey>,
        trace: Option<TraceContext>,
        hints: edge_core::matching::TravelHints,
    ) -> Result<Result<Posted, Rejection>, StoreError> {
        if let Some(key) = &idempotency
            && let Some(earlier) = self.replay(&new.provider_id, key)?
        {
            return Ok(earlier);
        }
        let posted = SurplusPosted {
            id: SurplusId::from_uuid(self.ids.next(now)),
            provider_id: new.provider_id,
            location: new.location,
            cell,
            quantity: new.quantity,
            food_type: new.food_type,
            expires_at: new.expires_at,
            description: new.description,
        };
        let started = Instant::now();
        let span = tracing::info_span!("matching", surplus.id = %posted.id);
        if let Some(tc) = &trace {
            sync_protocol::trace::otel::set_parent(&span, tc);
        }
        let result = span.in_scope(|| {
            self.engine
                .post_with(now, posted, hints)
                .map(LiveSurplus::snapshot)
        });
        let _ = self
            .shared
            .stats
            .decide_ns
            .lock()
            .record((started.elapsed().as_nanos() as u64).max(1));
        let view = match result {
            Ok(view) => view,
            Err(refusal) => {
                return Ok(Err(Rejection {
                    reason: refusal.into(),
                    current: None,
                }));
            }
        };
        self.write_output(now, trace)?;
        if let Some(key) = idempotency {
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency_keys (provider_id, key, fingerprint, surplus_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    view.provider_id.as_bytes(),
                    key.key,
                    key.fingerprint as i64,
                    view.id.as_bytes(),
                    now.unix_ms()
                ])?;
        }
        Ok(Ok(Posted {
            surplus: view,
            replayed: false,
        }))
    }

    /// The earlier answer to a request with this `Idempotency-Key`, if any.
    fn replay(
        &mut self,
        provider: &ProviderId,
        key: &IdempotencyKey,
    ) -> Result<Option<Result<Posted, Rejection>>, StoreError> {
        let found: Option<(i64, Vec<u8>)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT fingerprint, surplus_id FROM idempotency_keys WHERE provider_id = ?1 AND key = ?2",
            )?;
            let mut rows = stmt.query(params![provider.as_bytes(), key.key])?;
            match rows.next()? {
                Some(row) => Some((row.get(0)?, row.get(1)?)),
                None => None,
            }
        };
        let Some((fingerprint, id)) = found else {
            return Ok(None);
        };
        if fingerprint as u64 != key.fingerprint {
            return Ok(Some(Err(Rejection {
                reason: Rejected::IdempotencyKeyReused,
                current: None,
            })));
        }
        let id = SurplusId::from_bytes(
            id.try_into()
                .map_err(|_| StoreError::Corrupt("idempotency surplus id".into()))?,
        );
        let view = match self.engine.surplus(&id) {
            Some(s) => Some(s.snapshot()),
            None => read_surplus_view(&self.conn, &id)?,
        };
        let view =
            view.ok_or_else(|| StoreError::Corrupt(format!("idempotency key names missing {id}")))?;
        Ok(Some(Ok(Posted {
            surplus: view,
            replayed: true,
        })))
    }

    fn act(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        action: SurplusAction,
        trace: Option<TraceContext>,
    ) -> Result<Result<Surplus, Rejection>, StoreError> {
        // A decline rematches here: the action is traced like a post's match.
        let span = tracing::info_span!("matching", surplus.id = %id, action = action.name());
        if let Some(tc) = &trace {
            sync_protocol::trace::otel::set_parent(&span, tc);
        }
        let _in = span.enter();
        let mut result = self.apply_action(now, id, action);
        if result == Err(CommandRefusal::NotLive) && self.rehydrate(id)? {
            result = self.apply_action(now, id, action);
        }
        // Timers that fired on the way (an expiry) are written even when the
        // action itself was refused.
        self.write_output(now, trace)?;
        match result {
            Ok(view) => Ok(Ok(view)),
            Err(CommandRefusal::NotLive) => Ok(Err(self.refuse_finished(id, action)?)),
            Err(refusal) => Ok(Err(Rejection {
                reason: refusal.into(),
                current: self.stored_view(&id)?.map(Box::new),
            })),
        }
    }

    fn apply_action(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        action: SurplusAction,
    ) -> Result<Surplus, CommandRefusal> {
        let e = &mut self.engine;
        match action {
            SurplusAction::Claim {
                recipient_id,
                version,
            } => e.claim(now, id, recipient_id, version),
            SurplusAction::Accept { recipient_id } => e.accept(now, id, recipient_id),
            SurplusAction::Decline { recipient_id } => e.decline(now, id, recipient_id),
            SurplusAction::PickUp { recipient_id } => e.pick_up(now, id, recipient_id),
            SurplusAction::Deliver {
                recipient_id,
                delivered,
            } => e.deliver(now, id, recipient_id, delivered),
        }
        .map(LiveSurplus::snapshot)
    }

    /// Brings a stored, unfinished surplus that is not in memory (a picked-up
    /// one) back for one command.
    fn rehydrate(&mut self, id: SurplusId) -> Result<bool, StoreError> {
        match super::load::load_one(&self.conn, &id)? {
            Some(s) if !s.status.is_terminal() => Ok(self.engine.rehydrate(s)),
            _ => Ok(false),
        }
    }

    /// The surplus as it now stands: in memory, or as last written.
    fn stored_view(&self, id: &SurplusId) -> Result<Option<Surplus>, StoreError> {
        match self.engine.surplus_or_retired(id) {
            Some(s) => Ok(Some(s.snapshot())),
            None => read_surplus_view(&self.conn, id),
        }
    }

    /// Why an action on a surplus that is not live fails: unknown (404),
    /// expired (410), or already finished (409).
    fn refuse_finished(
        &self,
        id: SurplusId,
        action: SurplusAction,
    ) -> Result<Rejection, StoreError> {
        let Some(view) = read_surplus_view(&self.conn, &id)? else {
            return Ok(Rejection {
                reason: Rejected::NotFound,
                current: None,
            });
        };
        let refusal = match (view.status, action) {
            (SurplusStatus::Expired, _) => Refusal::Expired,
            (_, SurplusAction::Claim { .. }) => Refusal::AlreadyClaimed,
            (_, SurplusAction::Accept { .. } | SurplusAction::Decline { .. }) => {
                Refusal::NoPendingOffer
            }
            _ => Refusal::InvalidTransition,
        };
        Ok(Rejection {
            reason: Rejected::Lifecycle(refusal),
            current: Some(Box::new(view)),
        })
    }

    /// Writes what the engine changed: an outbox row per event, the rows each
    /// event projects to, and the final row of each touched surplus.
    fn write_output(
        &mut self,
        now: Timestamp,
        trace: Option<TraceContext>,
    ) -> Result<(), StoreError> {
        let out = self.engine.drain();
        let cells: std::collections::HashMap<SurplusId, u64> = out
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
            self.views.push(s.snapshot());
        }
        for alert in out.alerts {
            self.raise(alert);
        }
        Stats::add(
            &self.shared.stats.match_scan_limit_hits,
            u64::from(out.scan_limit_hits),
        );
        Ok(())
    }

    /// Appends one event to the outbox (next `seq`) and projects it.
    fn append(
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
        self.counts.observe(&env.event);
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
        self.project(now, &env.event)?;
        self.next_seq += 1;
        Stats::add(&self.shared.stats.events, 1);
        Ok(())
    }

    /// Seals a contact under the active key, bound to its subject.
    fn seal(&self, contact: &sync_protocol::Contact, subject: &Subject) -> SealedContact {
        SealedContact(self.shared.pii.read().seal(contact, subject.id_bytes()))
    }

    /// One audit row and its event, in the current transaction.
    fn audit(&mut self, now: Timestamp, record: AuditRecord) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit_log (at, actor, role, action, resource, status, ip, user_agent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                now.unix_ms(),
                record.actor,
                record.role,
                record.action,
                record.resource,
                record.status,
                record.ip,
                record.user_agent
            ])?;
        Stats::add(&self.shared.stats.audit_records, 1);
        self.append(now, None, 0, Event::Audited(record))
    }

    /// Audits a command's outcome: `ok` names the resource and status of a
    /// success; a refusal is recorded with its status.
    fn audit_outcome<T>(
        &mut self,
        now: Timestamp,
        actor: Option<Actor>,
        action: &str,
        outcome: &Result<T, Rejection>,
        ok: impl FnOnce(&T) -> (String, u16),
    ) -> Result<(), StoreError> {
        let Some(actor) = actor else {
            return Ok(());
        };
        let (resource, status) = match outcome {
            Ok(v) => ok(v),
            Err(r) => (
                action.split('.').next().unwrap_or(action).to_string(),
                r.reason.status(),
            ),
        };
        self.audit(now, actor.record(action, resource, status))
    }

    /// GDPR erasure: the engine forgets the subject, its rows lose name and
    /// contact, and the outbox envelopes that carried them are redacted.
    fn erase(&mut self, now: Timestamp, subject: Subject) -> Result<bool, StoreError> {
        let table = subject_table(&subject);
        // A neighbour's recipient is its owner's to erase.
        let ours_only = match subject {
            Subject::Provider(_) => "",
            Subject::Recipient(_) => "AND owner_edge IS NULL",
        };
        let ours: bool = self
            .conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM {table} WHERE id = ?1 AND erased_at IS NULL {ours_only}"
            ))?
            .query_row([subject.id_bytes()], |r| r.get::<_, i64>(0))?
            > 0;
        if !ours {
            return Ok(false);
        }
        let known = match subject {
            Subject::Provider(p) => self.engine.erase_provider(&p),
            Subject::Recipient(r) => self.engine.erase_recipient(now, &r),
        };
        if !known {
            return Ok(false);
        }
        // The rows and envelopes are redacted by `project` (SubjectErased).
        self.write_output(now, None)?;
        self.scrub_wal = true;
        Ok(true)
    }

    /// Re-seals contacts sealed under a key other than the active one.
    fn reseal(&mut self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let keys = self.shared.pii.read().clone();
        let active = keys.active_id().to_be_bytes();
        let mut todo: Vec<(Subject, Vec<u8>)> = Vec::new();
        for table in ["providers", "recipients"] {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT id, contact_sealed FROM {table}
                 WHERE length(contact_sealed) > 0 AND substr(contact_sealed, 2, 4) <> ?1
                 LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![active.as_slice(), limit as i64])?;
            while let Some(row) = rows.next()? {
                let id: Vec<u8> = row.get(0)?;
                let id: [u8; 16] = id
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("id is not 16 bytes".into()))?;
                let subject = if table == "providers" {
                    Subject::Provider(ProviderId::from_bytes(id))
                } else {
                    Subject::Recipient(RecipientId::from_bytes(id))
                };
                todo.push((subject, row.get(1)?));
            }
        }
        todo.truncate(limit);
        let n = todo.len();
        for (subject, sealed) in todo {
            let contact = keys.open(&sealed, subject.id_bytes())?;
            let contact = SealedContact(keys.seal(&contact, subject.id_bytes()));
            self.append(now, None, 0, Event::ContactResealed { subject, contact })?;
        }
        Ok(n)
    }

    /// The S2 cell an event concerns, shipped with it to the hub.
    fn cell_of(
        &self,
        event: &Event,
        surplus_cells: &std::collections::HashMap<SurplusId, u64>,
    ) -> u64 {
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

    /// Imports neighbouring recipients; returns how many were new or changed.
    fn import(
        &mut self,
        now: Timestamp,
        entries: Vec<sync_protocol::session::RegistryEntry>,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut forgot = false;
        for e in entries {
            if e.owner == self.cfg.edge_id {
                continue;
            }
            if e.erased {
                // Its owner erased it: forget it here too.
                if self.engine.forget_recipient(now, &e.id) {
                    self.conn
                        .prepare_cached(
                            "UPDATE recipients SET name = ?2, contact_sealed = x'', erased_at = ?3,
                                food_types = 0, is_fallback = 0
                             WHERE id = ?1 AND owner_edge IS NOT NULL",
                        )?
                        .execute(params![
                            e.id.as_bytes(),
                            super::rows::ERASED_NAME,
                            now.unix_ms()
                        ])?;
                    forgot = true;
                    n += 1;
                }
                continue;
            }
            let r = Recipient {
                id: e.id,
                name: e.name,
                location: e.location,
                capacity_per_day: e.capacity_per_day,
                accepted_food_types: e.accepted_food_types,
                is_fallback: e.is_fallback,
                contact: SealedContact::default(),
            };
            let known = self
                .engine
                .recipients()
                .get(&r.id)
                .is_some_and(|x| x.recipient == r && x.cell == e.cell);
            if known {
                continue;
            }
            if self.engine.import_recipient(r.clone(), e.cell).is_err() {
                tracing::warn!("recipient registry full: not importing more neighbours");
                break;
            }
            super::rows::upsert_foreign_recipient(&self.conn, &r, e.cell, e.owner.as_str(), now)?;
            n += 1;
        }
        if forgot {
            // Offers declined for the forgotten: their events and rows.
            self.write_output(now, None)?;
        }
        Ok(n)
    }

    fn raise(&self, alert: Alert) {
        let stats = &self.shared.stats;
        match alert {
            Alert::FallbackOffered {
                surplus_id,
                recipient_id,
            } => {
                tracing::warn!(%surplus_id, %recipient_id, "dead-letter queue exhausted: offered to the cell's fallback recipient");
                Stats::add(&stats.alerts_fallback_offered, 1);
            }
            Alert::NoFallback { surplus_id } => {
                tracing::warn!(%surplus_id, "dead-letter queue exhausted and no fallback recipient took it: needs a human");
                Stats::add(&stats.alerts_no_fallback, 1);
            }
        }
    }

    /// The domain rows an event changes besides the surplus row itself.
    fn project(&mut self, now: Timestamp, event: &Event) -> Result<(), StoreError> {
        let set_outcome = |conn: &Connection, s: &SurplusId, r: &RecipientId, outcome: &str| {
            conn.prepare_cached(
                "UPDATE offers SET outcome = ?3, decided_at = ?4 WHERE surplus_id = ?1 AND recipient_id = ?2",
            )?
            .execute(params![s.as_bytes(), r.as_bytes(), outcome, now.unix_ms()])
        };
        let close_pending = |conn: &Connection, s: &SurplusId, outcome: &str| {
            conn.prepare_cached(
                "UPDATE offers SET outcome = ?2, decided_at = ?3 WHERE surplus_id = ?1 AND outcome = 'pending'",
            )?
            .execute(params![s.as_bytes(), outcome, now.unix_ms()])
        };
        match event {
            Event::ProviderRegistered(p) => insert_provider(&self.conn, p, now)?,
            Event::RecipientRegistered(r) => {
                let cell = self.engine.recipients().get(&r.id).map_or(0, |e| e.cell);
                insert_recipient(&self.conn, r, cell, now)?;
            }
            Event::OfferMade {
                surplus_id,
                recipient_id,
                ack_deadline,
                attempt,
                fallback,
                ..
            } => {
                self.conn
                    .prepare_cached(
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
                        now.local_day(self.cfg.engine.utc_offset_minutes),
                        fallback
                    ])?;
                self.offers_made.push((*recipient_id, *surplus_id));
            }
            Event::OfferDeclined {
                surplus_id,
                recipient_id,
                ..
            } => {
                set_outcome(&self.conn, surplus_id, recipient_id, "declined")?;
            }
            Event::OfferTimedOut {
                surplus_id,
                recipient_id,
                ..
            } => {
                set_outcome(&self.conn, surplus_id, recipient_id, "timed_out")?;
            }
            Event::Claimed {
                surplus_id,
                recipient_id,
                via,
                ..
            } => match via {
                ClaimVia::OfferAccepted => {
                    set_outcome(&self.conn, surplus_id, recipient_id, "accepted")?;
                }
                ClaimVia::Direct => {
                    close_pending(&self.conn, surplus_id, "superseded")?;
                }
            },
            Event::Expired { surplus_id, .. } => {
                close_pending(&self.conn, surplus_id, "expired")?;
            }
            Event::ContactResealed { subject, contact } => {
                let table = subject_table(subject);
                self.conn
                    .prepare_cached(&format!(
                        "UPDATE {table} SET contact_sealed = ?2 WHERE id = ?1 AND erased_at IS NULL"
                    ))?
                    .execute(params![subject.id_bytes(), contact.as_bytes()])?;
                super::retention::reseal_outbox(&self.conn, subject, contact)?;
            }
            Event::SubjectErased { subject } => {
                let table = subject_table(subject);
                let extra = match subject {
                    Subject::Provider(_) => "",
                    Subject::Recipient(_) => ", food_types = 0, is_fallback = 0",
                };
                self.conn
                    .prepare_cached(&format!(
                        "UPDATE {table} SET name = ?2, contact_sealed = x'', erased_at = ?3{extra}
                         WHERE id = ?1"
                    ))?
                    .execute(params![
                        subject.id_bytes(),
                        super::rows::ERASED_NAME,
                        now.unix_ms()
                    ])?;
                if let Subject::Provider(p) = subject {
                    // Descriptions are the provider's free text.
                    self.conn
                        .prepare_cached(
                            "UPDATE surplus SET description = '' WHERE provider_id = ?1",
                        )?
                        .execute([p.as_bytes()])?;
                    self.erased_providers.push(*p);
                }
                super::retention::redact_outbox(&self.conn, subject)?;
            }
            Event::SurplusPosted(_)
            | Event::PickedUp { .. }
            | Event::Delivered { .. }
            | Event::DeadLettered { .. }
            | Event::Audited(_) => {}
        }
        Ok(())
    }

    /// After a commit: the read model learns the group's changes, and each
    /// offer still standing is announced to its recipient.
    /// Builds the recipient directory now (at start, before serving) when a
    /// routing service is configured.
    pub fn prepare_directory(&mut self) {
        if self.cfg.directory && std::mem::take(&mut self.directory_dirty) {
            self.rebuild_directory();
        }
    }

    fn rebuild_directory(&mut self) {
        let directory =
            crate::read_model::RecipientDirectory::new(self.engine.recipients().iter().map(|e| {
                (
                    e.recipient.id,
                    e.recipient.location,
                    e.recipient.accepted_food_types,
                )
            }));
        *self.shared.directory.write() = Arc::new(directory);
    }

    fn publish(&mut self, now: Timestamp) {
        if self.cfg.directory && std::mem::take(&mut self.directory_dirty) {
            self.rebuild_directory();
        }
        self.shared
            .metrics
            .committed(&std::mem::take(&mut self.counts));
        self.shared.committed_seq.send_if_modified(|seq| {
            let changed = *seq != self.next_seq - 1;
            *seq = self.next_seq - 1;
            changed
        });
        let views = std::mem::take(&mut self.views);
        let erased = std::mem::take(&mut self.erased_providers);
        let mut notices = Vec::with_capacity(self.offers_made.len());
        {
            let mut model = self.shared.read_model.write();
            model.apply(views, now);
            for p in &erased {
                model.redact_provider(p);
            }
            for (recipient_id, surplus_id) in self.offers_made.drain(..) {
                let standing = model.get(&surplus_id).filter(|v| {
                    v.offer
                        .as_ref()
                        .is_some_and(|o| o.recipient_id == recipient_id)
                });
                if let Some(v) = standing {
                    notices.push(OfferNotice {
                        recipient_id,
                        surplus: v.clone(),
                    });
                }
            }
        }
        for n in notices {
            // No subscribers is fine: offers are also listed by GET .../offers.
            let _ = self.shared.offers.send(n);
        }
    }
}
