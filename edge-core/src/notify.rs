//! Notifications as an I/O-free core: which committed events someone who is
//! not looking at a screen must hear of ([`notices`]), and the delivery
//! schedule of each ([`Dispatcher`]) — attempts, jittered exponential
//! backoff, a deadline, a circuit breaker per channel, bounded queue and
//! concurrency, and the durable cursor the shell stores.
//!
//! The shell reads committed outbox events in order, asks [`notices`] what
//! each one means, looks up the channels of the people concerned, and
//! [`Dispatcher::admit`]s the event (with no deliveries if nobody is to be
//! told). It sends what [`Dispatcher::poll`] hands out and reports each
//! outcome with [`Dispatcher::on_outcome`]. [`Dispatcher::cursor`] is the
//! last outbox seq whose deliveries are all finished (delivered, refused for
//! good, or past their deadline): after a crash the shell starts reading
//! after it, so a delivery is attempted at least once, and a receiver drops
//! a repeat by its [`DeliveryId`].
//!
//! ```text
//!  admit ──► queued ──(due, room in flight, breaker admits)──► in flight
//!  in flight ──(2xx)──► delivered            in flight ──(4xx)──► refused
//!  in flight ──(error, timeout, 5xx, 429)──► queued again after a backoff,
//!            or given up when the next attempt would miss the deadline
//!  queued ──(the deadline passes)──► expired
//! ```

use std::collections::{BTreeMap, HashMap};

use sync_protocol::event::{DeadLetterReason, Event};
use sync_protocol::{Duration, RecipientId, SurplusId, Timestamp};

use crate::breaker::{Breaker, BreakerConfig, BreakerState, Permit};

/// What a committed event means to someone who must hear of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An offer a recipient should answer before `ack_deadline`.
    Offer {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
        ack_deadline: Timestamp,
        attempt: u32,
        fallback: bool,
    },
    /// Something the on-call engineer must hear of.
    Alert(AlertNotice),
}

/// An alert for the on-call engineer, and the surplus it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertNotice {
    pub kind: AlertKind,
    pub surplus_id: SurplusId,
}

/// The alerts an edge raises from its committed events. Their names are the
/// `alertname`s of `deploy/prometheus/alerts.yml`, so one routing tree in
/// Alertmanager (or PagerDuty/Opsgenie behind it) takes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The dead-letter queue gave up; the cell's fallback recipient was
    /// offered the surplus.
    FallbackOffered,
    /// The dead-letter queue gave up and no fallback could take it: food is
    /// wasted unless a person steps in.
    NoFallback,
}

impl AlertKind {
    pub fn alertname(self) -> &'static str {
        match self {
            AlertKind::FallbackOffered => "PahlawanFallbackOffered",
            AlertKind::NoFallback => "PahlawanSurplusNeedsAHuman",
        }
    }

    /// `page` wakes someone; `ticket` waits for working hours (the
    /// severities of `deploy/prometheus/alerts.yml`'s rules of the same
    /// names).
    pub fn severity(self) -> &'static str {
        match self {
            AlertKind::FallbackOffered => "ticket",
            AlertKind::NoFallback => "page",
        }
    }
}

/// What one committed event means to people who are not watching: an offer
/// to its recipient, and for the dead-letter queue's last resorts an alert
/// to the on-call engineer. Most events mean nothing to anyone outside.
pub fn notices(event: &Event) -> Vec<Notice> {
    match *event {
        Event::OfferMade {
            surplus_id,
            recipient_id,
            ack_deadline,
            attempt,
            fallback,
            ..
        } => {
            let offer = Notice::Offer {
                surplus_id,
                recipient_id,
                ack_deadline,
                attempt,
                fallback,
            };
            if fallback {
                let alert = Notice::Alert(AlertNotice {
                    kind: AlertKind::FallbackOffered,
                    surplus_id,
                });
                vec![offer, alert]
            } else {
                vec![offer]
            }
        }
        Event::DeadLettered {
            surplus_id,
            reason: DeadLetterReason::FallbackFailed,
            ..
        } => vec![Notice::Alert(AlertNotice {
            kind: AlertKind::NoFallback,
            surplus_id,
        })],
        _ => Vec::new(),
    }
}

/// A place a notification goes: one registered channel of a recipient, or
/// the on-call webhook ([`ChannelKey::ON_CALL`]). The shell numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey(pub u64);

impl ChannelKey {
    /// The configured on-call webhook.
    pub const ON_CALL: ChannelKey = ChannelKey(0);
}

/// One notification to one channel. Ordered by outbox seq first, so the
/// queue's first entry is the oldest unfinished event. Its text form
/// (`<seq>.<channel>`, prefixed by the shell with the edge's id) is the
/// idempotency id every attempt carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub seq: u64,
    pub channel: ChannelKey,
}

/// One delivery to admit: where it goes and when it stops mattering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub channel: ChannelKey,
    /// After this nobody can act on it (an offer's ACK deadline).
    pub deadline: Timestamp,
}

/// Bounds and timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchConfig {
    /// Deliveries waiting or in flight at most; the shell reads no further
    /// events while the queue is full.
    pub max_queue: usize,
    /// Attempts in flight at once.
    pub max_in_flight: usize,
    /// The first retry's wait; it doubles per attempt up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// One breaker per channel.
    pub breaker: BreakerConfig,
}

impl Default for DispatchConfig {
    fn default() -> DispatchConfig {
        DispatchConfig {
            max_queue: 10_000,
            max_in_flight: 32,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            breaker: BreakerConfig {
                failure_threshold: 5,
                open_for: Duration::from_secs(30),
            },
        }
    }
}

/// Leave to make one attempt: send it, then hand it back with the outcome.
#[must_use = "report the attempt's outcome with Dispatcher::on_outcome"]
#[derive(Debug)]
pub struct Attempt {
    pub id: DeliveryId,
    /// 1 for the first attempt.
    pub number: u32,
    pub deadline: Timestamp,
    permit: Permit,
}

/// How one attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it (2xx): the delivery ACK.
    Delivered,
    /// The receiver answered that it never will (4xx other than 408 and
    /// 429): no retry, and the channel itself is not failing.
    Refused,
    /// No answer, a timeout, 5xx, 408 or 429: tried again later.
    Failed,
}

/// How a delivery ended, for the shell's counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Delivered {
        id: DeliveryId,
        attempts: u32,
    },
    Refused {
        id: DeliveryId,
        attempts: u32,
    },
    /// Its deadline passed (or the next attempt would have come after it).
    Expired {
        id: DeliveryId,
        attempts: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: Timestamp,
    attempts: u32,
    next_at: Timestamp,
    in_flight: bool,
}

/// The delivery schedule: every delivery not yet finished, by id.
#[derive(Debug)]
pub struct Dispatcher {
    cfg: DispatchConfig,
    queue: BTreeMap<DeliveryId, Entry>,
    breakers: HashMap<ChannelKey, Breaker>,
    in_flight: usize,
    /// The last outbox seq admitted (every seq up to it was admitted).
    admitted: u64,
    finished: Vec<Finished>,
    /// Attempts a breaker held back.
    pub breaker_refusals: u64,
}

impl Dispatcher {
    /// A dispatcher that starts after outbox seq `cursor` (the stored one).
    pub fn new(cfg: DispatchConfig, cursor: u64) -> Dispatcher {
        Dispatcher {
            cfg: DispatchConfig {
                max_queue: cfg.max_queue.max(1),
                max_in_flight: cfg.max_in_flight.max(1),
                ..cfg
            },
            queue: BTreeMap::new(),
            breakers: HashMap::new(),
            in_flight: 0,
            admitted: cursor,
            finished: Vec::new(),
            breaker_refusals: 0,
        }
    }

    /// The last outbox seq admitted; the shell reads from the one after.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// Whether another event may be admitted (the queue is below its bound).
    pub fn has_room(&self) -> bool {
        self.queue.len() < self.cfg.max_queue
    }

    /// Deliveries waiting or in flight.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Admits outbox event `seq` (after [`Self::admitted`]) with its
    /// deliveries (none if nobody is to be told). A delivery whose deadline
    /// has passed finishes as expired at once: a restart after a long stop
    /// does not tell people of offers they can no longer take. Seqs skipped
    /// are events that are gone (retention deleted them while the
    /// dispatcher was off): nothing to tell of them. A seq not after
    /// [`Self::admitted`] was admitted already and is ignored.
    pub fn admit(&mut self, now: Timestamp, seq: u64, deliveries: &[Planned]) {
        if seq <= self.admitted {
            return;
        }
        self.admitted = seq;
        for p in deliveries {
            let id = DeliveryId {
                seq,
                channel: p.channel,
            };
            if p.deadline <= now {
                self.finished.push(Finished::Expired { id, attempts: 0 });
                continue;
            }
            self.queue.entry(id).or_insert(Entry {
                deadline: p.deadline,
                attempts: 0,
                next_at: now,
                in_flight: false,
            });
        }
    }

    /// Attempts due now, as many as the in-flight bound and each channel's
    /// breaker allow, oldest event first. Deliveries past their deadline
    /// finish as expired.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Attempt> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (id, e) in self.queue.iter_mut() {
            if e.in_flight {
                continue;
            }
            if e.deadline <= now {
                expired.push((*id, e.attempts));
                continue;
            }
            if e.next_at > now || self.in_flight >= self.cfg.max_in_flight {
                continue;
            }
            let cfg = self.cfg.breaker;
            let breaker = self
                .breakers
                .entry(id.channel)
                .or_insert_with(|| Breaker::new(cfg));
            let Some(permit) = breaker.try_acquire(now) else {
                // Asked again when the breaker may let a probe through.
                self.breaker_refusals += 1;
                e.next_at = now + cfg.open_for;
                continue;
            };
            e.in_flight = true;
            e.attempts += 1;
            self.in_flight += 1;
            out.push(Attempt {
                id: *id,
                number: e.attempts,
                deadline: e.deadline,
                permit,
            });
        }
        for (id, attempts) in expired {
            self.queue.remove(&id);
            self.finished.push(Finished::Expired { id, attempts });
        }
        out
    }

    /// An attempt's outcome. `jitter` is a random value (the core has no
    /// randomness of its own): the wait before a retry is drawn from the
    /// upper half of the doubled backoff, so receivers that come back are
    /// not hit by every sender in the same instant.
    pub fn on_outcome(&mut self, now: Timestamp, attempt: Attempt, outcome: Outcome, jitter: u64) {
        let Attempt {
            id, number, permit, ..
        } = attempt;
        self.in_flight = self.in_flight.saturating_sub(1);
        let cfg = self.cfg.breaker;
        let breaker = self
            .breakers
            .entry(id.channel)
            .or_insert_with(|| Breaker::new(cfg));
        match outcome {
            Outcome::Delivered | Outcome::Refused => breaker.on_success(now, permit),
            Outcome::Failed => breaker.on_failure(now, permit),
        }
        if breaker.state(now) == BreakerState::Closed && breaker.consecutive_failures() == 0 {
            // Nothing to remember of a healthy channel: the map stays as
            // small as the set of failing channels.
            self.breakers.remove(&id.channel);
        }
        let retry_at = now + self.backoff(number, jitter);
        let Some(e) = self.queue.get_mut(&id) else {
            return;
        };
        e.in_flight = false;
        match outcome {
            Outcome::Delivered => {
                self.queue.remove(&id);
                self.finished.push(Finished::Delivered {
                    id,
                    attempts: number,
                });
            }
            Outcome::Refused => {
                self.queue.remove(&id);
                self.finished.push(Finished::Refused {
                    id,
                    attempts: number,
                });
            }
            Outcome::Failed => {
                if retry_at >= e.deadline {
                    self.queue.remove(&id);
                    self.finished.push(Finished::Expired {
                        id,
                        attempts: number,
                    });
                } else {
                    e.next_at = retry_at;
                }
            }
        }
    }

    /// The wait after failed attempt `number` (1-based): `min · 2^(n−1)`
    /// capped at `max`, then a point in its upper half picked by `jitter`.
    pub fn backoff(&self, number: u32, jitter: u64) -> Duration {
        let min = self.cfg.backoff_min.as_ms().max(1);
        let max = self.cfg.backoff_max.as_ms().max(min);
        let doubled = min.saturating_mul(1i64 << number.saturating_sub(1).min(30));
        let full = doubled.min(max);
        let half = full / 2;
        let spread = u64::try_from(full - half).unwrap_or(0) + 1;
        Duration::from_ms(half + i64::try_from(jitter % spread).unwrap_or(0))
    }

    /// When the next attempt or expiry is due, if anything waits.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.queue
            .values()
            .filter(|e| !e.in_flight)
            .map(|e| e.next_at.min(e.deadline))
            .min()
    }

    /// The last outbox seq all of whose deliveries are finished: what the
    /// shell stores, and reads after when it starts again.
    pub fn cursor(&self) -> u64 {
        match self.queue.keys().next() {
            Some(first) => first.seq - 1,
            None => self.admitted,
        }
    }

    /// Deliveries finished since the last call, in the order they finished.
    pub fn drain_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.finished)
    }

    /// Channels whose breaker is not closed now.
    pub fn open_breakers(&self, now: Timestamp) -> usize {
        self.breakers
            .values()
            .filter(|b| b.state(now) != BreakerState::Closed)
            .count()
    }
}

#[cfg(test)]
mod tests;
