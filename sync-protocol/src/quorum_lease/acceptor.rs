//! One acceptor of one cell: the hub's or an edge's promise about who may
//! write the cell.

use serde::{Deserialize, Serialize};

use super::{Member, Mono, Release, Reply, Request, Timing, Verdict};

/// What an acceptor keeps on disk, written before it answers a request
/// that changed it (the shell's job: [`Acceptor::on_request`] says when).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Durable {
    /// The highest epoch granted here, and to whom.
    pub max_epoch: u64,
    pub holder: Option<Member>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Promise {
    holder: Member,
    round: u64,
    until: Mono,
}

#[derive(Clone, Debug)]
pub struct Acceptor {
    cell: u64,
    group_len: u8,
    timing: Timing,
    durable: Durable,
    promise: Option<Promise>,
    quiet_until: Mono,
}

impl Acceptor {
    /// An acceptor (re)started at `now` with what it had on disk. It
    /// refuses everyone for `ttl + drift_margin`: whatever it promised
    /// before it stopped has run out by then.
    pub fn start(
        cell: u64,
        group_len: u8,
        timing: Timing,
        durable: Durable,
        now: Mono,
    ) -> Acceptor {
        Acceptor {
            cell,
            group_len,
            timing,
            durable,
            promise: None,
            quiet_until: now + timing.ttl + timing.drift_margin,
        }
    }

    pub fn durable(&self) -> Durable {
        self.durable
    }

    /// The member this acceptor has promised the cell to, if the promise
    /// still runs at `now`.
    pub fn promised_to(&self, now: Mono) -> Option<Member> {
        self.promise.filter(|p| p.until > now).map(|p| p.holder)
    }

    /// Answers `req` at `now`. The second value is true when [`Durable`]
    /// changed: persist it before sending the reply.
    pub fn on_request(&mut self, now: Mono, req: &Request) -> (Reply, bool) {
        let verdict = self.judge(now, req);
        let mut changed = false;
        if verdict == Verdict::Accepted {
            changed = self.durable.max_epoch != req.epoch;
            self.durable = Durable {
                max_epoch: req.epoch,
                holder: Some(req.from),
            };
            let mut promise = Promise {
                holder: req.from,
                round: req.round,
                until: now + self.timing.ttl + self.timing.drift_margin,
            };
            // A late copy of an older round extends the promise (blocking
            // longer is always safe) but never takes its round back, or a
            // late release of that older round would end a promise the
            // holder's newer rounds rely on.
            if let Some(old) = self.promise.filter(|p| p.holder == req.from) {
                promise.round = promise.round.max(old.round);
                promise.until = promise.until.max(old.until);
            }
            self.promise = Some(promise);
        }
        let reply = Reply {
            cell: self.cell,
            to: req.from,
            round: req.round,
            verdict,
            max_epoch: self.durable.max_epoch,
        };
        (reply, changed)
    }

    fn judge(&self, now: Mono, req: &Request) -> Verdict {
        if req.cell != self.cell || req.from.0 >= self.group_len {
            return Verdict::NotAssigned;
        }
        if now < self.quiet_until {
            return Verdict::Restarting;
        }
        if let Some(holder) = self.promised_to(now)
            && holder != req.from
        {
            return Verdict::HeldBy(holder);
        }
        let d = self.durable;
        let fresh = req.epoch > d.max_epoch;
        let same_holder = req.epoch == d.max_epoch && d.holder == Some(req.from);
        if fresh || same_holder {
            Verdict::Accepted
        } else {
            Verdict::StaleEpoch
        }
    }

    /// Forgets the promise of the released round (a later round of the
    /// same proposer, or anyone else's, stays).
    pub fn on_release(&mut self, rel: &Release) {
        if rel.cell == self.cell
            && let Some(p) = self.promise
            && p.holder == rel.from
            && p.round == rel.round
        {
            self.promise = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    const T: Timing = Timing::DEFAULT;

    fn req(from: u8, epoch: u64, round: u64) -> Request {
        Request {
            cell: 7,
            from: Member(from),
            epoch,
            round,
        }
    }

    fn warm(now: i64) -> Acceptor {
        let start = Mono::from_ms(now) + Duration::from_ms(-1_600);
        Acceptor::start(7, 3, T, Durable::default(), start)
    }

    #[test]
    fn verdict_table() {
        let at = Mono::from_ms(10_000);
        let mut a = warm(10_000);
        let (r, changed) = a.on_request(at, &req(0, 1, 1));
        assert_eq!((r.verdict, changed), (Verdict::Accepted, true));
        let later = at + Duration::from_ms(1_599);
        let table = [
            (req(1, 2, 1), Verdict::HeldBy(Member(0))),
            (req(3, 9, 1), Verdict::NotAssigned),
            (
                Request {
                    cell: 8,
                    ..req(0, 1, 2)
                },
                Verdict::NotAssigned,
            ),
            (req(0, 1, 2), Verdict::Accepted), // renewal, same epoch
        ];
        for (q, want) in table {
            assert_eq!(a.on_request(later, &q).0.verdict, want, "{q:?}");
        }
        // The promise runs ttl + margin from the last accepted request.
        let free = later + Duration::from_ms(1_600);
        assert_eq!(a.promised_to(free), None);
        let table = [
            (req(1, 1, 1), Verdict::StaleEpoch, 1), // the old holder's epoch
            (req(1, 2, 1), Verdict::Accepted, 2),
            (req(0, 2, 3), Verdict::HeldBy(Member(1)), 2),
        ];
        for (q, want, max_epoch) in table {
            let (r, _) = a.on_request(free, &q);
            assert_eq!((r.verdict, r.max_epoch), (want, max_epoch), "{q:?}");
        }
    }

    #[test]
    fn a_restarted_acceptor_refuses_everyone_for_ttl_plus_margin() {
        let now = Mono::from_ms(5_000);
        let durable = Durable {
            max_epoch: 4,
            holder: Some(Member(1)),
        };
        let mut a = Acceptor::start(7, 3, T, durable, now);
        let quiet = now + Duration::from_ms(1_599);
        assert_eq!(
            a.on_request(quiet, &req(0, 5, 1)).0.verdict,
            Verdict::Restarting
        );
        let after = now + Duration::from_ms(1_600);
        assert_eq!(
            a.on_request(after, &req(0, 4, 1)).0.verdict,
            Verdict::StaleEpoch
        );
        assert_eq!(
            a.on_request(after, &req(0, 5, 1)).0.verdict,
            Verdict::Accepted
        );
    }

    #[test]
    fn a_release_frees_only_the_released_round() {
        let now = Mono::from_ms(10_000);
        let mut a = warm(10_000);
        a.on_request(now, &req(1, 1, 4));
        a.on_release(&Release {
            cell: 7,
            from: Member(1),
            round: 3,
        });
        a.on_release(&Release {
            cell: 7,
            from: Member(0),
            round: 4,
        });
        assert_eq!(a.promised_to(now), Some(Member(1)));
        a.on_release(&Release {
            cell: 7,
            from: Member(1),
            round: 4,
        });
        assert_eq!(a.promised_to(now), None);
        // A late copy of an older round does not bring that round back: a
        // late release of it leaves the newer round's promise standing.
        a.on_request(now, &req(1, 1, 6));
        a.on_request(now, &req(1, 1, 5));
        a.on_release(&Release {
            cell: 7,
            from: Member(1),
            round: 5,
        });
        assert_eq!(a.promised_to(now), Some(Member(1)));
        a.on_release(&Release {
            cell: 7,
            from: Member(1),
            round: 6,
        });
        // A replayed grant request of the old round cannot take epoch 1 back
        // from a newer holder.
        a.on_request(now, &req(2, 2, 1));
        assert_eq!(
            a.on_request(now, &req(1, 1, 4)).0.verdict,
            Verdict::HeldBy(Member(2))
        );
    }
}
