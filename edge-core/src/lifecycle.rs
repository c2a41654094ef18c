//! One surplus's state machine:
//! `available → offered → claimed → picked_up → delivered`, plus `expired`
//! and `dead_lettered`. Each transition checks its precondition, bumps the
//! version and returns the event to commit; a refused transition is a
//! [`Refusal`] value and changes nothing. What to do *after* a failed offer
//! (rematch, dead-letter, fallback) is the engine's policy, not this file's.

use sync_protocol::{
    ClaimVia, DeadLetterReason, Event, Mass, Offer, RecipientId, Surplus, SurplusPosted,
    SurplusStatus, Timestamp,
};

/// The offer a surplus is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingOffer {
    pub recipient_id: RecipientId,
    pub made_at: Timestamp,
    pub ack_deadline: Timestamp,
    pub fallback: bool,
    /// The local day whose capacity the offer reserved.
    pub reserved_day: i64,
}

/// The live state of one surplus.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSurplus {
    pub posted: SurplusPosted,
    pub posted_at: Timestamp,
    pub status: SurplusStatus,
    pub version: u64,
    pub offer: Option<PendingOffer>,
    /// Everyone ever offered this surplus, in order: never offered twice.
    pub offered_to: Vec<RecipientId>,
    /// Offers declined or left unanswered.
    pub failed_offers: u32,
    /// Retries the dead-letter queue has made.
    pub dlq_attempts: u32,
    pub dlq_retry_at: Option<Timestamp>,
    pub fallback_tried: bool,
    pub claimed_by: Option<RecipientId>,
    pub claimed_at: Option<Timestamp>,
    /// The local day whose capacity the claim counts against.
    pub claimed_day: Option<i64>,
    pub delivered: Option<Mass>,
    pub updated_at: Timestamp,
}

/// Why a transition was refused. Expected business outcomes, not failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The surplus has expired (or its expiry time has passed).
    Expired,
    /// The caller read an older version.
    StaleVersion,
    /// Someone else already claimed it.
    AlreadyClaimed,
    /// There is no pending offer to this recipient.
    NoPendingOffer,
    /// The caller is not the recipient that claimed it.
    NotClaimant,
    /// The transition is not allowed from the current status.
    InvalidTransition,
    /// More delivered than was posted.
    DeliveredExceedsQuantity,
}

impl LiveSurplus {
    pub fn new(posted: SurplusPosted, now: Timestamp) -> LiveSurplus {
        LiveSurplus {
            posted,
            posted_at: now,
            status: SurplusStatus::Available,
            version: 1,
            offer: None,
            offered_to: Vec::new(),
            failed_offers: 0,
            dlq_attempts: 0,
            dlq_retry_at: None,
            fallback_tried: false,
            claimed_by: None,
            claimed_at: None,
            claimed_day: None,
            delivered: None,
            updated_at: now,
        }
    }

    /// The surplus as readers see it.
    pub fn snapshot(&self) -> Surplus {
        let p = &self.posted;
        Surplus {
            id: p.id,
            provider_id: p.provider_id,
            location: p.location,
            cell: p.cell,
            quantity: p.quantity,
            food_type: p.food_type,
            expires_at: p.expires_at,
            description: p.description.clone(),
            posted_at: self.posted_at,
            status: self.status,
            version: self.version,
            claimed_by: self.claimed_by,
            delivered: self.delivered,
            offer: self.offer.map(|o| Offer {
                recipient_id: o.recipient_id,
                expires_at: o.ack_deadline,
                fallback: o.fallback,
            }),
            updated_at: self.updated_at,
        }
    }

    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now >= self.posted.expires_at
    }

    /// The next instant at which time alone changes this surplus: expiry, an
    /// offer's ACK deadline, or a DLQ retry. A claimed surplus still expires
    /// if nobody collects it; once picked up or finished, time changes nothing.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.status == SurplusStatus::Claimed {
            return Some(self.posted.expires_at);
        }
        if !self.status.is_unclaimed() {
            return None;
        }
        let mut t = self.posted.expires_at;
        if let Some(o) = &self.offer {
            t = t.min(o.ack_deadline);
        }
        if let Some(r) = self.dlq_retry_at {
            t = t.min(r);
        }
        Some(t)
    }

    fn bump(&mut self, status: SurplusStatus, now: Timestamp) -> u64 {
        debug_assert!(
            allowed(self.status, status),
            "{:?} → {:?} is not a lifecycle transition",
            self.status,
            status
        );
        self.status = status;
        self.version += 1;
        self.updated_at = now;
        self.version
    }

    /// Offers the surplus to `recipient_id` until `ack_deadline`.
    pub fn offer(
        &mut self,
        now: Timestamp,
        recipient_id: RecipientId,
        ack_deadline: Timestamp,
        fallback: bool,
        reserved_day: i64,
    ) -> Result<Event, Refusal> {
        if self.is_expired_at(now) {
            return Err(Refusal::Expired);
        }
        if !matches!(
            self.status,
            SurplusStatus::Available | SurplusStatus::DeadLettered
        ) || self.offered_to.contains(&recipient_id)
        {
            return Err(Refusal::InvalidTransition);
        }
        self.offer = Some(PendingOffer {
            recipient_id,
            made_at: now,
            ack_deadline,
            fallback,
            reserved_day,
        });
        self.offered_to.push(recipient_id);
        self.dlq_retry_at = None;
        self.fallback_tried |= fallback;
        let version = self.bump(SurplusStatus::Offered, now);
        Ok(Event::OfferMade {
            surplus_id: self.posted.id,
            recipient_id,
            ack_deadline,
            attempt: self.offered_to.len() as u32,
            fallback,
            version,
        })
    }

    /// The offered recipient says no, or never answered (`timed_out`).
    /// Returns the failed offer with the event; the surplus is `available`.
    pub fn fail_offer(
        &mut self,
        now: Timestamp,
        recipient_id: RecipientId,
        timed_out: bool,
    ) -> Result<(PendingOffer, Event), Refusal> {
        let offer = self.pending_offer_to(recipient_id)?;
        if timed_out && now < offer.ack_deadline {
            return Err(Refusal::InvalidTransition);
        }
        self.offer = None;
        self.failed_offers += 1;
        let version = self.bump(SurplusStatus::Available, now);
        let (surplus_id, recipient_id) = (self.posted.id, offer.recipient_id);
        let event = if timed_out {
            Event::OfferTimedOut {
                surplus_id,
                recipient_id,
                version,
            }
        } else {
            Event::OfferDeclined {
                surplus_id,
                recipient_id,
                version,
            }
        };
        Ok((offer, event))
    }

    fn pending_offer_to(&self, recipient_id: RecipientId) -> Result<PendingOffer, Refusal> {
        match (&self.offer, self.status) {
            (Some(o), SurplusStatus::Offered) if o.recipient_id == recipient_id => Ok(*o),
            _ => Err(Refusal::NoPendingOffer),
        }
    }

    /// The offered recipient accepts. Returns the accepted offer.
    pub fn accept(
        &mut self,
        now: Timestamp,
        recipient_id: RecipientId,
    ) -> Result<(PendingOffer, Event), Refusal> {
        if self.is_expired_at(now) || self.status == SurplusStatus::Expired {
            return Err(Refusal::Expired);
        }
        let offer = self.pending_offer_to(recipient_id)?;
        if now >= offer.ack_deadline {
            return Err(Refusal::NoPendingOffer);
        }
        self.offer = None;
        self.set_claimed(now, recipient_id, offer.reserved_day);
        let version = self.bump(SurplusStatus::Claimed, now);
        Ok((
            offer,
            Event::Claimed {
                surplus_id: self.posted.id,
                recipient_id,
                via: ClaimVia::OfferAccepted,
                version,
            },
        ))
    }

    /// A direct claim with the version the recipient read: first commit wins.
    /// Returns the offer it superseded, if any.
    pub fn claim(
        &mut self,
        now: Timestamp,
        recipient_id: RecipientId,
        version: u64,
        day: i64,
    ) -> Result<(Option<PendingOffer>, Event), Refusal> {
        if self.status == SurplusStatus::Expired || self.is_expired_at(now) {
            return Err(Refusal::Expired);
        }
        if !self.status.is_unclaimed() {
            return Err(Refusal::AlreadyClaimed);
        }
        if version != self.version {
            return Err(Refusal::StaleVersion);
        }
        let superseded = self.offer.take();
        self.dlq_retry_at = None;
        self.set_claimed(now, recipient_id, day);
        let version = self.bump(SurplusStatus::Claimed, now);
        Ok((
            superseded,
            Event::Claimed {
                surplus_id: self.posted.id,
                recipient_id,
                via: ClaimVia::Direct,
                version,
            },
        ))
    }

    fn set_claimed(&mut self, now: Timestamp, recipient_id: RecipientId, day: i64) {
        debug_assert!(self.claimed_by.is_none(), "a surplus has one claimant");
        self.claimed_by = Some(recipient_id);
        self.claimed_at = Some(now);
        self.claimed_day = Some(day);
    }

    fn check_claimant(&self, recipient_id: RecipientId) -> Result<(), Refusal> {
        match self.claimed_by {
            Some(c) if c == recipient_id => Ok(()),
            Some(_) => Err(Refusal::NotClaimant),
            None => Err(Refusal::InvalidTransition),
        }
    }

    pub fn pick_up(&mut self, now: Timestamp, recipient_id: RecipientId) -> Result<Event, Refusal> {
        self.check_claimant(recipient_id)?;
        if self.status == SurplusStatus::Expired
            || (self.status == SurplusStatus::Claimed && self.is_expired_at(now))
        {
            return Err(Refusal::Expired);
        }
        if self.status != SurplusStatus::Claimed {
            return Err(Refusal::InvalidTransition);
        }
        let version = self.bump(SurplusStatus::PickedUp, now);
        Ok(Event::PickedUp {
            surplus_id: self.posted.id,
            recipient_id,
            version,
        })
    }

    pub fn deliver(
        &mut self,
        now: Timestamp,
        recipient_id: RecipientId,
        delivered: Mass,
    ) -> Result<Event, Refusal> {
        self.check_claimant(recipient_id)?;
        if self.status != SurplusStatus::PickedUp {
            return Err(Refusal::InvalidTransition);
        }
        if delivered > self.posted.quantity {
            return Err(Refusal::DeliveredExceedsQuantity);
        }
        self.delivered = Some(delivered);
        let version = self.bump(SurplusStatus::Delivered, now);
        Ok(Event::Delivered {
            surplus_id: self.posted.id,
            recipient_id,
            delivered,
            version,
        })
    }

    /// Expiry of a surplus nobody collected (unclaimed, or claimed and never
    /// picked up). Returns the pending offer it cancelled.
    pub fn expire(&mut self, now: Timestamp) -> Result<(Option<PendingOffer>, Event), Refusal> {
        let collectable = self.status.is_unclaimed() || self.status == SurplusStatus::Claimed;
        if !collectable || !self.is_expired_at(now) {
            return Err(Refusal::InvalidTransition);
        }
        let cancelled = self.offer.take();
        self.dlq_retry_at = None;
        let version = self.bump(SurplusStatus::Expired, now);
        Ok((
            cancelled,
            Event::Expired {
                surplus_id: self.posted.id,
                version,
            },
        ))
    }

    /// Into (or back into) the dead-letter queue.
    pub fn dead_letter(
        &mut self,
        now: Timestamp,
        reason: DeadLetterReason,
        retry_at: Option<Timestamp>,
    ) -> Result<Event, Refusal> {
        if !matches!(
            self.status,
            SurplusStatus::Available | SurplusStatus::DeadLettered
        ) {
            return Err(Refusal::InvalidTransition);
        }
        self.dlq_retry_at = retry_at;
        let version = self.bump(SurplusStatus::DeadLettered, now);
        Ok(Event::DeadLettered {
            surplus_id: self.posted.id,
            reason,
            dlq_attempts: self.dlq_attempts,
            retry_at,
            version,
        })
    }
}

/// The lifecycle's transition relation. Everything else is a bug.
pub fn allowed(from: SurplusStatus, to: SurplusStatus) -> bool {
    use SurplusStatus::*;
    matches!(
        (from, to),
        (Available, Offered | Claimed | Expired | DeadLettered)
            | (Offered, Available | Claimed | Expired)
            | (DeadLettered, Offered | Claimed | Expired | DeadLettered)
            | (Claimed, PickedUp | Expired)
            | (PickedUp, Delivered)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::{Duration, FoodType, GeoPoint, ProviderId, SurplusId};

    const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

    fn surplus() -> LiveSurplus {
        LiveSurplus::new(
            SurplusPosted {
                id: SurplusId::from_bytes([1; 16]),
                provider_id: ProviderId::from_bytes([2; 16]),
                location: GeoPoint::new(-6.2, 106.8).expect("valid"),
                cell: 1,
                quantity: Mass::from_grams(10_000),
                food_type: FoodType::Bakery,
                expires_at: T0 + Duration::from_mins(60),
                description: String::new(),
            },
            T0,
        )
    }

    fn rid(n: u8) -> RecipientId {
        RecipientId::from_bytes([n; 16])
    }

    fn mins(m: i64) -> Timestamp {
        T0 + Duration::from_mins(m)
    }

    #[test]
    fn the_happy_path_bumps_the_version_each_step() {
        let mut s = surplus();
        s.offer(T0, rid(1), mins(5), false, 0).expect("offer");
        s.accept(mins(1), rid(1)).expect("accept");
        s.pick_up(mins(10), rid(1)).expect("pick up");
        s.deliver(mins(20), rid(1), Mass::from_grams(9_000))
            .expect("deliver");
        assert_eq!(s.status, SurplusStatus::Delivered);
        assert_eq!(s.version, 5);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn refusals_change_nothing() {
        // (setup, attempt, expected refusal)
        type Step = fn(&mut LiveSurplus) -> Result<(), Refusal>;
        let table: Vec<(&str, Step, Refusal)> = vec![
            (
                "accept without offer",
                |s| s.accept(mins(1), rid(1)).map(drop),
                Refusal::NoPendingOffer,
            ),
            (
                "claim stale version",
                |s| s.claim(mins(1), rid(1), 0, 0).map(drop),
                Refusal::StaleVersion,
            ),
            (
                "claim after expiry",
                |s| s.claim(mins(60), rid(1), 1, 0).map(drop),
                Refusal::Expired,
            ),
            (
                "offer after expiry",
                |s| s.offer(mins(61), rid(1), mins(66), false, 0).map(drop),
                Refusal::Expired,
            ),
            (
                "pick up unclaimed",
                |s| s.pick_up(mins(1), rid(1)).map(drop),
                Refusal::InvalidTransition,
            ),
            (
                "deliver unclaimed",
                |s| s.deliver(mins(1), rid(1), Mass::ZERO).map(drop),
                Refusal::InvalidTransition,
            ),
            (
                "expire early",
                |s| s.expire(mins(59)).map(drop),
                Refusal::InvalidTransition,
            ),
            (
                "decline without offer",
                |s| s.fail_offer(mins(1), rid(1), false).map(drop),
                Refusal::NoPendingOffer,
            ),
        ];
        for (name, attempt, refusal) in table {
            let mut s = surplus();
            let before = s.clone();
            assert_eq!(attempt(&mut s), Err(refusal), "{name}");
            assert_eq!(s, before, "{name} changed the surplus");
        }
    }

    #[test]
    fn claimed_surplus_refuses_second_claimant_and_wrong_deliverer() {
        let mut s = surplus();
        s.claim(mins(1), rid(1), 1, 0).expect("first claim wins");
        let before = s.clone();
        assert_eq!(
            s.claim(mins(1), rid(2), 2, 0).map(drop),
            Err(Refusal::AlreadyClaimed)
        );
        assert_eq!(s.pick_up(mins(2), rid(2)), Err(Refusal::NotClaimant));
        assert_eq!(s, before);
        s.pick_up(mins(2), rid(1)).expect("claimant picks up");
        assert_eq!(
            s.deliver(mins(3), rid(1), Mass::from_grams(10_001)),
            Err(Refusal::DeliveredExceedsQuantity)
        );
    }

    #[test]
    fn a_recipient_is_never_offered_twice() {
        let mut s = surplus();
        s.offer(T0, rid(1), mins(5), false, 0).expect("offer");
        s.fail_offer(mins(1), rid(1), false).expect("decline");
        assert_eq!(
            s.offer(mins(1), rid(1), mins(6), false, 0),
            Err(Refusal::InvalidTransition)
        );
        s.offer(mins(1), rid(2), mins(6), false, 0)
            .expect("someone else");
        assert_eq!(s.offered_to, vec![rid(1), rid(2)]);
    }

    #[test]
    fn timeouts_only_at_the_deadline_and_deadlines_track_state() {
        let mut s = surplus();
        assert_eq!(s.next_deadline(), Some(mins(60)));
        s.offer(T0, rid(1), mins(5), false, 0).expect("offer");
        assert_eq!(s.next_deadline(), Some(mins(5)));
        assert_eq!(
            s.fail_offer(mins(4), rid(1), true).map(drop),
            Err(Refusal::InvalidTransition)
        );
        s.fail_offer(mins(5), rid(1), true).expect("timed out");
        s.dead_letter(mins(5), DeadLetterReason::NoCandidate, Some(mins(6)))
            .expect("dlq");
        assert_eq!(s.next_deadline(), Some(mins(6)));
        s.claim(mins(7), rid(3), s.version, 0)
            .expect("claim from the DLQ");
        assert_eq!(
            s.next_deadline(),
            Some(mins(60)),
            "a claim still expires if nobody collects it"
        );
        s.pick_up(mins(8), rid(3)).expect("collected");
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn an_uncollected_claim_expires_and_cannot_be_picked_up() {
        let mut s = surplus();
        s.claim(mins(1), rid(1), 1, 0).expect("claimed");
        assert_eq!(
            s.expire(mins(59)).map(drop),
            Err(Refusal::InvalidTransition)
        );
        s.expire(mins(60)).expect("expires uncollected");
        assert_eq!(s.status, SurplusStatus::Expired);
        assert_eq!(s.pick_up(mins(61), rid(1)), Err(Refusal::Expired));
    }

    #[test]
    fn accepting_after_the_ack_deadline_is_refused() {
        let mut s = surplus();
        s.offer(T0, rid(1), mins(5), false, 0).expect("offer");
        assert_eq!(
            s.accept(mins(5), rid(1)).map(drop),
            Err(Refusal::NoPendingOffer)
        );
    }

    #[test]
    fn the_transition_relation_has_no_exit_from_terminal_states() {
        for to in SurplusStatus::ALL {
            assert!(!allowed(SurplusStatus::Delivered, to));
            assert!(!allowed(SurplusStatus::Expired, to));
        }
    }
}
