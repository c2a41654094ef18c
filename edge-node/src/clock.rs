//! Where "now" comes from. Shells read a [`Clock`]; cores are handed the
//! `Timestamp` it returns. `ManualClock` lets `simulate` and tests move time.

use std::sync::atomic::{AtomicI64, Ordering};

use sync_protocol::{Duration, Timestamp};

pub use sync_link::clock::{Clock, SystemClock};

/// A time as RFC 3339 in UTC, to the millisecond ('' if out of range).
pub fn rfc3339(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.unix_ms()) * 1_000_000)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A clock that stands still until advanced.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(start.unix_ms()))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_ms(), Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.0.store(to.unix_ms(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.0.load(Ordering::SeqCst))
    }
    fn is_manual(&self) -> bool {
        true
    }
}
