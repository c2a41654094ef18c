//! The kiosk's two clocks: its own uptime (passed in by the shell) and its
//! estimate of the edge's clock, kept from the edge's time syncs.

use sync_protocol::Timestamp;
use sync_protocol::kiosk::TimeSync;

use crate::MAX_SYNC_ROUND_TRIP_MS;

/// Milliseconds since the board started: its monotonic tick, the core's
/// `now`. It knows no date until the edge tells it the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Uptime(pub u64);

impl Uptime {
    pub const fn ms(self) -> u64 {
        self.0
    }

    pub const fn plus_ms(self, ms: u64) -> Uptime {
        Uptime(self.0.saturating_add(ms))
    }

    /// `self - earlier`, zero if `earlier` is later.
    pub const fn since(self, earlier: Uptime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// The edge's clock as this kiosk estimates it: uptime plus an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeClock {
    offset_ms: i64,
}

impl EdgeClock {
    /// From a sync received at `now`: the edge read `edge_now` somewhere in
    /// the round trip since `device_ms`, so `edge_now + rtt / 2` is off by at
    /// most `rtt / 2`. `None` for an echo from the future or a round trip
    /// over [`MAX_SYNC_ROUND_TRIP_MS`].
    pub fn from_sync(now: Uptime, sync: &TimeSync) -> Option<EdgeClock> {
        let rtt = now.ms().checked_sub(sync.device_ms)?;
        if rtt > MAX_SYNC_ROUND_TRIP_MS {
            return None;
        }
        let edge_at_now = sync.edge_now.unix_ms().saturating_add((rtt / 2) as i64);
        Some(EdgeClock {
            offset_ms: edge_at_now.saturating_sub(now.ms().min(i64::MAX as u64) as i64),
        })
    }

    /// The edge's time at uptime `now`.
    pub fn at(&self, now: Uptime) -> Timestamp {
        let ms = (now.ms().min(i64::MAX as u64) as i64).saturating_add(self.offset_ms);
        Timestamp::from_unix_ms(ms)
    }
}
