//! What each command does inside the group's transaction: one small
//! function per command, each asking the engine to decide and then writing
//! what it decided ([`project`](super::project) turns events into rows).

use std::sync::Arc;

use rusqlite::params;
use sync_protocol::{
    AuditRecord, Event, Provider, ProviderId, Recipient, RecipientId, SealedContact, Subject,
    SurplusId, SurplusPosted, SurplusStatus, Timestamp, TraceContext,
};

use super::command::{Command, Pending, PostRequest};
use super::project::table_of;
use super::{StoreError, Writer};
use crate::commands::{
    Acted, Actor, IdempotencyKey, NewProvider, NewRecipient, Posted, Rejected, Rejection,
    SurplusAction,
};
use crate::pii::PiiKeys;
use crate::store::rows::{forget_foreign_recipient, read_surplus_view, upsert_foreign_recipient};
use crate::store::stats::WriterStats;
use edge_core::engine::CommandRefusal;
use edge_core::idempotency::{Replay, StoredKey};
use edge_core::lifecycle::{LiveSurplus, Refusal};
use edge_core::neighbours::Change;
use sync_protocol::Surplus;

/// A refusal with no surplus to show.
fn refused(r: CommandRefusal) -> Rejection {
    Rejection {
        reason: r.into(),
        current: None,
    }
}

impl Writer {
    /// Applies one command; its answer waits for the commit.
    pub(super) fn apply(&mut self, now: Timestamp, cmd: Command) -> Result<Pending, StoreError> {
        Ok(match cmd {
            Command::RegisterProvider { new, actor, reply } => {
                Pending::Provider(reply, self.register_provider(now, new, actor)?)
            }
            Command::RegisterRecipient {
                new,
                cell,
                actor,
                reply,
            } => Pending::Recipient(reply, self.register_recipient(now, new, cell, actor)?),
            Command::Post { post, reply } => Pending::Post(reply, self.post(now, *post)?),
            Command::Act {
                surplus_id,
                action,
                idempotency,
                trace,
                actor,
                reply,
            } => {
                let acted = self.act(now, surplus_id, action, idempotency, trace, actor)?;
                Pending::Act(reply, acted)
            }
            Command::Erase {
                subject,
                actor,
                reply,
            } => Pending::Erased(reply, self.erase(now, subject, actor)?),
            Command::Reseal { limit, reply } => Pending::Count(reply, self.reseal(now, limit)?),
            Command::SwapPiiKeys { keys, reply } => {
                self.swap_keys(keys);
                Pending::Done(reply)
            }
            Command::Audit { record, reply } => {
                self.audit(now, record)?;
                Pending::Done(reply)
            }
            Command::Retain {
                cutoff,
                limit,
                reply,
            } => Pending::Count(reply, self.retain(cutoff, limit)?),
            Command::Tick { reply } => Pending::Count(reply, self.tick(now)?),
            Command::MarkPublished { seq, reply } => {
                self.mark_published(seq)?;
                Pending::Done(reply)
            }
            Command::SetLeaseEpoch { epoch, reply } => {
                self.set_lease_epoch(epoch)?;
                Pending::Done(reply)
            }
            Command::ImportRecipients { entries, reply } => {
                Pending::Count(reply, self.import(now, entries)?)
            }
            Command::Kiosk { op, actor, reply } => {
                Pending::Kiosk(reply, self.kiosk(now, op, actor)?)
            }
            Command::Channel { op, actor, reply } => {
                Pending::Channel(reply, self.channel(now, op, actor)?)
            }
            Command::MarkNotified { seq, reply } => {
                self.mark_notified(seq)?;
                Pending::Done(reply)
            }
            Command::Stop => unreachable!("Stop never enters a batch"),
        })
    }

    fn register_provider(
        &mut self,
        now: Timestamp,
        new: NewProvider,
        actor: Option<Box<Actor>>,
    ) -> Result<Result<Provider, Rejection>, StoreError> {
        let id = ProviderId::from_uuid(self.ids.next(now));
        let address = new.address;
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
        if result.is_ok() && !address.is_empty() {
            self.conn
                .prepare_cached("UPDATE providers SET address = ?2 WHERE id = ?1")?
                .execute(params![id.as_bytes(), address])?;
        }
        self.audit_outcome(now, actor, "provider.register", &result, |p| {
            (format!("provider/{}", p.id), 201)
        })?;
        Ok(result)
    }

    fn register_recipient(
        &mut self,
        now: Timestamp,
        new: NewRecipient,
        cell: u64,
        actor: Option<Box<Actor>>,
    ) -> Result<Result<Recipient, Rejection>, StoreError> {
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
        self.audit_outcome(now, actor, "recipient.register", &result, |r| {
            (format!("recipient/{}", r.id), 201)
        })?;
        Ok(result)
    }

    fn post(
        &mut self,
        now: Timestamp,
        post: PostRequest,
    ) -> Result<Result<Posted, Rejection>, StoreError> {
        let PostRequest {
            new,
            cell,
            idempotency,
            trace,
            actor,
            hints,
        } = post;
        let outcome = match &idempotency {
            Some(key) => match self.replay(&new.provider_id, key)? {
                Some(earlier) => earlier,
                None => self.post_new(now, new, cell, idempotency, trace, hints)?,
            },
            None => self.post_new(now, new, cell, None, trace, hints)?,
        };
        self.audit_outcome(now, actor.map(Box::new), "surplus.post", &outcome, |p| {
            (format!("surplus/{}", p.surplus.id), 201)
        })?;
        Ok(outcome)
    }

    /// A post that is not a replay: matched, written, its key stored.
    fn post_new(
        &mut self,
        now: Timestamp,
        new: crate::commands::NewSurplus,
        cell: u64,
        idempotency: Option<IdempotencyKey>,
        trace: Option<TraceContext>,
        hints: Option<edge_core::matching::TravelHints>,
    ) -> Result<Result<Posted, Rejection>, StoreError> {
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
        let started = std::time::Instant::now();
        let span = tracing::info_span!("matching", surplus.id = %posted.id);
        if let Some(tc) = &trace {
            sync_protocol::trace::otel::set_parent(&span, tc);
        }
        let result = span.in_scope(|| {
            self.engine
                .post_with(now, posted, hints.unwrap_or_default())
                .map(LiveSurplus::snapshot)
        });
        WriterStats::record(&self.stats.decide_ns, started.elapsed().as_nanos() as u64);
        let view = match result {
            Ok(view) => view,
            Err(refusal) => return Ok(Err(refused(refusal))),
        };
        self.write_output(now, trace)?;
        if let Some(key) = idempotency {
            self.store_key(now, &view, &key)?;
        }
        Ok(Ok(Posted {
            surplus: view,
            replayed: false,
        }))
    }

    fn store_key(
        &self,
        now: Timestamp,
        view: &Surplus,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError> {
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
        Ok(())
    }

    /// The earlier answer to a request with this `Idempotency-Key`, if any
    /// (the decision is the core's: [`edge_core::idempotency::decide`]).
    fn replay(
        &mut self,
        provider: &ProviderId,
        key: &IdempotencyKey,
    ) -> Result<Option<Result<Posted, Rejection>>, StoreError> {
        let id = match edge_core::idempotency::decide(
            self.stored_key(provider, key)?,
            key.fingerprint,
        ) {
            Replay::Fresh => return Ok(None),
            Replay::KeyReused => {
                return Ok(Some(Err(Rejection {
                    reason: Rejected::IdempotencyKeyReused,
                    current: None,
                })));
            }
            Replay::Replay(id) => id,
        };
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

    fn stored_key(
        &self,
        provider: &ProviderId,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredKey>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT fingerprint, surplus_id FROM idempotency_keys WHERE provider_id = ?1 AND key = ?2",
        )?;
        let mut rows = stmt.query(params![provider.as_bytes(), key.key])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let fingerprint: i64 = row.get(0)?;
        let id: Vec<u8> = row.get(1)?;
        let id = id
            .try_into()
            .map_err(|_| StoreError::Corrupt("idempotency surplus id".into()))?;
        Ok(Some(StoredKey {
            fingerprint: fingerprint as u64,
            surplus_id: SurplusId::from_bytes(id),
        }))
    }

    /// An action, once per `Idempotency-Key`: a repeat of an applied action
    /// answers with the surplus as it stands and is audited as a replay
    /// (`offer.accept.replay`), so the log shows the action applied once.
    fn act(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        action: SurplusAction,
        idempotency: Option<IdempotencyKey>,
        trace: Option<TraceContext>,
        actor: Option<Box<Actor>>,
    ) -> Result<Result<Acted, Rejection>, StoreError> {
        // Keys are kept per recipient; an operator's action (no recipient)
        // takes none.
        let recipient = action.recipient_id();
        let stored = match (&idempotency, &recipient) {
            (Some(key), Some(recipient)) => self.stored_action_key(recipient, key)?,
            _ => None,
        };
        let fingerprint = idempotency.as_ref().map_or(0, |k| k.fingerprint);
        let (outcome, name) = match edge_core::idempotency::decide(stored, fingerprint) {
            Replay::Fresh => {
                let outcome = self.act_on(now, id, action, trace)?;
                if let (Ok(view), Some(key), Some(recipient)) = (&outcome, &idempotency, &recipient)
                {
                    self.store_action_key(now, recipient, view, key)?;
                }
                let acted = outcome.map(|surplus| Acted {
                    surplus,
                    replayed: false,
                });
                (acted, action.name().to_string())
            }
            Replay::Replay(earlier) => {
                let view = self.stored_view(&earlier)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("action key names missing {earlier}"))
                })?;
                let acted = Acted {
                    surplus: view,
                    replayed: true,
                };
                (Ok(acted), format!("{}.replay", action.name()))
            }
            Replay::KeyReused => {
                let refusal = Rejection {
                    reason: Rejected::IdempotencyKeyReused,
                    current: None,
                };
                (Err(refusal), action.name().to_string())
            }
        };
        if let Some(actor) = actor {
            let status = outcome.as_ref().map_or_else(|r| r.reason.status(), |_| 200);
            self.audit(now, actor.record(&name, format!("surplus/{id}"), status))?;
        }
        Ok(outcome)
    }

    fn store_action_key(
        &self,
        now: Timestamp,
        recipient: &RecipientId,
        view: &Surplus,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO action_keys (recipient_id, key, fingerprint, surplus_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                recipient.as_bytes(),
                key.key,
                key.fingerprint as i64,
                view.id.as_bytes(),
                now.unix_ms()
            ])?;
        Ok(())
    }

    fn stored_action_key(
        &self,
        recipient: &RecipientId,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredKey>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT fingerprint, surplus_id FROM action_keys WHERE recipient_id = ?1 AND key = ?2",
        )?;
        let mut rows = stmt.query(params![recipient.as_bytes(), key.key])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let fingerprint: i64 = row.get(0)?;
        let id: Vec<u8> = row.get(1)?;
        let id = id
            .try_into()
            .map_err(|_| StoreError::Corrupt("action key surplus id".into()))?;
        Ok(Some(StoredKey {
            fingerprint: fingerprint as u64,
            surplus_id: SurplusId::from_bytes(id),
        }))
    }

    fn act_on(
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
            SurplusAction::DlqRetry => e.dlq_retry(now, id),
            SurplusAction::DlqResolve { recipient_id } => e.dlq_resolve(now, id, recipient_id),
        }
        .map(LiveSurplus::snapshot)
    }

    /// Brings a stored, unfinished surplus that is not in memory (a picked-up
    /// one) back for one command.
    fn rehydrate(&mut self, id: SurplusId) -> Result<bool, StoreError> {
        match crate::store::load::load_one(&self.conn, &id)? {
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

    /// GDPR erasure: the engine forgets the subject, its rows lose name and
    /// contact, and the outbox envelopes that carried them are redacted; the
    /// erasure (or its 404) is audited.
    fn erase(
        &mut self,
        now: Timestamp,
        subject: Subject,
        actor: Option<Box<Actor>>,
    ) -> Result<bool, StoreError> {
        let erased = self.erase_subject(now, subject)?;
        self.directory_dirty |= erased;
        if let Some(actor) = actor {
            let status = if erased { 200 } else { 404 };
            let record = actor.record("subject.erase", subject.to_string(), status);
            self.audit(now, record)?;
        }
        Ok(erased)
    }

    fn erase_subject(&mut self, now: Timestamp, subject: Subject) -> Result<bool, StoreError> {
        if !self.is_ours(&subject)? {
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
        if let Subject::Recipient(r) = subject {
            self.delete_channels(r)?;
        }
        self.scrub_wal = true;
        Ok(true)
    }

    /// Stored here, not erased, and not a neighbour's (a neighbour's
    /// recipient is its owner's to erase).
    fn is_ours(&self, subject: &Subject) -> Result<bool, StoreError> {
        let table = table_of(subject);
        let ours_only = match subject {
            Subject::Provider(_) => "",
            Subject::Recipient(_) => "AND owner_edge IS NULL",
        };
        let n: i64 = self
            .conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM {table} WHERE id = ?1 AND erased_at IS NULL {ours_only}"
            ))?
            .query_row([subject.id_bytes()], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// Re-seals up to `limit` contacts sealed under a key other than the
    /// active one.
    fn reseal(&mut self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let keys = self.keys.clone();
        let mut todo = self.sealed_under_old_keys(keys.active_id(), limit)?;
        todo.truncate(limit);
        let n = todo.len();
        for (subject, sealed) in todo {
            let contact = keys.open(&sealed, subject.id_bytes())?;
            let contact = SealedContact(keys.seal(&contact, subject.id_bytes()));
            self.append(now, None, 0, Event::ContactResealed { subject, contact })?;
        }
        // Notification channels are this edge's alone (no event): sealed
        // again in place.
        let channels = if n < limit {
            self.reseal_channels(limit - n)?
        } else {
            0
        };
        Ok(n + channels)
    }

    fn sealed_under_old_keys(
        &self,
        active: u32,
        limit: usize,
    ) -> Result<Vec<(Subject, Vec<u8>)>, StoreError> {
        let active = active.to_be_bytes();
        let mut todo = Vec::new();
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
        Ok(todo)
    }

    /// New contacts are sealed with `keys` from now on; readers get them
    /// with the group's commit.
    fn swap_keys(&mut self, keys: Arc<PiiKeys>) {
        self.keys = keys.clone();
        self.group.pii_keys = Some(keys);
    }

    /// Seals a contact under the active key, bound to its subject.
    fn seal(&self, contact: &sync_protocol::Contact, subject: &Subject) -> SealedContact {
        SealedContact(self.keys.seal(contact, subject.id_bytes()))
    }

    /// One audit row and its event, in the current transaction.
    pub(super) fn audit(&mut self, now: Timestamp, record: AuditRecord) -> Result<(), StoreError> {
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
        WriterStats::add(&self.stats.audit_records, 1);
        self.append(now, None, 0, Event::Audited(record))
    }

    /// Audits a command's outcome: `ok` names the resource and status of a
    /// success; a refusal is recorded with its status.
    fn audit_outcome<T>(
        &mut self,
        now: Timestamp,
        actor: Option<Box<Actor>>,
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

    fn retain(&mut self, cutoff: Timestamp, limit: usize) -> Result<usize, StoreError> {
        crate::store::retention::retain(
            &self.conn,
            cutoff,
            limit,
            self.cfg.engine.utc_offset_minutes,
        )
    }

    fn tick(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        let fired = self.engine.tick(now);
        self.write_output(now, None)?;
        Ok(fired)
    }

    fn mark_published(&mut self, seq: u64) -> Result<(), StoreError> {
        let seq = seq.min(self.last_seq()) as i64;
        self.conn
            .prepare_cached(
                "UPDATE sync_state SET published_seq = max(published_seq, ?1) WHERE id = 1",
            )?
            .execute([seq])?;
        Ok(())
    }

    fn set_lease_epoch(&mut self, epoch: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE edge_meta SET value = ?1 WHERE key = 'lease_epoch'")?
            .execute([epoch.to_string()])?;
        self.lease_epoch = epoch;
        Ok(())
    }

    /// Imports neighbouring recipients (what changes is the core's call:
    /// [`edge_core::neighbours::import`]); returns how many changed.
    fn import(
        &mut self,
        now: Timestamp,
        entries: Vec<sync_protocol::session::RegistryEntry>,
    ) -> Result<usize, StoreError> {
        self.directory_dirty = true;
        let out = edge_core::neighbours::import(&mut self.engine, now, &self.cfg.edge_id, entries);
        if out.registry_full {
            tracing::warn!("recipient registry full: not importing more neighbours");
        }
        for change in &out.changes {
            match change {
                Change::Upserted {
                    recipient,
                    cell,
                    owner,
                } => upsert_foreign_recipient(&self.conn, recipient, *cell, owner.as_str(), now)?,
                Change::Forgotten(id) => forget_foreign_recipient(&self.conn, id, now)?,
            }
        }
        if out.forgot_any() {
            // Offers declined for the forgotten: their events and rows.
            self.write_output(now, None)?;
        }
        Ok(out.changed())
    }
}
