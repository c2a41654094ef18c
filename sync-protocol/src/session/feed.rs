//! The hub's neighbour-registry feed for one session, I/O-free: which
//! recipients of the cells around an edge's to read next and which of them
//! to push. The hub's shell runs the query; this decides where it starts
//! and what of its answer is new.
//!
//! Registrations are followed by the hub's own receive time (`received_at`,
//! PostgreSQL's microseconds), read in `(received_at, id)` order one page at
//! a time. A registration's transaction takes its `received_at` when it
//! begins but becomes visible when it commits, so a pass re-reads from
//! [`REGISTRY_OVERLAP`] behind the newest receive time pushed so far; what
//! was already pushed at the same receive time is skipped, so nothing is
//! missed and nothing goes out twice. An erasure bumps `received_at`: the
//! erased recipient goes out once more, as a tombstone.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::msg::RegistryEntry;
use crate::ids::RecipientId;
use crate::time::Duration;

/// How far behind the newest receive time a pass starts re-reading: longer
/// than any registration's transaction stays open at the hub.
pub const REGISTRY_OVERLAP: Duration = Duration::from_secs(60);

/// At most this many pushed recipients are remembered for the dedupe. Past
/// it the oldest are forgotten first; one of them re-read inside the
/// overlap goes out once more, which the edge's import takes as a no-op.
pub const MAX_FEED_REMEMBERED: usize = 65_536;

/// A registration's receive time at the hub, in microseconds since the Unix
/// epoch (PostgreSQL `timestamptz` precision, so the cursor round-trips the
/// database exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceivedAt(i64);

impl ReceivedAt {
    pub const fn from_unix_us(us: i64) -> ReceivedAt {
        ReceivedAt(us)
    }

    pub const fn unix_us(self) -> i64 {
        self.0
    }

    fn minus(self, d: Duration) -> ReceivedAt {
        ReceivedAt(self.0.saturating_sub(d.as_ms().saturating_mul(1_000)))
    }
}

/// Where a page starts: rows strictly after `(received_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub received_at: ReceivedAt,
    pub id: RecipientId,
}

impl Cursor {
    /// Before every registration.
    pub const START: Cursor = Cursor {
        received_at: ReceivedAt(0),
        id: RecipientId::from_bytes([0; 16]),
    };
}

#[derive(Debug)]
pub struct RegistryFeed {
    cells: Vec<u64>,
    overlap: Duration,
    max_remembered: usize,
    /// The newest receive time pushed.
    newest: Option<ReceivedAt>,
    /// What was pushed inside the overlap window, at which receive time.
    sent: BTreeMap<RecipientId, ReceivedAt>,
    /// The next page of the pass under way, if one is.
    pass: Option<Cursor>,
}

impl RegistryFeed {
    /// A feed of the recipients in `cells` (the edge's neighbouring cells).
    pub fn new(cells: Vec<u64>) -> RegistryFeed {
        RegistryFeed::with_limits(cells, REGISTRY_OVERLAP, MAX_FEED_REMEMBERED)
    }

    pub fn with_limits(cells: Vec<u64>, overlap: Duration, max_remembered: usize) -> RegistryFeed {
        RegistryFeed {
            cells,
            overlap,
            max_remembered: max_remembered.max(1),
            newest: None,
            sent: BTreeMap::new(),
            pass: None,
        }
    }

    pub fn cells(&self) -> &[u64] {
        &self.cells
    }

    /// How many pushed recipients are remembered (for tests and limits).
    pub fn remembered(&self) -> usize {
        self.sent.len()
    }

    /// Starts a pass over the registry, unless one is under way or there is
    /// nothing to watch.
    pub fn start_pass(&mut self) {
        if self.pass.is_some() || self.cells.is_empty() {
            return;
        }
        self.pass = Some(match self.newest {
            None => Cursor::START,
            Some(newest) => Cursor {
                received_at: newest.minus(self.overlap),
                ..Cursor::START
            },
        });
    }

    /// Where the next page starts, while a pass is under way.
    pub fn next_page(&self) -> Option<Cursor> {
        self.pass
    }

    /// The page read at [`next_page`](Self::next_page): rows after the
    /// cursor in `(received_at, id)` order, at most `limit` of them. Returns
    /// the recipients to push: new ones, and ones changed since they were
    /// pushed. A page shorter than `limit` ends the pass.
    pub fn page(
        &mut self,
        rows: Vec<(RegistryEntry, ReceivedAt)>,
        limit: usize,
    ) -> Vec<RegistryEntry> {
        let Some(mut after) = self.pass else {
            return Vec::new();
        };
        let full = rows.len() >= limit;
        let mut fresh = Vec::new();
        for (entry, at) in rows {
            let here = Cursor {
                received_at: at,
                id: entry.id,
            };
            debug_assert!(here > after, "rows come in cursor order, after it");
            after = after.max(here);
            if self.sent.insert(entry.id, at) != Some(at) {
                fresh.push(entry);
            }
            self.newest = self.newest.max(Some(at));
        }
        self.pass = full.then_some(after);
        if !full {
            self.forget_old();
        }
        fresh
    }

    /// Forgets what fell out of the overlap window, then the oldest beyond
    /// [`MAX_FEED_REMEMBERED`].
    fn forget_old(&mut self) {
        let Some(newest) = self.newest else {
            return;
        };
        let since = newest.minus(self.overlap);
        self.sent.retain(|_, at| *at >= since);
        let excess = self.sent.len().saturating_sub(self.max_remembered);
        if excess == 0 {
            return;
        }
        let mut by_age: Vec<(ReceivedAt, RecipientId)> =
            self.sent.iter().map(|(id, at)| (*at, *id)).collect();
        by_age.sort_unstable();
        for (_, id) in by_age.into_iter().take(excess) {
            self.sent.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests;
