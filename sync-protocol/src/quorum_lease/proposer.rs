//! One edge's side of one leased cell: asks for the cell, holds it while a
//! majority of acceptors agrees, renews it, and says whether it may write.

use super::{Acceptor, AcceptorIdx, Member, Mono, Release, Reply, Request, Timing, Verdict};

/// What the proposer asks its shell to send, to every acceptor of the cell.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    Ask(Request),
    Release(Release),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Hold {
    epoch: u64,
    until: Mono,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Round {
    round: u64,
    epoch: u64,
    sent_at: Mono,
    accepted: u32,
    refused: u32,
    acquiring: bool,
}

/// What a proposer keeps on disk: the highest epoch it has seen (persist it
/// when [`Proposer::known_max`] grows) and how many times it has started
/// (persist `incarnation + 1` before each start).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Known {
    pub max_epoch: u64,
    pub incarnation: u32,
}

#[derive(Clone, Debug)]
pub struct Proposer {
    cell: u64,
    me: Member,
    acceptors: u8,
    timing: Timing,
    known_max: u64,
    hold: Option<Hold>,
    next_round: u64,
    pending: Option<Round>,
    last_ask: Option<Mono>,
    next_try: Mono,
}

impl Proposer {
    /// A proposer (re)started at `now`, holding nothing, with what it kept
    /// on disk ([`Known`]): rounds are numbered from `incarnation << 32`, so
    /// no round number is used twice across restarts and a late release
    /// from an earlier life cannot end a promise this one relies on.
    /// `acceptors` counts the hub and every member. A standby waits its rank
    /// in renewal intervals before its first try, so the owner asks first.
    pub fn start(
        cell: u64,
        me: Member,
        acceptors: u8,
        timing: Timing,
        known: Known,
        now: Mono,
    ) -> Proposer {
        Proposer {
            cell,
            me,
            acceptors,
            timing,
            known_max: known.max_epoch,
            hold: None,
            next_round: (u64::from(known.incarnation) << 32) | 1,
            pending: None,
            last_ask: None,
            next_try: now + timing.renew_every.saturating_mul(i64::from(me.0)),
        }
    }

    /// The epoch to stamp writes with, if this edge may write the cell at
    /// `now`; `None` means refuse the write.
    pub fn serving(&self, now: Mono) -> Option<u64> {
        self.hold.filter(|h| h.until > now).map(|h| h.epoch)
    }

    /// The highest epoch seen: persist it when it grows.
    pub fn known_max(&self) -> u64 {
        self.known_max
    }

    /// Called often (at least every tenth of `renew_every`) with this
    /// edge's own acceptor for the cell: while it has promised the cell to
    /// another member (a standby that still sees its owner) this one does
    /// not try, and the epochs it has granted are known here too.
    pub fn tick(&mut self, now: Mono, own: &Acceptor) -> Option<Action> {
        self.known_max = self.known_max.max(own.durable().max_epoch);
        let contend = own.promised_to(now).is_none_or(|m| m == self.me);
        if self.hold.is_some_and(|h| h.until <= now) {
            self.hold = None;
        }
        if let Some(p) = self.pending
            && now >= p.sent_at + self.timing.renew_every
        {
            return self.give_up(now);
        }
        if self.pending.is_some() {
            return None;
        }
        match self.hold {
            Some(h)
                if self
                    .last_ask
                    .is_none_or(|at| now >= at + self.timing.renew_every) =>
            {
                Some(self.ask(now, h.epoch, false))
            }
            None if contend && now >= self.next_try => {
                let epoch = self.known_max + 1;
                Some(self.ask(now, epoch, true))
            }
            _ => None,
        }
    }

    fn ask(&mut self, now: Mono, epoch: u64, acquiring: bool) -> Action {
        let round = self.next_round;
        self.next_round += 1;
        self.last_ask = Some(now);
        self.pending = Some(Round {
            round,
            epoch,
            sent_at: now,
            accepted: 0,
            refused: 0,
            acquiring,
        });
        Action::Ask(Request {
            cell: self.cell,
            from: self.me,
            epoch,
            round,
        })
    }

    /// The round failed: a renewal simply lapses into the next one; an
    /// acquisition releases what it was promised and backs off by rank.
    fn give_up(&mut self, now: Mono) -> Option<Action> {
        let p = self.pending.take()?;
        if !p.acquiring {
            return None;
        }
        let wait = self
            .timing
            .renew_every
            .saturating_mul(1 + i64::from(self.me.0));
        self.next_try = now + wait;
        Some(Action::Release(Release {
            cell: self.cell,
            from: self.me,
            round: p.round,
        }))
    }

    /// An acceptor's reply arrived at `now`. Replies to any round but the
    /// one in flight (late, duplicated or replayed) change nothing but the
    /// highest epoch known.
    pub fn on_reply(&mut self, now: Mono, from: AcceptorIdx, reply: &Reply) -> Option<Action> {
        if reply.cell != self.cell || reply.to != self.me || from.0 >= self.acceptors {
            return None;
        }
        self.known_max = self.known_max.max(reply.max_epoch);
        let mut p = self.pending.filter(|p| p.round == reply.round)?;
        let bit = 1u32 << from.0;
        if reply.verdict == Verdict::Accepted {
            p.accepted |= bit;
        } else {
            p.refused |= bit;
        }
        // A refusal alone never ends a hold: an acceptor's highest epoch
        // also grows with attempts that failed, and the hold is safe while
        // it runs (the majority argument); only the hub's fence ends it.
        self.pending = Some(p);
        let majority = u32::from(self.acceptors) / 2 + 1;
        if p.accepted.count_ones() >= majority {
            self.won(p, now);
            return None;
        }
        if p.refused.count_ones() > u32::from(self.acceptors) - majority {
            return self.give_up(now);
        }
        None
    }

    fn won(&mut self, p: Round, now: Mono) {
        self.pending = None;
        let lease = self.timing.ttl.as_ms() - self.timing.drift_margin.as_ms();
        let until = Mono::from_ms(p.sent_at.as_ms().saturating_add(lease));
        let until = match self.hold {
            Some(h) if h.epoch == p.epoch => h.until.max(until),
            _ => until,
        };
        if until > now {
            self.hold = Some(Hold {
                epoch: p.epoch,
                until,
            });
            self.known_max = self.known_max.max(p.epoch);
        }
    }

    /// The hub says the cell's epoch is now `current` (it refused an event
    /// of a lower one): stop writing at once if ours is older.
    pub fn fenced(&mut self, current: u64) {
        self.known_max = self.known_max.max(current);
        if self.hold.is_some_and(|h| h.epoch < current) {
            self.hold = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Durable, HUB};
    use super::*;
    use crate::time::Duration;

    const T: Timing = Timing::DEFAULT;

    /// Hub + owner + one standby, every message delivered at once.
    struct Cell {
        acceptors: Vec<Acceptor>,
        proposers: Vec<Proposer>,
    }

    impl Cell {
        fn new(now: Mono) -> Cell {
            let before = Mono::from_ms(now.as_ms() - 2_000);
            Cell {
                acceptors: (0..3)
                    .map(|_| Acceptor::start(1, 2, T, Durable::default(), before))
                    .collect(),
                proposers: (0..2)
                    .map(|m| Proposer::start(1, Member(m), 3, T, Known::default(), now))
                    .collect(),
            }
        }

        /// Ticks member `m`, delivering its asks to the acceptors in `reach`.
        fn tick(&mut self, m: usize, now: Mono, reach: &[usize]) {
            let own = Member(m as u8).acceptor().0 as usize;
            match self.proposers[m].tick(now, &self.acceptors[own]) {
                Some(Action::Ask(req)) => {
                    for &a in reach {
                        let (reply, _) = self.acceptors[a].on_request(now, &req);
                        self.proposers[m].on_reply(now, AcceptorIdx(a as u8), &reply);
                    }
                }
                Some(Action::Release(rel)) => reach
                    .iter()
                    .for_each(|&a| self.acceptors[a].on_release(&rel)),
                None => {}
            }
        }
    }

    #[test]
    fn the_owner_holds_and_renews_and_a_standby_takes_over_only_after_the_lease_is_gone() {
        let t0 = Mono::from_ms(100_000);
        let mut cell = Cell::new(t0);
        let ms = |d: i64| t0 + Duration::from_ms(d);
        cell.tick(0, t0, &[0, 1, 2]);
        assert_eq!(cell.proposers[0].serving(t0), Some(1));
        // Renewed every 500 ms while the hub and the standby hear it.
        for step in 1..=10 {
            cell.tick(0, ms(step * 100), &[0, 1, 2]);
            cell.tick(1, ms(step * 100), &[0, 1, 2]);
        }
        assert_eq!(
            cell.proposers[0].serving(ms(2_000)),
            Some(1),
            "renewed at 1,000 ms"
        );
        assert_eq!(cell.proposers[1].serving(ms(1_000)), None);
        // The owner dies at 1,000 ms. The standby's acceptor vouches for it
        // until 1,000 + 1,600; the hub's too.
        let mut taken = None;
        for step in 11..=40 {
            cell.tick(1, ms(step * 100), &[0, 2]);
            if taken.is_none() && cell.proposers[1].serving(ms(step * 100)).is_some() {
                taken = Some(step * 100);
            }
        }
        let taken = taken.expect("the standby took over");
        assert!((2_600..=3_100).contains(&taken), "took over at {taken} ms");
        assert_eq!(
            cell.proposers[1].serving(ms(taken)),
            Some(2),
            "with a higher epoch"
        );
        let owner_until = cell.proposers[0].serving(ms(2_399));
        assert_eq!(
            owner_until,
            Some(1),
            "the owner's lease ran to 1,000 + 1,400"
        );
        assert_eq!(cell.proposers[0].serving(ms(2_400)), None);
        let _ = HUB;
    }

    #[test]
    fn an_owner_cut_off_from_the_hub_keeps_the_cell_while_its_standby_sees_it() {
        let t0 = Mono::from_ms(100_000);
        let mut cell = Cell::new(t0);
        for step in 0..=100 {
            let now = t0 + Duration::from_ms(step * 100);
            cell.tick(0, now, if step == 0 { &[0, 1, 2] } else { &[1, 2] });
            cell.tick(1, now, &[0, 1, 2]);
            assert_eq!(cell.proposers[0].serving(now), Some(1), "at {step}");
            assert_eq!(cell.proposers[1].serving(now), None);
        }
        // Alone, it stops within its lease.
        let cut = t0 + Duration::from_ms(10_000);
        for step in 1..=20 {
            cell.tick(0, cut + Duration::from_ms(step * 100), &[1]);
        }
        assert_eq!(
            cell.proposers[0].serving(cut + Duration::from_ms(1_400)),
            None
        );
    }

    #[test]
    fn replies_to_other_rounds_cells_or_members_change_nothing() {
        let now = Mono::from_ms(0);
        let mut p = Proposer::start(1, Member(0), 3, T, Known::default(), now);
        let own = Acceptor::start(1, 2, T, Durable::default(), now);
        let Some(Action::Ask(req)) = p.tick(now, &own) else {
            panic!("asks")
        };
        let ok = |round, to, cell| Reply {
            cell,
            to: Member(to),
            round,
            verdict: Verdict::Accepted,
            max_epoch: req.epoch,
        };
        for bad in [
            ok(req.round + 1, 0, 1),
            ok(req.round, 1, 1),
            ok(req.round, 0, 2),
        ] {
            p.on_reply(now, AcceptorIdx(0), &bad);
            p.on_reply(now, AcceptorIdx(1), &bad);
        }
        // The same acceptor twice is one vote; an acceptor out of range none.
        p.on_reply(now, AcceptorIdx(0), &ok(req.round, 0, 1));
        p.on_reply(now, AcceptorIdx(0), &ok(req.round, 0, 1));
        p.on_reply(now, AcceptorIdx(9), &ok(req.round, 0, 1));
        assert_eq!(p.serving(now), None);
        p.on_reply(now, AcceptorIdx(2), &ok(req.round, 0, 1));
        assert_eq!(p.serving(now), Some(1));
        p.fenced(3);
        assert_eq!((p.serving(now), p.known_max()), (None, 3));
    }
}
