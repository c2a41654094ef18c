//! One time type for the whole system: UTC milliseconds since the Unix epoch.
//!
//! Cores take the current time as a `Timestamp` argument and never read a
//! clock, so tests drive them with a fake clock.

use core::fmt;
use core::ops::{Add, Sub};

use serde::{Deserialize, Serialize};

/// A UTC instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Timestamp(i64);

/// A signed span of time in milliseconds (negative spans are allowed so that
/// "how long until" can be asked of a past instant).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Duration(i64);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// Whole days since the epoch in a zone `utc_offset_minutes` east of UTC:
    /// the key for "capacity left today".
    pub const fn local_day(self, utc_offset_minutes: i32) -> i64 {
        let local_ms = self.0 + utc_offset_minutes as i64 * 60_000;
        local_ms.div_euclid(86_400_000)
    }

    pub const fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// `self - earlier`, as a signed duration.
    pub const fn since(self, earlier: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_ms(ms: i64) -> Duration {
        Duration(ms)
    }
    pub const fn from_secs(s: i64) -> Duration {
        Duration(s.saturating_mul(1_000))
    }
    pub const fn from_mins(m: i64) -> Duration {
        Duration(m.saturating_mul(60_000))
    }
    pub const fn as_ms(self) -> i64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1_000.0
    }
    pub fn as_mins_f64(self) -> f64 {
        self.0 as f64 / 60_000.0
    }
    pub const fn saturating_mul(self, k: i64) -> Duration {
        Duration(self.0.saturating_mul(k))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, rhs: Timestamp) -> Duration {
        self.since(rhs)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_day_rolls_over_at_local_midnight() {
        // 2026-11-24T16:59:59.999Z is 23:59:59.999 in Jakarta (UTC+7).
        let before = Timestamp::from_unix_ms(1_795_539_599_999);
        let after = before + Duration::from_ms(1);
        assert_eq!(after.local_day(420), before.local_day(420) + 1);
        assert_eq!(after.local_day(0), before.local_day(0));
    }

    #[test]
    fn negative_spans_are_representable() {
        let t = Timestamp::from_unix_ms(1_000);
        assert_eq!(Timestamp::UNIX_EPOCH - t, Duration::from_ms(-1_000));
    }
}
