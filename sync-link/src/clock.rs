//! Where "now" comes from. Shells read a [`Clock`]; cores are handed the
//! `Timestamp` it returns, so a test can drive a shell on a clock of its own.

use sync_protocol::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// A manual clock only moves when told: a shell must not sleep on it.
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
