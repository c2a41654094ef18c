//! Reconnect waits for a link that keeps retrying its peer (the edge's link
//! to the hub): doubling from a minimum to a maximum, jittered, and back to
//! the minimum once a session was established. I/O-free: the caller passes
//! the randomness in and does the sleeping.

use crate::time::Duration;

/// The waits between attempts to reach a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    current_ms: u64,
}

impl Backoff {
    /// Waits run from `min_ms` to `max_ms` (a `max_ms` below `min_ms` is
    /// taken as `min_ms`; a zero minimum as 1 ms).
    pub fn new(min_ms: u64, max_ms: u64) -> Backoff {
        let min_ms = min_ms.max(1);
        Backoff {
            min_ms,
            max_ms: max_ms.max(min_ms),
            current_ms: min_ms,
        }
    }

    /// A session ended, or an attempt failed. `established`: it got as far
    /// as a working session, which proves the peer is back, so the waits
    /// start from the minimum again. Returns how long to wait before the
    /// next attempt: jittered over `[current/2, current]` by `random` (any
    /// value, e.g. from an RNG), so edges that lost the hub together do not
    /// all come back in the same millisecond. The next wait doubles, up to
    /// the maximum.
    pub fn after_session(&mut self, established: bool, random: u64) -> Duration {
        if established {
            self.current_ms = self.min_ms;
        }
        let hi = self.current_ms;
        let lo = hi / 2;
        let wait = lo + random % (hi - lo + 1);
        self.current_ms = self.current_ms.saturating_mul(2).min(self.max_ms);
        Duration::from_ms(i64::try_from(wait).unwrap_or(i64::MAX))
    }

    /// The upper bound of the next wait, in ms.
    pub fn current_ms(&self) -> u64 {
        self.current_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Randomness at both ends of the range and between.
    const RANDOM: [u64; 4] = [0, 1, 0x9e37_79b9_7f4a_7c15, u64::MAX];

    #[test]
    fn waits_double_to_their_cap_within_the_jitter() {
        for random in RANDOM {
            let mut b = Backoff::new(200, 30_000);
            for i in 0..12 {
                let cap = (200u64 << i).min(30_000);
                let wait = b.after_session(false, random).as_ms() as u64;
                assert!(
                    (cap / 2..=cap).contains(&wait),
                    "attempt {i}, random {random}: {wait} outside [{}, {cap}]",
                    cap / 2
                );
            }
            assert_eq!(b.current_ms(), 30_000, "capped");
        }
    }

    #[test]
    fn an_established_session_starts_the_waits_again_from_the_minimum() {
        for random in RANDOM {
            let mut b = Backoff::new(200, 30_000);
            for _ in 0..8 {
                b.after_session(false, random);
            }
            let wait = b.after_session(true, random).as_ms();
            assert!((100..=200).contains(&wait), "{wait}");
            assert_eq!(b.current_ms(), 400, "and doubles from there");
            // A failure after that does not reset.
            let wait = b.after_session(false, random).as_ms();
            assert!((200..=400).contains(&wait), "{wait}");
        }
    }

    #[test]
    fn degenerate_bounds_still_wait() {
        let mut b = Backoff::new(0, 0);
        for random in RANDOM {
            let wait = b.after_session(false, random).as_ms();
            assert!((0..=1).contains(&wait), "{wait}");
        }
        let mut b = Backoff::new(500, 10);
        assert_eq!(b.current_ms(), 500);
        b.after_session(false, 0);
        assert_eq!(b.current_ms(), 500, "max below min is min");
    }
}
