//! Where "now" comes from. Shells read a [`Clock`]; cores are handed the
//! `Timestamp` it returns. `ManualClock` lets `simulate` and tests move time.

use std::sync::atomic::{AtomicI64, Ordering};

use sync_protocol::{Duration, Timestamp};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// A manual clock only moves when told; the writer must not sleep on it.
    fn is_manual(&self) -> bool {
        false
    }
}

/// The system's wall clock, in UTC.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp::from_unix_ms(ms)
    }
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
