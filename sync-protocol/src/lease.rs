//! Cell leases and fencing, I/O-free. The hub hands each cell to one edge at
//! a time; a lease lapses if its edge goes silent, and then another edge may
//! take the cell over (failover). Events are fenced — logged, not projected —
//! when they come from an edge that does not hold the cell, or from before a
//! takeover.

use serde::{Deserialize, Serialize};

use crate::ids::EdgeId;
use crate::time::{Duration, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub cell: u64,
    pub holder: EdgeId,
    /// The hub-wide epoch at which `holder` acquired the cell.
    pub epoch: u64,
    /// Events about this cell stamped with an epoch below this are fenced:
    /// `epoch` after a takeover from another edge, 0 for a first grant.
    pub fence_below: u64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new lease (first grant or takeover).
    Grant(Lease),
    /// The edge already holds it: extend `expires_at`.
    Renew,
    /// Another edge holds an unexpired lease.
    Conflict { holder: EdgeId },
}

/// What happens when `edge` asks for `cell` at `now`. `new_epoch` is a fresh
/// value of the hub's epoch counter, used only if a new lease is granted.
pub fn decide(
    current: Option<&Lease>,
    cell: u64,
    edge: &EdgeId,
    now: Timestamp,
    expires_at: Timestamp,
    new_epoch: u64,
) -> Decision {
    match current {
        None => Decision::Grant(Lease {
            cell,
            holder: edge.clone(),
            epoch: new_epoch,
            fence_below: 0,
            expires_at,
        }),
        // Still ours, even if it lapsed: nobody held it in between.
        Some(l) if l.holder == *edge => Decision::Renew,
        Some(l) if l.expires_at <= now => Decision::Grant(Lease {
            cell,
            holder: edge.clone(),
            epoch: new_epoch,
            fence_below: new_epoch,
            expires_at,
        }),
        Some(l) => Decision::Conflict {
            holder: l.holder.clone(),
        },
    }
}

/// Whether an event from `edge`, stamped `event_epoch`, about a cell whose
/// lease is `lease`, must be fenced. A cell nobody ever leased is not fenced:
/// the edge's first Hello will claim it.
pub fn is_fenced(lease: Option<&Lease>, edge: &EdgeId, event_epoch: u64) -> bool {
    match lease {
        None => false,
        Some(l) => l.holder != *edge || event_epoch < l.fence_below,
    }
}

/// When a hub session extends the leases of the edge it serves: every
/// quarter of the TTL while the session lives, so a live edge's leases never
/// lapse even when a renewal or two is late (a slow database, a busy hub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    ttl: Duration,
    last: Timestamp,
}

impl Renewal {
    /// Leases granted (or renewed) for `ttl` at `at`.
    pub fn new(ttl: Duration, at: Timestamp) -> Renewal {
        Renewal { ttl, last: at }
    }

    /// The renewal interval: a quarter of the TTL, at least a millisecond.
    pub fn interval(&self) -> Duration {
        Duration::from_ms((self.ttl.as_ms() / 4).max(1))
    }

    /// When the next renewal is due.
    pub fn next_due(&self) -> Timestamp {
        self.last + self.interval()
    }

    /// Whether to renew at `now`. A clock that stepped back waits for the
    /// time it stepped over: the leases written then last that long.
    pub fn due(&self, now: Timestamp) -> bool {
        now >= self.next_due()
    }

    /// The leases were renewed at `now`: they now run to the returned time.
    pub fn renewed(&mut self, now: Timestamp) -> Timestamp {
        self.last = now;
        now + self.ttl
    }

    /// Until when the leases run, as last written.
    pub fn expires_at(&self) -> Timestamp {
        self.last + self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(s: &str) -> EdgeId {
        EdgeId::new(s).expect("valid")
    }

    const T: Timestamp = Timestamp::from_unix_ms(1_000_000);

    #[test]
    fn first_grant_renewal_conflict_and_takeover() {
        let ttl = T + Duration::from_secs(60);
        let Decision::Grant(l) = decide(None, 7, &e("a"), T, ttl, 5) else {
            panic!("grant")
        };
        assert_eq!((l.epoch, l.fence_below), (5, 0));
        assert_eq!(decide(Some(&l), 7, &e("a"), T, ttl, 6), Decision::Renew);
        assert_eq!(
            decide(Some(&l), 7, &e("b"), T, ttl, 6),
            Decision::Conflict { holder: e("a") }
        );
        let later = T + Duration::from_secs(61);
        let Decision::Grant(t) = decide(Some(&l), 7, &e("b"), later, later, 9) else {
            panic!("takeover")
        };
        assert_eq!((t.holder.as_str(), t.epoch, t.fence_below), ("b", 9, 9));
        // An edge whose own lease lapsed, with no one in between, keeps it.
        assert_eq!(
            decide(Some(&l), 7, &e("a"), later, later, 9),
            Decision::Renew
        );
    }

    #[test]
    fn fencing_table() {
        let first = Lease {
            cell: 1,
            holder: e("a"),
            epoch: 3,
            fence_below: 0,
            expires_at: T,
        };
        let takeover = Lease {
            cell: 1,
            holder: e("b"),
            epoch: 8,
            fence_below: 8,
            expires_at: T,
        };
        let table = [
            (None, "a", 0, false),
            (Some(&first), "a", 0, false), // events from before the first grant
            (Some(&first), "b", 9, true),  // not the holder
            (Some(&takeover), "a", 3, true), // the old owner, still writing
            (Some(&takeover), "b", 7, true), // the new owner, before its takeover
            (Some(&takeover), "b", 8, false),
        ];
        for (lease, edge, epoch, fenced) in table {
            assert_eq!(
                is_fenced(lease, &e(edge), epoch),
                fenced,
                "{lease:?} {edge} {epoch}"
            );
        }
    }

    #[test]
    fn renewal_is_due_every_quarter_ttl() {
        let ttl = Duration::from_secs(20);
        let mut r = Renewal::new(ttl, T);
        assert_eq!(r.interval(), Duration::from_secs(5));
        assert!(!r.due(T + Duration::from_ms(4_999)));
        assert!(r.due(T + Duration::from_secs(5)));
        let at = T + Duration::from_secs(6);
        assert_eq!(r.renewed(at), at + ttl);
        assert_eq!(r.next_due(), at + Duration::from_secs(5));
        assert!(!r.due(T), "a clock stepped back waits");
        assert_eq!(
            Renewal::new(Duration::from_ms(2), T).interval(),
            Duration::from_ms(1),
            "never a zero interval"
        );
    }

    proptest! {
        /// A session that checks at least every quarter TTL (its loop wakes
        /// at least once a second; the TTL is at least five) keeps the
        /// leases alive at every check, whatever the steps between checks,
        /// and renews no more often than every quarter TTL.
        #[test]
        fn checked_often_enough_the_leases_never_lapse(
            ttl_s in 5i64..120,
            steps in proptest::collection::vec(0.0f64..1.0, 1..200),
        ) {
            let ttl = Duration::from_secs(ttl_s);
            let mut r = Renewal::new(ttl, T);
            let mut now = T;
            let mut renewals = 0i64;
            for f in steps {
                now = now + Duration::from_ms((f * (ttl.as_ms() / 4) as f64) as i64);
                prop_assert!(now < r.expires_at(), "lapsed at {now:?}");
                if r.due(now) {
                    r.renewed(now);
                    renewals += 1;
                }
            }
            prop_assert!(renewals <= now.since(T).as_ms() / r.interval().as_ms());
        }
    }
}
