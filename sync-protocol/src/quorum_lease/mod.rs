//! Majority leases on a cell (issue 11), I/O-free: who may write a leased
//! cell at any instant, decided by a majority of the cell's *acceptors* —
//! the hub and every edge of the cell's group (owner first, then its
//! standbys) — in the spirit of PaxosLease (Trencseny et al., 2009): no
//! acceptor keeps anything on disk but the highest epoch it has granted, no
//! clocks are compared, only durations are measured, each on its own
//! monotonic clock.
//!
//! - A [`Proposer`] (one per edge per cell) asks every acceptor for the cell
//!   with a [`Request`] at local time `t0`. Once a majority has answered
//!   [`Verdict::Accepted`] it holds the cell until `t0 + ttl − drift_margin`
//!   by its own clock, and renews every `renew_every` while it holds.
//! - An [`Acceptor`] that accepts a request refuses every other proposer
//!   until `ttl + drift_margin` after it *received* the request, by its own
//!   clock; after a restart it refuses everyone for that long (it forgot
//!   whom it had promised). It accepts a new proposer only with an epoch
//!   above every epoch it has granted, kept durably.
//!
//! **At most one writer per cell at any instant**, if every clock's rate is
//! within `1 ± ρ` of true time and `drift_margin ≥ ρ · ttl`: a holder H's
//! lease from a round sent at true time `s` ends before true `s + (ttl − m)
//! / (1 − ρ)`; any majority that a later proposer gathers shares an acceptor
//! A with H's majority, which received H's request at true `r ≥ s` and
//! refuses others until true `r + (ttl + m) / (1 + ρ)`, which is no earlier
//! than the end of H's lease exactly when `m ≥ ρ · ttl`. A restarted acceptor
//! refuses everyone for `ttl + m`, which outlasts any promise it forgot.
//! Epochs only grow: a new holder's majority meets the old holder's at an
//! acceptor that persisted the old epoch before answering, so the new epoch
//! is higher, and the hub fences events of lower epochs ([`reconcile`]).
//!
//! The simulation in `sync-protocol/tests/lease_sim.rs` checks these claims
//! under loss, duplication, delay, asymmetric partitions, pauses, crashes
//! and drift.

mod acceptor;
mod proposer;
pub mod reconcile;

pub use acceptor::{Acceptor, Durable};
pub use proposer::{Action, Known, Proposer};

use core::ops::Add;

use serde::{Deserialize, Serialize};

use crate::time::Duration;

/// A reading of the caller's monotonic clock, in milliseconds from an
/// arbitrary origin: it never steps, and two nodes' readings are never
/// compared, only differences on one node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Mono(i64);

impl Mono {
    pub const fn from_ms(ms: i64) -> Mono {
        Mono(ms)
    }
    pub const fn as_ms(self) -> i64 {
        self.0
    }
}

impl Add<Duration> for Mono {
    type Output = Mono;
    fn add(self, d: Duration) -> Mono {
        Mono(self.0.saturating_add(d.as_ms()))
    }
}

/// A member of a cell's group by its place in the hub's assignment: 0 is
/// the owner, 1.. the standbys in order. The shells map edges to members
/// from the assignment and the edge's authenticated certificate, never from
/// what a message says about itself.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Member(pub u8);

/// An acceptor of a cell: 0 is the hub, `1 + m` is member `m`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct AcceptorIdx(pub u8);

impl Member {
    pub const fn acceptor(self) -> AcceptorIdx {
        AcceptorIdx(self.0 + 1)
    }
}

/// The hub's acceptor index.
pub const HUB: AcceptorIdx = AcceptorIdx(0);

/// How a cell is served, chosen by its assignment.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Policy {
    /// No standby: the owner serves through any hub outage; only an
    /// operator moves the cell, which bumps the epoch and fences the old
    /// owner's later events.
    Autonomous,
    /// One or more standbys: served only under a majority lease.
    Leased,
}

/// Lease durations. The defaults reach the 2 s failover target: a dead
/// owner's lease is gone from every acceptor 1.6 s after its last renewal,
/// and a standby takes the cell in one round trip more.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Timing {
    pub ttl: Duration,
    pub renew_every: Duration,
    /// At least `ρ · ttl` for the worst clock-rate error ρ (monotonic
    /// clocks drift by well under 0.1 %; 100 ms of 1.5 s allows 6.6 %).
    pub drift_margin: Duration,
}

impl Timing {
    pub const DEFAULT: Timing = Timing {
        ttl: Duration::from_ms(1_500),
        renew_every: Duration::from_ms(500),
        drift_margin: Duration::from_ms(100),
    };

    /// A lease must outlive two renewal rounds, or one lost round ends it.
    pub fn check(&self) -> Result<(), TimingError> {
        let (ttl, every, margin) = (
            self.ttl.as_ms(),
            self.renew_every.as_ms(),
            self.drift_margin.as_ms(),
        );
        if every <= 0 || margin <= 0 {
            return Err(TimingError::NotPositive);
        }
        if ttl - margin <= 2 * every {
            return Err(TimingError::TooShort);
        }
        Ok(())
    }

    /// The largest clock-rate error the margin covers (`m / ttl`).
    pub fn max_drift(&self) -> f64 {
        self.drift_margin.as_ms() as f64 / self.ttl.as_ms() as f64
    }
}

impl Default for Timing {
    fn default() -> Timing {
        Timing::DEFAULT
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("lease renew_every and drift_margin must be positive")]
    NotPositive,
    #[error("lease ttl minus drift_margin must exceed two renewal intervals")]
    TooShort,
}

/// A proposer asks an acceptor for the cell (or to extend its hold).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Request {
    pub cell: u64,
    pub from: Member,
    pub epoch: u64,
    /// The proposer's round: replies to other rounds are ignored.
    pub round: u64,
}

/// An acceptor's answer to one [`Request`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Reply {
    pub cell: u64,
    pub to: Member,
    pub round: u64,
    pub verdict: Verdict,
    /// The highest epoch this acceptor has granted, so a refused proposer
    /// knows which epoch to ask for next.
    pub max_epoch: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Verdict {
    Accepted,
    /// Another member holds this acceptor's promise.
    HeldBy(Member),
    /// The epoch is not above every epoch granted here (or it is, but was
    /// granted to another member).
    StaleEpoch,
    /// Not a member of the cell's group.
    NotAssigned,
    /// Restarted less than `ttl + drift_margin` ago.
    Restarting,
}

/// A proposer gave up an acquisition round that did not reach a majority:
/// acceptors that promised it that round may promise others.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Release {
    pub cell: u64,
    pub from: Member,
    pub round: u64,
}
