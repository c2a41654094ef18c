//! The circuit breaker in front of the routing service: an I/O-free core that
//! is handed the current time and decides whether a call may go out.
//!
//! ```text
//!  Closed ──(failure_threshold consecutive failures)──► Open
//!  Open ──(open_for has elapsed since opening)──► HalfOpen (one probe may go)
//!  HalfOpen ──(the probe succeeds)──► Closed
//!  HalfOpen ──(the probe fails)──► Open (the timer starts again)
//! ```
//!
//! Every call that goes out holds a [`Permit`], and its outcome is reported
//! with that permit. A permit remembers the state it was admitted in (an
//! epoch bumped at every transition), so a late answer from before a
//! transition changes nothing: only the probe decides a half-open breaker,
//! and a success that started before the breaker opened does not close it.
//! A call that is cancelled (its caller went away) is reported with
//! [`Breaker::on_abandoned`]: it says nothing about the service, but an
//! abandoned probe frees the probe slot so the next call can probe.

use sync_protocol::{Duration, Timestamp};

/// Breaker parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker refuses every call before it lets one probe
    /// through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        }
    }
}

/// What the breaker does with the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are refused without I/O until `open_for` has elapsed.
    Open,
    /// One probe may go through (or is in flight); every other call is refused.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `routing_breaker_state` gauge: 0 closed, 1 open,
    /// 2 half-open.
    pub fn as_gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// Leave to make one call; hand it back with the call's outcome.
#[must_use = "report the call's outcome with on_success, on_failure or on_abandoned"]
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    epoch: u64,
    probe: bool,
}

impl Permit {
    /// This call is the half-open probe: its outcome decides the breaker.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { since: Timestamp },
    HalfOpen { probe_in_flight: bool },
}

/// The breaker. Not thread-safe by itself: the shell keeps it in a mutex and
/// never holds the lock across I/O.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Inner,
    /// Bumped at every transition; a permit from an older epoch is stale.
    epoch: u64,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        debug_assert!(config.failure_threshold >= 1, "validated by the config");
        Breaker {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                open_for: config.open_for.max(Duration::ZERO),
            },
            inner: Inner::Closed {
                consecutive_failures: 0,
            },
            epoch: 0,
        }
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The state as of `now`: an open breaker whose time is up reports
    /// half-open (it will let the next call through as the probe).
    pub fn state(&self, now: Timestamp) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { since } if self.open_elapsed(since, now) => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted so far (0 unless closed).
    pub fn consecutive_failures(&self) -> u32 {
        match self.inner {
            Inner::Closed {
                consecutive_failures,
            } => consecutive_failures,
            _ => 0,
        }
    }

    /// May a call go out now? `None` means refuse it without any I/O.
    pub fn try_acquire(&mut self, now: Timestamp) -> Option<Permit> {
        match self.inner {
            Inner::Closed { .. } => Some(self.permit(false)),
            Inner::Open { since } => {
                if now < since {
                    // The clock went backwards: count `open_for` from the
                    // earlier reading, so a clock step never keeps the
                    // breaker open for longer than `open_for` of clock time.
                    self.inner = Inner::Open { since: now };
                    return None;
                }
                if !self.open_elapsed(since, now) {
                    return None;
                }
                self.transition(Inner::HalfOpen {
                    probe_in_flight: true,
                });
                Some(self.permit(true))
            }
            Inner::HalfOpen {
                probe_in_flight: true,
            } => None,
            Inner::HalfOpen {
                probe_in_flight: false,
            } => {
                self.inner = Inner::HalfOpen {
                    probe_in_flight: true,
                };
                Some(self.permit(true))
            }
        }
    }

    /// The call holding `permit` succeeded.
    pub fn on_success(&mut self, _now: Timestamp, permit: Permit) {
        if self.is_stale(&permit) {
            return;
        }
        match self.inner {
            Inner::Closed { .. } => {
                self.inner = Inner::Closed {
                    consecutive_failures: 0,
                };
            }
            Inner::HalfOpen { probe_in_flight } => {
                debug_assert!(
                    permit.probe && probe_in_flight,
                    "only the probe is admitted"
                );
                self.transition(Inner::Closed {
                    consecutive_failures: 0,
                });
            }
            Inner::Open { .. } => debug_assert!(false, "an open breaker admits nothing"),
        }
    }

    /// The call holding `permit` failed (timeout, connection, status, body).
    pub fn on_failure(&mut self, now: Timestamp, permit: Permit) {
        if self.is_stale(&permit) {
            return;
        }
        match self.inner {
            Inner::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.transition(Inner::Open { since: now });
                } else {
                    self.inner = Inner::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            Inner::HalfOpen { probe_in_flight } => {
                debug_assert!(
                    permit.probe && probe_in_flight,
                    "only the probe is admitted"
                );
                self.transition(Inner::Open { since: now });
            }
            Inner::Open { .. } => debug_assert!(false, "an open breaker admits nothing"),
        }
    }

    /// The call holding `permit` was cancelled before it had an outcome.
    /// Nothing is learnt about the service; a cancelled probe frees the slot.
    pub fn on_abandoned(&mut self, permit: Permit) {
        if self.is_stale(&permit) {
            return;
        }
        if let Inner::HalfOpen {
            probe_in_flight: true,
        } = self.inner
        {
            debug_assert!(permit.probe, "only the probe is admitted");
            self.inner = Inner::HalfOpen {
                probe_in_flight: false,
            };
        }
    }

    fn open_elapsed(&self, since: Timestamp, now: Timestamp) -> bool {
        now.since(since) >= self.config.open_for
    }

    fn permit(&self, probe: bool) -> Permit {
        Permit {
            epoch: self.epoch,
            probe,
        }
    }

    fn is_stale(&self, permit: &Permit) -> bool {
        permit.epoch != self.epoch
    }

    fn transition(&mut self, to: Inner) {
        self.epoch = self.epoch.wrapping_add(1);
        self.inner = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Timestamp = Timestamp::from_unix_ms(1_800_000_000_000);

    fn at(ms: i64) -> Timestamp {
        T0 + Duration::from_ms(ms)
    }

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig::default())
    }

    /// Fails `n` calls at `now`.
    fn fail(b: &mut Breaker, now: Timestamp, n: u32) {
        for _ in 0..n {
            let p = b.try_acquire(now).expect("admitted");
            b.on_failure(now, p);
        }
    }

    /// Opens a default breaker at `at(0)`.
    fn opened() -> Breaker {
        let mut b = breaker();
        fail(&mut b, at(0), 3);
        assert_eq!(b.state(at(0)), BreakerState::Open);
        b
    }

    #[test]
    fn closed_admits_and_opens_after_threshold_consecutive_failures() {
        let mut b = breaker();
        assert_eq!(b.state(at(0)), BreakerState::Closed);
        fail(&mut b, at(0), 2);
        assert_eq!(b.state(at(0)), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 2);
        fail(&mut b, at(1), 1);
        assert_eq!(b.state(at(1)), BreakerState::Open);
        assert_eq!(b.try_acquire(at(1)), None);
    }

    #[test]
    fn a_success_in_closed_resets_the_count() {
        let mut b = breaker();
        fail(&mut b, at(0), 2);
        let p = b.try_acquire(at(0)).expect("closed admits");
        assert!(!p.is_probe());
        b.on_success(at(0), p);
        assert_eq!(b.consecutive_failures(), 0);
        fail(&mut b, at(0), 2);
        assert_eq!(
            b.state(at(0)),
            BreakerState::Closed,
            "2 after the reset, not 4"
        );
    }

    #[test]
    fn open_refuses_until_open_for_has_elapsed_then_lets_one_probe() {
        let mut b = opened();
        assert_eq!(b.try_acquire(at(9_999)), None);
        assert_eq!(b.state(at(9_999)), BreakerState::Open);
        assert_eq!(b.state(at(10_000)), BreakerState::HalfOpen);
        let probe = b.try_acquire(at(10_000)).expect("the probe");
        assert!(probe.is_probe());
        assert_eq!(b.try_acquire(at(10_000)), None, "one probe at a time");
        assert_eq!(b.try_acquire(at(60_000)), None, "however long it takes");
        assert_eq!(b.state(at(60_000)), BreakerState::HalfOpen);
        b.on_success(at(60_000), probe);
        assert_eq!(b.state(at(60_000)), BreakerState::Closed);
    }

    #[test]
    fn the_probe_succeeding_closes_with_a_fresh_count() {
        let mut b = opened();
        let probe = b.try_acquire(at(10_000)).expect("the probe");
        b.on_success(at(10_001), probe);
        assert_eq!(b.state(at(10_001)), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        fail(&mut b, at(10_002), 2);
        assert_eq!(b.state(at(10_002)), BreakerState::Closed);
    }

    #[test]
    fn the_probe_failing_reopens_and_restarts_the_timer() {
        let mut b = opened();
        let probe = b.try_acquire(at(10_000)).expect("the probe");
        b.on_failure(at(10_500), probe);
        assert_eq!(b.state(at(10_500)), BreakerState::Open);
        assert_eq!(
            b.try_acquire(at(20_499)),
            None,
            "timed from the probe's failure"
        );
        assert!(b.try_acquire(at(20_500)).expect("next probe").is_probe());
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let mut b = opened();
        let probe = b.try_acquire(at(10_000)).expect("the probe");
        b.on_abandoned(probe);
        assert_eq!(b.state(at(10_000)), BreakerState::HalfOpen);
        let again = b.try_acquire(at(10_000)).expect("a new probe");
        assert!(again.is_probe());
        assert_eq!(b.try_acquire(at(10_000)), None);
    }

    #[test]
    fn an_abandoned_call_in_closed_counts_nothing() {
        let mut b = breaker();
        fail(&mut b, at(0), 2);
        let p = b.try_acquire(at(0)).expect("closed admits");
        b.on_abandoned(p);
        assert_eq!(b.consecutive_failures(), 2);
        assert_eq!(b.state(at(0)), BreakerState::Closed);
    }

    #[test]
    fn late_outcomes_from_before_a_transition_change_nothing() {
        let mut b = breaker();
        let slow_ok = b.try_acquire(at(0)).expect("closed admits");
        let slow_fail = b.try_acquire(at(0)).expect("closed admits");
        fail(&mut b, at(0), 3);
        assert_eq!(b.state(at(0)), BreakerState::Open);
        // A success that started before the breaker opened does not close it.
        b.on_success(at(1), slow_ok);
        assert_eq!(b.state(at(1)), BreakerState::Open);
        let probe = b.try_acquire(at(10_000)).expect("the probe");
        b.on_success(at(10_000), probe);
        // A failure from the old closed period is not counted in the new one.
        b.on_failure(at(10_001), slow_fail);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn a_clock_stepping_back_never_keeps_it_open_longer_than_open_for() {
        let mut b = opened();
        // One hour back: the timer restarts from the new reading.
        let back = at(-3_600_000);
        assert_eq!(b.try_acquire(back), None);
        assert_eq!(b.try_acquire(back + Duration::from_ms(9_999)), None);
        assert!(b.try_acquire(back + Duration::from_secs(10)).is_some());
    }

    #[test]
    fn threshold_one_opens_on_the_first_failure() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(1),
        });
        fail(&mut b, at(0), 1);
        assert_eq!(b.state(at(0)), BreakerState::Open);
    }

    #[test]
    fn gauge_values() {
        assert_eq!(BreakerState::Closed.as_gauge(), 0.0);
        assert_eq!(BreakerState::Open.as_gauge(), 1.0);
        assert_eq!(BreakerState::HalfOpen.as_gauge(), 2.0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Advance(i64),
        Acquire,
        Succeed(usize),
        Fail(usize),
        Abandon(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Whole seconds and a millisecond either side, so the schedule
            // lands on the `open_for` boundary, not only near it.
            2 => prop_oneof![Just(1), Just(999), Just(1_000), Just(1_001), 0i64..6_000]
                .prop_map(Op::Advance),
            4 => Just(Op::Acquire),
            2 => any::<usize>().prop_map(Op::Succeed),
            3 => any::<usize>().prop_map(Op::Fail),
            1 => any::<usize>().prop_map(Op::Abandon),
        ]
    }

    /// A model of the documented behaviour, kept from outside the breaker:
    /// the permits still out (with the period they were admitted in), the
    /// consecutive failures the model counts, and when the breaker opened.
    struct Harness {
        b: Breaker,
        now: Timestamp,
        out: Vec<(Permit, u64)>,
        /// Bumped at every transition the harness observes.
        period: u64,
        failures: u32,
        opened_at: Option<Timestamp>,
    }

    enum Outcome {
        Success,
        Failure,
        Abandoned,
    }

    impl Harness {
        fn step(&mut self, op: Op) {
            let before = self.b.state(self.now);
            match op {
                Op::Advance(ms) => {
                    self.now = self.now + Duration::from_ms(ms);
                    let after = self.b.state(self.now);
                    if (before, after) == (BreakerState::Open, BreakerState::HalfOpen) {
                        let opened = self.opened_at.expect("it opened");
                        assert!(self.now.since(opened) >= self.b.config().open_for);
                    } else {
                        assert_eq!(before, after, "only time moved");
                    }
                }
                Op::Acquire => self.acquire(before),
                Op::Succeed(i) => self.report(i, Outcome::Success, before),
                Op::Fail(i) => self.report(i, Outcome::Failure, before),
                Op::Abandon(i) => self.report(i, Outcome::Abandoned, before),
            }
            let probes = self.out.iter().filter(|(p, _)| p.is_probe()).count();
            assert!(probes <= 1, "{probes} probes in flight");
            if probes == 1 {
                assert_eq!(self.b.state(self.now), BreakerState::HalfOpen);
            }
        }

        fn acquire(&mut self, before: BreakerState) {
            let permit = self.b.try_acquire(self.now);
            let probe_out = self.out.iter().any(|(p, _)| p.is_probe());
            match (&permit, before) {
                (Some(p), BreakerState::Closed) => assert!(!p.is_probe()),
                (None, BreakerState::Closed) => panic!("closed refused a call"),
                (Some(p), BreakerState::Open) => panic!("open admitted {p:?}"),
                (Some(p), BreakerState::HalfOpen) => {
                    assert!(p.is_probe(), "half-open admits only probes");
                    assert!(!probe_out, "a second probe");
                    let opened = self.opened_at.expect("it opened before half-open");
                    assert!(self.now.since(opened) >= self.b.config().open_for);
                }
                (None, BreakerState::HalfOpen) => assert!(probe_out, "no probe out, yet refused"),
                (None, BreakerState::Open) => {}
            }
            assert_eq!(self.b.state(self.now), before, "admitting changes no state");
            self.out.extend(permit.map(|p| (p, self.period)));
        }

        fn report(&mut self, i: usize, outcome: Outcome, before: BreakerState) {
            use BreakerState::{Closed, HalfOpen, Open};
            if self.out.is_empty() {
                return;
            }
            let (p, period) = self.out.swap_remove(i % self.out.len());
            let current = period == self.period;
            let probe = p.is_probe();
            match outcome {
                Outcome::Success => self.b.on_success(self.now, p),
                Outcome::Failure => self.b.on_failure(self.now, p),
                Outcome::Abandoned => self.b.on_abandoned(p),
            }
            let expected = match (current, outcome, before) {
                (false, _, s) | (true, Outcome::Abandoned, s) => s,
                (true, Outcome::Success, Closed) => {
                    self.failures = 0;
                    Closed
                }
                (true, Outcome::Failure, Closed) => {
                    self.failures += 1;
                    if self.failures >= self.b.config().failure_threshold {
                        Open
                    } else {
                        Closed
                    }
                }
                (true, Outcome::Success, HalfOpen) if probe => Closed,
                (true, Outcome::Failure, HalfOpen) if probe => Open,
                (true, _, s) => panic!("a current non-probe permit reported while {s:?}"),
            };
            let after = self.b.state(self.now);
            assert_eq!(after, expected, "{before:?} -> {after:?}");
            if after != before {
                self.period += 1;
                self.failures = 0;
                if after == Open {
                    self.opened_at = Some(self.now);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_schedules_keep_the_invariants(
            threshold in 1u32..5,
            open_secs in 1i64..8,
            ops in prop::collection::vec(op(), 0..200),
        ) {
            let mut h = Harness {
                b: Breaker::new(BreakerConfig {
                    failure_threshold: threshold,
                    open_for: Duration::from_secs(open_secs),
                }),
                now: T0,
                out: Vec::new(),
                period: 0,
                failures: 0,
                opened_at: None,
            };
            for op in ops {
                h.step(op);
            }
        }
    }
}
