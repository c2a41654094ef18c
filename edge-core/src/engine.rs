//! The engine: every live surplus on this edge, the recipient registry, the
//! timers, and the policy joining matching to the lifecycle — rematch after a
//! decline or an ACK timeout, the dead-letter queue with exponential backoff,
//! the cell's fallback recipient and its alert, expiry.
//!
//! It is the single writer's brain: commands go in with the current time,
//! events and changed rows come out through [`Engine::drain`]. No I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sync_protocol::{
    DeadLetterReason, Duration, Event, Mass, Provider, ProviderId, Recipient, RecipientId, Subject,
    SurplusId, SurplusPosted, SurplusStatus, Timestamp,
};

use super::index::{RecipientEntry, RecipientIndex};
use super::lifecycle::{LiveSurplus, PendingOffer, Refusal};
use super::matching::{self, MatchParams, SurplusFacts};

/// Lifecycle timing and retry policy (the `[lifecycle]` section of the config).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// How long a recipient has to accept an offer before it is rematched.
    pub ack_timeout_secs: u32,
    /// Failed offers (declined or unanswered) before the dead-letter queue.
    pub max_offers: u32,
    /// DLQ retries before the cell's fallback recipient is tried.
    pub dlq_max_retries: u32,
    /// The DLQ waits `dlq_backoff_base_secs × 2^attempt` before each retry.
    pub dlq_backoff_base_secs: u32,
}

impl Default for LifecycleConfig {
    fn default() -> LifecycleConfig {
        LifecycleConfig {
            ack_timeout_secs: 300,
            max_offers: 3,
            dlq_max_retries: 3,
            dlq_backoff_base_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    pub matching: MatchParams,
    pub lifecycle: LifecycleConfig,
    /// The city's offset from UTC, which decides when "today" starts.
    pub utc_offset_minutes: i32,
    /// At most this many surplus may be unfinished at once; more is refused
    /// (HTTP 503) rather than growing memory without bound.
    pub max_live_surplus: usize,
    /// At most this many timers fire per tick; the rest fire on the next.
    pub max_timers_per_tick: usize,
    /// Registry sizes, at most; more registrations are refused (HTTP 503).
    pub max_recipients: usize,
    pub max_providers: usize,
    /// Claims one recipient may hold open (claimed, not yet picked up).
    pub max_open_claims: u32,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            matching: MatchParams::default(),
            lifecycle: LifecycleConfig::default(),
            utc_offset_minutes: 420,
            max_live_surplus: 1_000_000,
            max_timers_per_tick: 10_000,
            max_recipients: 100_000,
            max_providers: 1_000_000,
            max_open_claims: 20,
        }
    }
}

/// Something an operator must hear about (logged and counted by the shell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// The DLQ gave up; the surplus went to the cell's fallback recipient.
    FallbackOffered {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
    },
    /// The DLQ gave up and no fallback recipient could take it.
    NoFallback { surplus_id: SurplusId },
}

/// Why a command was refused. Business outcomes, returned as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandRefusal {
    /// The surplus is not live here (unknown, or already finished).
    NotLive,
    UnknownProvider,
    UnknownRecipient,
    /// `max_live_surplus` reached.
    Saturated,
    /// A registry reached its limit.
    RegistryFull,
    /// The surplus had expired by the time it was to be stored.
    ExpiryInPast,
    /// The recipient already holds `max_open_claims` uncollected claims.
    TooManyOpenClaims,
    Lifecycle(Refusal),
}

impl From<Refusal> for CommandRefusal {
    fn from(r: Refusal) -> CommandRefusal {
        CommandRefusal::Lifecycle(r)
    }
}

/// What the engine changed since the last drain, in commit order.
#[derive(Debug, Default)]
pub struct Output {
    pub events: Vec<Event>,
    /// The state after the change of every surplus touched, once each.
    pub surplus: Vec<LiveSurplus>,
    pub alerts: Vec<Alert>,
    /// Matches that stopped at `max_scanned` without a full search.
    pub scan_limit_hits: u32,
}

#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    recipients: RecipientIndex,
    providers: HashSet<ProviderId>,
    /// A B-tree, not a hash map: it never rehashes, so a growing city never
    /// stalls the writer for the tens of milliseconds a large rehash takes
    /// (measured: doubling stalls of 12 → 83 ms at 20k posts/s).
    live: BTreeMap<SurplusId, LiveSurplus>,
    /// One entry per live surplus that time can change: its next deadline.
    timers: BTreeSet<(Timestamp, SurplusId)>,
    /// Surplus leaving memory (finished, or picked up: only a delivery report
    /// remains, and the store can bring it back for that) whose final row
    /// has not been drained yet.
    retired: HashMap<SurplusId, LiveSurplus>,
    touched: Vec<SurplusId>,
    events: Vec<Event>,
    alerts: Vec<Alert>,
    scan_limit_hits: u32,
    /// Routed travel times for the match in progress (a post's first).
    hints: matching::TravelHints,
}

/// Surplus in these states stay in memory: time or a recipient may still
/// change them, and matching must know them.
fn stays_live(s: &LiveSurplus) -> bool {
    s.status.is_unclaimed() || s.status == SurplusStatus::Claimed
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine::restore(cfg, Vec::new(), Vec::new(), Vec::new())
    }

    /// Rebuilds an engine from stored state (after a restart).
    pub fn restore(
        cfg: EngineConfig,
        recipients: Vec<RecipientEntry>,
        providers: Vec<ProviderId>,
        live: Vec<LiveSurplus>,
    ) -> Engine {
        let timers = live
            .iter()
            .filter_map(|s| s.next_deadline().map(|t| (t, s.posted.id)))
            .collect();
        let mut recipients = recipients;
        let mut open: HashMap<RecipientId, u32> = HashMap::new();
        for s in live.iter().filter(|s| s.status == SurplusStatus::Claimed) {
            if let Some(r) = s.claimed_by {
                *open.entry(r).or_default() += 1;
            }
        }
        for e in &mut recipients {
            e.open_claims = open.get(&e.recipient.id).copied().unwrap_or(0);
        }
        Engine {
            cfg,
            recipients: RecipientIndex::from_entries(recipients),
            providers: providers.into_iter().collect(),
            live: live.into_iter().map(|s| (s.posted.id, s)).collect(),
            timers,
            retired: HashMap::new(),
            touched: Vec::new(),
            events: Vec::new(),
            alerts: Vec::new(),
            scan_limit_hits: 0,
            hints: matching::TravelHints::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn recipients(&self) -> &RecipientIndex {
        &self.recipients
    }

    pub fn surplus(&self, id: &SurplusId) -> Option<&LiveSurplus> {
        self.live.get(id)
    }

    /// A live surplus, or one leaving memory in this drain.
    pub fn surplus_or_retired(&self, id: &SurplusId) -> Option<&LiveSurplus> {
        self.live.get(id).or_else(|| self.retired.get(id))
    }

    /// Brings a stored surplus back into memory (a picked-up surplus about to
    /// be delivered). Only states that may live are accepted.
    pub fn rehydrate(&mut self, s: LiveSurplus) -> bool {
        if self.live.contains_key(&s.posted.id) || s.status.is_terminal() {
            return false;
        }
        // In memory for the next command only, if it is not a state that
        // stays live: the command's `put` decides where it goes after.
        if let Some(t) = s.next_deadline() {
            self.timers.insert((t, s.posted.id));
        }
        self.live.insert(s.posted.id, s);
        true
    }

    /// Every unfinished surplus, in no particular order.
    pub fn live(&self) -> impl Iterator<Item = &LiveSurplus> {
        self.live.values()
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn has_provider(&self, id: &ProviderId) -> bool {
        self.providers.contains(id)
    }

    /// When the next timer is due, for the shell to sleep until.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Everything changed since the last drain.
    pub fn drain(&mut self) -> Output {
        let mut seen = HashSet::with_capacity(self.touched.len());
        let mut surplus = Vec::with_capacity(self.touched.len());
        for id in self.touched.drain(..) {
            if !seen.insert(id) {
                continue;
            }
            if let Some(s) = self.live.get(&id) {
                surplus.push(s.clone());
            } else if let Some(s) = self.retired.remove(&id) {
                surplus.push(s);
            }
        }
        debug_assert!(self.retired.is_empty(), "every retired surplus was touched");
        Output {
            events: std::mem::take(&mut self.events),
            surplus,
            alerts: std::mem::take(&mut self.alerts),
            scan_limit_hits: std::mem::take(&mut self.scan_limit_hits),
        }
    }

    fn day(&self, now: Timestamp) -> i64 {
        now.local_day(self.cfg.utc_offset_minutes)
    }

    pub fn register_provider(&mut self, provider: Provider) -> Result<(), CommandRefusal> {
        if self.providers.len() >= self.cfg.max_providers {
            return Err(CommandRefusal::RegistryFull);
        }
        self.providers.insert(provider.id);
        self.events.push(Event::ProviderRegistered(provider));
        Ok(())
    }

    pub fn register_recipient(
        &mut self,
        recipient: Recipient,
        cell: u64,
    ) -> Result<(), CommandRefusal> {
        if self.recipients.len() >= self.cfg.max_recipients {
            return Err(CommandRefusal::RegistryFull);
        }
        self.recipients.upsert(recipient.clone(), cell);
        self.events.push(Event::RecipientRegistered(recipient));
        Ok(())
    }

    /// GDPR erasure of a provider: it posts no more; its surplus stay and
    /// run their course (the food still exists). False if unknown.
    pub fn erase_provider(&mut self, id: &ProviderId) -> bool {
        if !self.providers.remove(id) {
            return false;
        }
        // Its surplus run on, without the provider's free text.
        for s in self.live.values_mut() {
            if s.posted.provider_id == *id && !s.posted.description.is_empty() {
                s.posted.description.clear();
            }
        }
        self.events.push(Event::SubjectErased {
            subject: Subject::Provider(*id),
        });
        true
    }

    /// GDPR erasure of a recipient: never matched, offered or a fallback
    /// again; offers pending with it are declined so the food is rematched
    /// at once; claims it holds stay its to pick up and deliver. False if
    /// unknown.
    pub fn erase_recipient(&mut self, now: Timestamp, id: &RecipientId) -> bool {
        if !self.recipients.contains(id) {
            return false;
        }
        self.events.push(Event::SubjectErased {
            subject: Subject::Recipient(*id),
        });
        self.forget_recipient(now, id)
    }

    /// A neighbour's recipient its owner erased: matched and offered no
    /// more (offers pending with it are declined, so the food is rematched),
    /// without an event of this edge's saying so. False if unknown.
    pub fn forget_recipient(&mut self, now: Timestamp, id: &RecipientId) -> bool {
        if !self.recipients.retire(id) {
            return false;
        }
        let offered: Vec<SurplusId> = self
            .live
            .values()
            .filter(|s| s.offer.as_ref().is_some_and(|o| o.recipient_id == *id))
            .map(|s| s.posted.id)
            .collect();
        for s in offered {
            // Cannot fail for a pending offer to `id` at `now` other than by
            // expiry, which the next tick handles.
            let _ = self.decline(now, s, *id);
        }
        true
    }

    /// A recipient another edge owns (a neighbouring cell's, from the hub):
    /// matchable here, but its registration is not this edge's event.
    pub fn import_recipient(
        &mut self,
        recipient: Recipient,
        cell: u64,
    ) -> Result<(), CommandRefusal> {
        if self.recipients.len() >= self.cfg.max_recipients
            && !self.recipients.contains(&recipient.id)
        {
            return Err(CommandRefusal::RegistryFull);
        }
        self.recipients.upsert(recipient, cell);
        Ok(())
    }

    /// A new surplus: stored, then offered to the best candidate at once (or
    /// sent to the dead-letter queue if there is none).
    /// `post` with routed travel times for some recipients (for this first
    /// match only; rematches estimate from the distance).
    pub fn post_with(
        &mut self,
        now: Timestamp,
        posted: SurplusPosted,
        hints: matching::TravelHints,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        if !self.providers.contains(&posted.provider_id) {
            return Err(CommandRefusal::UnknownProvider);
        }
        if self.live.len() >= self.cfg.max_live_surplus {
            return Err(CommandRefusal::Saturated);
        }
        // Validated against the handler's clock; the writer's may be later.
        if posted.expires_at <= now {
            return Err(CommandRefusal::ExpiryInPast);
        }
        let id = posted.id;
        debug_assert!(!self.live.contains_key(&id), "surplus ids are fresh");
        self.events.push(Event::SurplusPosted(posted.clone()));
        let mut s = LiveSurplus::new(posted, now);
        self.hints = hints;
        self.match_or_dead_letter(now, &mut s);
        self.hints = matching::TravelHints::default();
        self.put(s);
        Ok(&self.live[&id])
    }

    pub fn post(
        &mut self,
        now: Timestamp,
        posted: SurplusPosted,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        self.post_with(now, posted, matching::TravelHints::default())
    }

    pub fn claim(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        recipient_id: RecipientId,
        version: u64,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        if !self.recipients.contains(&recipient_id) {
            return Err(CommandRefusal::UnknownRecipient);
        }
        self.check_open_claims(&recipient_id)?;
        let day = self.day(now);
        self.with_surplus(now, id, |engine, s| {
            let (superseded, event) = s.claim(now, recipient_id, version, day)?;
            if let Some(offer) = superseded {
                engine.release(&offer, s.posted.quantity);
            }
            if let Some(r) = engine.recipients.get_mut(&recipient_id) {
                r.reserve(day, s.posted.quantity);
                r.open_claims += 1;
            }
            engine.events.push(event);
            Ok(())
        })
    }

    pub fn accept(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        recipient_id: RecipientId,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        self.check_open_claims(&recipient_id)?;
        self.with_surplus(now, id, |engine, s| {
            let (_offer, event) = s.accept(now, recipient_id)?;
            if let Some(r) = engine.recipients.get_mut(&recipient_id) {
                r.stats.offers_accepted += 1;
                r.open_claims += 1;
            }
            engine.events.push(event);
            Ok(())
        })
    }

    /// A recipient may not hoard: at most `max_open_claims` uncollected claims.
    fn check_open_claims(&self, r: &RecipientId) -> Result<(), CommandRefusal> {
        match self.recipients.get(r) {
            Some(e) if e.open_claims >= self.cfg.max_open_claims => {
                Err(CommandRefusal::TooManyOpenClaims)
            }
            _ => Ok(()),
        }
    }

    /// A claim ends (picked up, or expired uncollected).
    fn close_claim(&mut self, r: Option<RecipientId>) {
        if let Some(e) = r.and_then(|r| self.recipients.get_mut(&r)) {
            e.open_claims = e.open_claims.saturating_sub(1);
        }
    }

    /// The offered recipient declines: the surplus is rematched at once.
    pub fn decline(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        recipient_id: RecipientId,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        self.with_surplus(now, id, |engine, s| {
            if s.is_expired_at(now) {
                return Err(Refusal::Expired.into());
            }
            let (offer, event) = s.fail_offer(now, recipient_id, false)?;
            engine.release(&offer, s.posted.quantity);
            engine.events.push(event);
            engine.after_failed_offer(now, s);
            Ok(())
        })
    }

    pub fn pick_up(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        recipient_id: RecipientId,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        self.with_surplus(now, id, |engine, s| {
            engine.events.push(s.pick_up(now, recipient_id)?);
            engine.close_claim(Some(recipient_id));
            Ok(())
        })
    }

    pub fn deliver(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        recipient_id: RecipientId,
        delivered: Mass,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        self.with_surplus(now, id, |engine, s| {
            engine.events.push(s.deliver(now, recipient_id, delivered)?);
            Ok(())
        })
    }

    /// An operator's retry of a dead-lettered surplus: matched again now, as
    /// a scheduled retry would be (nobody offered it before is offered it
    /// again); back into the queue, or to the fallback, if no one fits.
    pub fn dlq_retry(
        &mut self,
        now: Timestamp,
        id: SurplusId,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        self.with_surplus(now, id, |engine, s| {
            if s.is_expired_at(now) {
                return Err(Refusal::Expired.into());
            }
            if s.status != SurplusStatus::DeadLettered {
                return Err(Refusal::InvalidTransition.into());
            }
            s.dlq_retry_at = None;
            engine.match_or_dead_letter(now, s);
            Ok(())
        })
    }

    /// An operator hands a dead-lettered surplus to a recipient they chose:
    /// it is offered to them (radius, food type and daily capacity are the
    /// operator's call), who accepts or declines as with any offer.
    pub fn dlq_resolve(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        recipient_id: RecipientId,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        if !self.recipients.contains(&recipient_id) {
            return Err(CommandRefusal::UnknownRecipient);
        }
        let ack = Duration::from_secs(i64::from(self.cfg.lifecycle.ack_timeout_secs.max(1)));
        let day = self.day(now);
        self.with_surplus(now, id, |engine, s| {
            if s.is_expired_at(now) {
                return Err(Refusal::Expired.into());
            }
            if s.status != SurplusStatus::DeadLettered {
                return Err(Refusal::InvalidTransition.into());
            }
            let event = s.offer(now, recipient_id, now + ack, false, day)?;
            if let Some(r) = engine.recipients.get_mut(&recipient_id) {
                r.reserve(day, s.posted.quantity);
                r.stats.offers_made += 1;
            }
            engine.events.push(event);
            Ok(())
        })
    }

    /// Fires every timer due at `now` (up to `max_timers_per_tick`): expiry,
    /// ACK timeouts, DLQ retries. Returns how many fired.
    pub fn tick(&mut self, now: Timestamp) -> usize {
        let mut fired = 0;
        while fired < self.cfg.max_timers_per_tick {
            let Some(&(due, id)) = self.timers.first() else {
                break;
            };
            if due > now {
                break;
            }
            fired += 1;
            let Some(mut s) = self.take(id, Some(due)) else {
                debug_assert!(false, "a timer outlived its surplus");
                continue;
            };
            self.fire(now, &mut s);
            debug_assert!(
                s.next_deadline().is_none_or(|t| t > now),
                "a fired timer must move its deadline forward"
            );
            self.put(s);
        }
        fired
    }

    fn fire(&mut self, now: Timestamp, s: &mut LiveSurplus) {
        let collectable = s.status.is_unclaimed() || s.status == SurplusStatus::Claimed;
        if collectable && s.is_expired_at(now) {
            let uncollected_claim = s.claimed_by.zip(s.claimed_day);
            if let Ok((cancelled, event)) = s.expire(now) {
                if let Some(offer) = cancelled {
                    self.release(&offer, s.posted.quantity);
                }
                // A claim nobody collected gives its capacity back.
                if let Some((r, day)) = uncollected_claim
                    && let Some(e) = self.recipients.get_mut(&r)
                {
                    e.release(day, s.posted.quantity);
                    e.open_claims = e.open_claims.saturating_sub(1);
                }
                self.events.push(event);
            }
            return;
        }
        match (s.status, s.offer) {
            (SurplusStatus::Offered, Some(offer)) if now >= offer.ack_deadline => {
                if let Ok((offer, event)) = s.fail_offer(now, offer.recipient_id, true) {
                    self.release(&offer, s.posted.quantity);
                    self.events.push(event);
                    self.after_failed_offer(now, s);
                }
            }
            (SurplusStatus::DeadLettered, _) if s.dlq_retry_at.is_some_and(|t| t <= now) => {
                s.dlq_attempts += 1;
                s.dlq_retry_at = None;
                self.match_or_dead_letter(now, s);
            }
            _ => {}
        }
    }

    /// After a decline or timeout (the surplus is `available` again).
    fn after_failed_offer(&mut self, now: Timestamp, s: &mut LiveSurplus) {
        debug_assert_eq!(s.status, SurplusStatus::Available);
        if s.fallback_tried {
            self.dead_letter(now, s, DeadLetterReason::FallbackFailed, None);
            self.alerts.push(Alert::NoFallback {
                surplus_id: s.posted.id,
            });
        } else if s.dlq_attempts > 0 || s.failed_offers >= self.cfg.lifecycle.max_offers {
            self.enter_dlq(now, s, DeadLetterReason::OffersExhausted);
        } else {
            self.match_or_dead_letter(now, s);
        }
    }

    fn match_or_dead_letter(&mut self, now: Timestamp, s: &mut LiveSurplus) {
        let facts = SurplusFacts {
            location: s.posted.location,
            food_type: s.posted.food_type,
            quantity: s.posted.quantity,
            expires_at: s.posted.expires_at,
        };
        let day = self.day(now);
        let search = matching::best_with(
            &self.recipients,
            &facts,
            now,
            day,
            &s.offered_to,
            &self.cfg.matching,
            &self.hints,
        );
        self.scan_limit_hits += u32::from(search.scan_limit_hit);
        match search.best {
            Some(c) => self.offer(now, s, c.recipient_id, false),
            None => self.enter_dlq(now, s, DeadLetterReason::NoCandidate),
        }
    }

    /// Schedules the next DLQ retry, or goes to the fallback when retries are
    /// spent or the next retry would come after expiry.
    fn enter_dlq(&mut self, now: Timestamp, s: &mut LiveSurplus, reason: DeadLetterReason) {
        let l = &self.cfg.lifecycle;
        if s.dlq_attempts >= l.dlq_max_retries {
            return self.fallback(now, s);
        }
        let backoff = Duration::from_secs(i64::from(l.dlq_backoff_base_secs))
            .saturating_mul(1i64 << s.dlq_attempts.min(30));
        let retry_at = now + backoff;
        if retry_at >= s.posted.expires_at {
            return self.fallback(now, s);
        }
        self.dead_letter(now, s, reason, Some(retry_at));
    }

    /// The cell's general food bank, if it takes the food, was not offered it
    /// before and can get there before it expires (radius and daily capacity
    /// do not apply to the last resort).
    fn fallback(&mut self, now: Timestamp, s: &mut LiveSurplus) {
        let speed = self.cfg.matching.speed_kmh;
        let candidate = self
            .recipients
            .fallback_for_cell(s.posted.cell)
            .filter(|e| {
                let km = e.recipient.location.haversine_km(&s.posted.location);
                e.recipient.accepted_food_types.contains(s.posted.food_type)
                    && !s.offered_to.contains(&e.recipient.id)
                    && now + matching::travel_time(km, speed) < s.posted.expires_at
            })
            .map(|e| e.recipient.id);
        match candidate {
            Some(recipient_id) if !s.fallback_tried => {
                self.offer(now, s, recipient_id, true);
                self.alerts.push(Alert::FallbackOffered {
                    surplus_id: s.posted.id,
                    recipient_id,
                });
            }
            _ => {
                self.dead_letter(now, s, DeadLetterReason::FallbackFailed, None);
                self.alerts.push(Alert::NoFallback {
                    surplus_id: s.posted.id,
                });
            }
        }
    }

    fn offer(
        &mut self,
        now: Timestamp,
        s: &mut LiveSurplus,
        recipient_id: RecipientId,
        fallback: bool,
    ) {
        let ack = Duration::from_secs(i64::from(self.cfg.lifecycle.ack_timeout_secs.max(1)));
        let day = self.day(now);
        match s.offer(now, recipient_id, now + ack, fallback, day) {
            Ok(event) => {
                if let Some(r) = self.recipients.get_mut(&recipient_id) {
                    r.reserve(day, s.posted.quantity);
                    r.stats.offers_made += 1;
                }
                self.events.push(event);
            }
            Err(refusal) => debug_assert!(
                false,
                "matching offered an infeasible recipient: {refusal:?}"
            ),
        }
    }

    fn dead_letter(
        &mut self,
        now: Timestamp,
        s: &mut LiveSurplus,
        reason: DeadLetterReason,
        retry_at: Option<Timestamp>,
    ) {
        match s.dead_letter(now, reason, retry_at) {
            Ok(event) => self.events.push(event),
            Err(refusal) => debug_assert!(false, "dead-lettering refused: {refusal:?}"),
        }
    }

    fn release(&mut self, offer: &PendingOffer, quantity: Mass) {
        if let Some(r) = self.recipients.get_mut(&offer.recipient_id) {
            r.release(offer.reserved_day, quantity);
        }
    }

    /// Runs `f` on a live surplus; on refusal nothing changes (the surplus is
    /// restored from a copy taken before `f`, and no event is kept).
    fn with_surplus(
        &mut self,
        now: Timestamp,
        id: SurplusId,
        f: impl FnOnce(&mut Engine, &mut LiveSurplus) -> Result<(), CommandRefusal>,
    ) -> Result<&LiveSurplus, CommandRefusal> {
        let deadline = self
            .live
            .get(&id)
            .ok_or(CommandRefusal::NotLive)?
            .next_deadline();
        let mut s = self.take(id, deadline).ok_or(CommandRefusal::NotLive)?;
        // A timer due now fires first, so the command sees the surplus as it
        // is (expired, rematched); those changes stand even if it is refused.
        let fired = deadline.is_some_and(|t| t <= now);
        if fired {
            self.fire(now, &mut s);
        }
        let events_before = self.events.len();
        let original = s.clone();
        match f(self, &mut s) {
            Ok(()) => {
                self.put(s);
                Ok(self.surplus_or_retired(&id).expect("just put back"))
            }
            Err(refusal) => {
                debug_assert_eq!(self.events.len(), events_before, "a refusal emits nothing");
                self.events.truncate(events_before);
                if fired {
                    self.put(original);
                } else {
                    self.put_untouched(original);
                }
                Err(refusal)
            }
        }
    }

    /// Removes a live surplus (and its timer) for modification.
    fn take(&mut self, id: SurplusId, deadline: Option<Timestamp>) -> Option<LiveSurplus> {
        if let Some(t) = deadline {
            self.timers.remove(&(t, id));
        }
        self.live.remove(&id)
    }

    /// Puts a modified surplus back: live with its new timer, or retired
    /// (its final row is written at the next drain, then it leaves memory).
    fn put(&mut self, s: LiveSurplus) {
        let id = s.posted.id;
        self.touched.push(id);
        if stays_live(&s) {
            if let Some(t) = s.next_deadline() {
                self.timers.insert((t, id));
            }
            self.live.insert(id, s);
        } else {
            self.retired.insert(id, s);
        }
    }

    /// Puts back a surplus nothing changed (a picked-up one simply leaves).
    fn put_untouched(&mut self, s: LiveSurplus) {
        if !stays_live(&s) {
            return;
        }
        if let Some(t) = s.next_deadline() {
            self.timers.insert((t, s.posted.id));
        }
        self.live.insert(s.posted.id, s);
    }

    /// Checks the engine's invariants; for tests and debug assertions.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, s) in &self.live {
            if !stays_live(s) {
                return Err(format!("{id}: {:?} surplus still in memory", s.status));
            }
            if let Some(t) = s.next_deadline()
                && !self.timers.contains(&(t, *id))
            {
                return Err(format!("{id}: missing timer at {t:?}"));
            }
            if (s.status == SurplusStatus::Offered) != s.offer.is_some() {
                return Err(format!(
                    "{id}: status {:?} with offer {:?}",
                    s.status, s.offer
                ));
            }
            let mut seen = HashSet::new();
            if !s.offered_to.iter().all(|r| seen.insert(*r)) {
                return Err(format!("{id}: a recipient was offered twice"));
            }
            if s.status.is_unclaimed() == s.claimed_by.is_some() {
                return Err(format!(
                    "{id}: status {:?} with claimant {:?}",
                    s.status, s.claimed_by
                ));
            }
        }
        let mut open: HashMap<RecipientId, u32> = HashMap::new();
        for s in self
            .live
            .values()
            .filter(|s| s.status == SurplusStatus::Claimed)
        {
            if let Some(r) = s.claimed_by {
                *open.entry(r).or_default() += 1;
            }
        }
        for e in self.recipients.iter() {
            let want = open.get(&e.recipient.id).copied().unwrap_or(0);
            if e.open_claims != want {
                return Err(format!(
                    "{}: {} open claims counted, {want} live",
                    e.recipient.id, e.open_claims
                ));
            }
        }
        let expected: usize = self
            .live
            .values()
            .filter(|s| s.next_deadline().is_some())
            .count();
        if expected != self.timers.len() {
            return Err(format!(
                "{} timers for {expected} deadlines",
                self.timers.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
