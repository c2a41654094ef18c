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
