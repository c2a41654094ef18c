//! What the hub does with a claim from an epoch that is no longer the
//! cell's: the rule that settles the loss window of a failover.
//!
//! An owner that dies may have committed claims its standby never saw; the
//! standby, serving the cell under a higher epoch, may then let another
//! recipient claim the same surplus. When the old owner's events reach the
//! hub, **the claim of the higher epoch wins**; the other is revoked (an
//! event, and its recipient is told). Within one epoch there is one writer,
//! whose own order (its `seq`) decides. A late event of an older epoch that
//! conflicts with nothing is applied: it was written under a valid lease.

use super::Member;

/// A claim on a surplus as the hub sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Claim {
    pub surplus: u64,
    pub edge: Member,
    pub epoch: u64,
    /// The writer's sequence number.
    pub seq: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Nothing stood in its way: it is the surplus's claim.
    Wins,
    /// It replaces `loser`, which is revoked.
    Replaces { loser: Claim },
    /// `winner` stands; the incoming claim is revoked.
    Loses { winner: Claim },
    /// The same claim again (a resend): nothing to do.
    Duplicate,
}

/// The outcome of `incoming` against the surplus's current claim.
pub fn reconcile(current: Option<&Claim>, incoming: &Claim) -> Outcome {
    let Some(cur) = current else {
        return Outcome::Wins;
    };
    if cur == incoming {
        return Outcome::Duplicate;
    }
    let key = |c: &Claim| (core::cmp::Reverse(c.epoch), c.seq);
    if key(incoming) < key(cur) {
        Outcome::Replaces { loser: *cur }
    } else {
        Outcome::Loses { winner: *cur }
    }
}

/// How the hub takes an event stamped `event_epoch` for a cell whose
/// current epoch is `cell_epoch`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Admission {
    Current,
    /// From a later epoch the hub had not heard of (granted while it was
    /// away): the cell's epoch becomes this one.
    Newer,
    /// From an older epoch: reconciled, and the sender is told the cell's
    /// epoch is `current` so it stops writing with its old one.
    Stale {
        current: u64,
    },
}

pub fn admit(event_epoch: u64, cell_epoch: u64) -> Admission {
    match event_epoch.cmp(&cell_epoch) {
        core::cmp::Ordering::Equal => Admission::Current,
        core::cmp::Ordering::Greater => Admission::Newer,
        core::cmp::Ordering::Less => Admission::Stale {
            current: cell_epoch,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(edge: u8, epoch: u64, seq: u64) -> Claim {
        Claim {
            surplus: 9,
            edge: Member(edge),
            epoch,
            seq,
        }
    }

    #[test]
    fn the_higher_epoch_wins_and_within_an_epoch_the_writer_s_order() {
        let table = [
            (None, c(0, 1, 5), Outcome::Wins),
            (
                Some(c(1, 2, 1)),
                c(0, 1, 5),
                Outcome::Loses { winner: c(1, 2, 1) },
            ),
            (
                Some(c(0, 1, 5)),
                c(1, 2, 1),
                Outcome::Replaces { loser: c(0, 1, 5) },
            ),
            (
                Some(c(0, 1, 5)),
                c(0, 1, 3),
                Outcome::Replaces { loser: c(0, 1, 5) },
            ),
            (
                Some(c(0, 1, 3)),
                c(0, 1, 5),
                Outcome::Loses { winner: c(0, 1, 3) },
            ),
            (Some(c(0, 1, 3)), c(0, 1, 3), Outcome::Duplicate),
        ];
        for (cur, inc, want) in table {
            assert_eq!(reconcile(cur.as_ref(), &inc), want, "{cur:?} {inc:?}");
        }
    }

    #[test]
    fn admission_table() {
        assert_eq!(admit(3, 3), Admission::Current);
        assert_eq!(admit(4, 3), Admission::Newer);
        assert_eq!(admit(2, 3), Admission::Stale { current: 3 });
    }
}
