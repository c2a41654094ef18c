//! Per-subject rate limits: one token bucket per (role, subject), sized to
//! the role's per-minute allowance and refilled evenly over the minute
//! (governor's GCRA). Subjects that have been idle long enough to be full
//! again are forgotten, so many distinct subjects do not accumulate.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::auth::{Principal, Role};
use crate::config::RateLimitConfig;

type Bucket<C> = RateLimiter<String, DefaultKeyedStateStore<String>, C, StateInformationMiddleware>;

/// The outcome of one check, for the `RateLimit-*` headers and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Set when the request is refused: seconds until one more is allowed.
    pub retry_after_secs: Option<u64>,
}

pub struct Limits<C: Clock = DefaultClock> {
    buckets: [Bucket<C>; 3],
    per_minute: [u32; 3],
    /// Buckets kept at most (memory stays bounded whatever the subjects).
    max_tracked: usize,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for Limits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

fn slot(role: Role) -> usize {
    match role {
        Role::Provider => 0,
        Role::Ngo => 1,
        Role::Admin => 2,
    }
}

impl Limits<DefaultClock> {
    pub fn new(cfg: &RateLimitConfig) -> Limits<DefaultClock> {
        Limits::with_clock(cfg, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    pub fn with_clock(cfg: &RateLimitConfig, clock: C) -> Limits<C> {
        let per_minute = [
            cfg.provider_per_minute,
            cfg.ngo_per_minute,
            cfg.admin_per_minute,
        ]
        .map(|n| n.max(1));
        let buckets = per_minute.map(|n| {
            let quota = Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
            RateLimiter::dashmap_with_clock(quota, clock.clone())
                .with_middleware::<StateInformationMiddleware>()
        });
        Limits {
            buckets,
            per_minute,
            max_tracked: cfg.max_tracked_subjects.max(1),
            clock,
        }
    }

    /// Takes one token from the principal's bucket, if there is one.
    pub fn check(&self, p: &Principal) -> Decision {
        let i = slot(p.role);
        let limit = self.per_minute[i];
        if self.tracked() >= self.max_tracked {
            // Full: forget the subjects whose buckets are full again; if
            // that frees nothing, refuse rather than grow.
            self.housekeep();
            if self.tracked() >= self.max_tracked {
                return Decision {
                    limit,
                    remaining: 0,
                    reset_secs: 60,
                    retry_after_secs: Some(60),
                };
            }
        }
        let refill = 60.0 / f64::from(limit);
        match self.buckets[i].check_key(&p.sub) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    limit,
                    remaining,
                    reset_secs: (f64::from(limit - remaining.min(limit)) * refill).ceil() as u64,
                    retry_after_secs: None,
                }
            }
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                Decision {
                    limit,
                    remaining: 0,
                    reset_secs: 60,
                    retry_after_secs: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                }
            }
        }
    }

    /// Forgets subjects whose buckets are full again; call every minute.
    pub fn housekeep(&self) {
        for b in &self.buckets {
            b.retain_recent();
            b.shrink_to_fit();
        }
    }

    /// Subjects currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.iter().map(|b| b.len()).sum()
    }
}

/// Refused tokens per client address: beyond the allowance, the address is
/// turned away (429) until its bucket has a token again — before any token
/// it sends is verified.
pub struct FailedAuth<C: Clock = DefaultClock> {
    limiter: RateLimiter<
        std::net::IpAddr,
        DefaultKeyedStateStore<std::net::IpAddr>,
        C,
        governor::middleware::NoOpMiddleware<C::Instant>,
    >,
    blocked: parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, C::Instant>>,
    /// Entries in `blocked`: the common case (none) takes no lock.
    blocked_len: std::sync::atomic::AtomicUsize,
    max_tracked: usize,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for FailedAuth<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAuth").finish_non_exhaustive()
    }
}

impl FailedAuth<DefaultClock> {
    pub fn new(cfg: &RateLimitConfig) -> FailedAuth<DefaultClock> {
        FailedAuth::with_clock(cfg, DefaultClock::default())
    }
}

impl<C: Clock + Clone> FailedAuth<C> {
    pub fn with_clock(cfg: &RateLimitConfig, clock: C) -> FailedAuth<C> {
        let n = NonZeroU32::new(cfg.failed_auth_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        FailedAuth {
            limiter: RateLimiter::dashmap_with_clock(Quota::per_minute(n), clock.clone()),
            blocked: parking_lot::Mutex::new(std::collections::HashMap::new()),
            blocked_len: std::sync::atomic::AtomicUsize::new(0),
            max_tracked: cfg.max_tracked_subjects.max(1),
            clock,
        }
    }

    /// Seconds the address must wait, if it is turned away now.
    pub fn blocked(&self, ip: std::net::IpAddr) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if self.blocked_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut blocked = self.blocked.lock();
        let until = *blocked.get(&ip)?;
        let now = self.clock.now();
        if until > now {
            let left: Duration = governor::clock::Reference::duration_since(&until, now).into();
            Some(left.as_secs().max(1))
        } else {
            blocked.remove(&ip);
            self.blocked_len.store(blocked.len(), Ordering::Relaxed);
            None
        }
    }

    /// A token from `ip` was refused; returns the wait if that used up its
    /// allowance.
    pub fn failed(&self, ip: std::net::IpAddr) -> Option<u64> {
        if self.limiter.len() >= self.max_tracked {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&ip) {
            Ok(_) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let mut blocked = self.blocked.lock();
                if blocked.len() >= self.max_tracked {
                    let now = self.clock.now();
                    blocked.retain(|_, until| *until > now);
                }
                if blocked.len() < self.max_tracked {
                    blocked.insert(ip, self.clock.now() + wait.into());
                }
                self.blocked_len
                    .store(blocked.len(), std::sync::atomic::Ordering::Relaxed);
                Some(wait.as_secs().max(1))
            }
        }
    }

    /// Forgets addresses whose allowance is whole again; call every minute.
    pub fn housekeep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = self.clock.now();
        let mut blocked = self.blocked.lock();
        blocked.retain(|_, until| *until > now);
        self.blocked_len
            .store(blocked.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use sync_protocol::Timestamp;

    fn p(role: Role, sub: &str) -> Principal {
        Principal {
            sub: sub.into(),
            role,
            subject: None,
            expires_at: Timestamp::from_unix_ms(i64::MAX),
        }
    }

    fn limits(clock: &FakeRelativeClock) -> Limits<FakeRelativeClock> {
        Limits::with_clock(&RateLimitConfig::default(), clock.clone())
    }

    #[test]
    fn each_role_gets_exactly_its_bucket() {
        let clock = FakeRelativeClock::default();
        let l = limits(&clock);
        for (role, n) in [(Role::Provider, 100), (Role::Ngo, 50), (Role::Admin, 1_000)] {
            for i in 0..n {
                let d = l.check(&p(role, "s"));
                assert_eq!(d.retry_after_secs, None, "{role:?} request {i}");
                assert_eq!(d.remaining, n - i - 1);
            }
            let refused = l.check(&p(role, "s"));
            assert_eq!(refused.remaining, 0);
            let next_token = (60.0 / f64::from(n)).ceil() as u64; // Retry-After is whole seconds, rounded up
            assert_eq!(refused.retry_after_secs, Some(next_token), "{role:?}");
            // Another subject of the same role has its own bucket.
            assert_eq!(l.check(&p(role, "t")).retry_after_secs, None);
        }
    }

    #[test]
    fn an_address_presenting_refused_tokens_is_turned_away_then_let_back() {
        let clock = FakeRelativeClock::default();
        let cfg = RateLimitConfig {
            failed_auth_per_minute: 3,
            ..RateLimitConfig::default()
        };
        let f = FailedAuth::with_clock(&cfg, clock.clone());
        let (bad, other): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.9".parse().unwrap(), "10.0.0.10".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(f.blocked(bad), None);
            assert_eq!(f.failed(bad), None, "within the allowance");
        }
        let wait = f.failed(bad).expect("the fourth uses it up");
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(f.blocked(bad).is_some(), "turned away before verifying");
        assert_eq!(f.blocked(other), None, "per address");
        clock.advance(Duration::from_secs(wait + 1));
        assert_eq!(f.blocked(bad), None, "let back in");
    }

    #[test]
    fn many_distinct_subjects_stay_within_the_bound() {
        let clock = FakeRelativeClock::default();
        let cfg = RateLimitConfig {
            max_tracked_subjects: 3,
            ..RateLimitConfig::default()
        };
        let l = Limits::with_clock(&cfg, clock.clone());
        for s in ["a", "b", "c"] {
            assert_eq!(l.check(&p(Role::Provider, s)).retry_after_secs, None);
        }
        assert_eq!(l.tracked(), 3);
        // A fourth subject while the three are busy: refused, not stored.
        assert_eq!(l.check(&p(Role::Provider, "d")).retry_after_secs, Some(60));
        assert_eq!(l.tracked(), 3, "memory did not grow");
        // Once their buckets are full again, they are forgotten for it.
        clock.advance(Duration::from_secs(61));
        assert_eq!(l.check(&p(Role::Provider, "d")).retry_after_secs, None);
        assert!(l.tracked() <= 3);
    }

    #[test]
    fn the_bucket_refills_over_the_minute() {
        let clock = FakeRelativeClock::default();
        let l = limits(&clock);
        for _ in 0..50 {
            l.check(&p(Role::Ngo, "n"));
        }
        assert!(l.check(&p(Role::Ngo, "n")).retry_after_secs.is_some());
        clock.advance(Duration::from_millis(1_200)); // one token per 1.2 s for 50/min
        assert_eq!(l.check(&p(Role::Ngo, "n")).retry_after_secs, None);
        assert!(l.check(&p(Role::Ngo, "n")).retry_after_secs.is_some());
    }

    #[test]
    fn idle_subjects_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let l = limits(&clock);
        for i in 0..10_000 {
            l.check(&p(Role::Provider, &format!("p{i}")));
        }
        assert_eq!(l.tracked(), 10_000);
        clock.advance(Duration::from_secs(61));
        l.housekeep();
        assert_eq!(
            l.tracked(),
            0,
            "no memory kept for subjects that went quiet"
        );
    }
}
