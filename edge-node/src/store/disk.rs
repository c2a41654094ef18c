//! A full disk, decided: when the data directory's free space falls under a
//! floor (`store.min_free_mib`, measured before every group), or a commit
//! fails because the disk is full
//! (`SQLITE_FULL`), the writer stops trying to write and answers every
//! command at once with a disk-full refusal (the API's 507). It does not
//! apply a group only to watch it fail, roll back and reload the whole
//! engine from SQLite each time. It lets writes through again when free
//! space is back above the floor (and at least [`RESUME_FREE_BYTES`]), or
//! lets one group through every `probe_every` anyway (space can be held for
//! root, or by a quota the free-space figure does not show): the group then
//! either commits — writes resume — or fails again.
//!
//! [`DiskGuard`] is the decision, I/O-free, on the writer's clock; the writer
//! passes it the free space it measured with [`free_bytes`].

use std::path::Path;

use sync_protocol::{Duration, Timestamp};

/// Writes resume only with at least this much free, whatever the floor: a
/// WAL checkpoint's worth (1,000 pages of 4 KiB) and room to spare.
pub const RESUME_FREE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskPolicy {
    /// Refuse writes while less than this is free (0: only a failed commit
    /// stops them).
    pub min_free_bytes: u64,
    /// While refusing, let one group try anyway this often.
    pub probe_every: Duration,
}

/// Why the writer is refusing writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusing {
    /// Free space fell under the floor.
    BelowFloor { free: u64 },
    /// A commit failed: the disk is full. `free` is what the file system
    /// said was free then (a quota, or root's reserve, can make a full disk
    /// look roomy: only space that *grew* since, or a probe, resumes).
    CommitFailed { free: Option<u64> },
}

/// What [`DiskGuard::admit`] decided, and whether that changed anything
/// worth one log line (never one per command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write as usual.
    Write,
    /// Write again: space is back after refusing.
    Resume { free: Option<u64> },
    /// Still refusing, but let this group try: if it commits, writes
    /// resume ([`DiskGuard::committed`]).
    Probe,
    /// Refuse the group; `newly` on the first refusal of a spell.
    Refuse { why: Refusing, newly: bool },
}

#[derive(Debug, Clone)]
pub struct DiskGuard {
    policy: DiskPolicy,
    refusing: Option<Refusing>,
    /// When a group last tried while refusing (or the commit failed).
    probed_at: Option<Timestamp>,
}

impl DiskGuard {
    pub fn new(policy: DiskPolicy) -> DiskGuard {
        DiskGuard {
            policy,
            refusing: None,
            probed_at: None,
        }
    }

    /// Refusing writes now (the metric, the wait for timers).
    pub fn is_refusing(&self) -> bool {
        self.refusing.is_some()
    }

    /// Whether a group may write at `now`. `free` measures the free space
    /// (bytes; `None` when it cannot be measured). It is called for every
    /// group, with or without a floor: a `statvfs` costs a microsecond or
    /// two against the group's fsync of milliseconds, and a floor checked
    /// once a second lets a burst write straight through it.
    pub fn admit(&mut self, now: Timestamp, free: impl FnOnce() -> Option<u64>) -> Admit {
        if self.policy.min_free_bytes == 0 && self.refusing.is_none() {
            return Admit::Write;
        }
        let free = free();
        let floor = self.policy.min_free_bytes;
        match self.refusing {
            None => match free {
                Some(f) if f < floor => {
                    let why = Refusing::BelowFloor { free: f };
                    self.refusing = Some(why);
                    self.probed_at = Some(now);
                    Admit::Refuse { why, newly: true }
                }
                _ => Admit::Write,
            },
            Some(why) => {
                let space_back = self.space_back(why, free);
                let probe_due = self
                    .probed_at
                    .is_none_or(|at| now - at >= self.policy.probe_every || now < at);
                // Under the floor, only space coming back resumes writes: a
                // probe would write into the reserve the floor keeps.
                let below_floor = free.is_some_and(|f| f < floor);
                if space_back {
                    self.refusing = None;
                    Admit::Resume { free }
                } else if probe_due && !below_floor {
                    self.probed_at = Some(now);
                    Admit::Probe
                } else {
                    Admit::Refuse { why, newly: false }
                }
            }
        }
    }

    /// Whether `free` (measured now) shows space back after `why`.
    fn space_back(&self, why: Refusing, free: Option<u64>) -> bool {
        let floor = self.policy.min_free_bytes.max(RESUME_FREE_BYTES);
        match (why, free) {
            (_, None) => false,
            (Refusing::BelowFloor { .. }, Some(f)) => f >= floor,
            (Refusing::CommitFailed { free: then }, Some(f)) => {
                f >= floor && then.is_none_or(|t| f >= t.saturating_add(RESUME_FREE_BYTES))
            }
        }
    }

    /// With nothing to write: whether free space is back, which ends the
    /// spell (so the gauge and the alert clear on an idle edge too). Never
    /// a probe: a group that writes nothing proves nothing.
    pub fn idle_check(&mut self, free: impl FnOnce() -> Option<u64>) -> bool {
        let Some(why) = self.refusing else {
            return false;
        };
        if self.space_back(why, free()) {
            self.refusing = None;
            true
        } else {
            false
        }
    }

    /// A group committed. Returns whether that ended a spell of refusing
    /// (a probe that got through).
    pub fn committed(&mut self) -> bool {
        self.refusing.take().is_some()
    }

    /// A group failed to commit because the disk is full. Returns whether
    /// this began a spell of refusing (log it then, not each time).
    pub fn commit_failed(&mut self, now: Timestamp, free: Option<u64>) -> bool {
        let newly = self.refusing.is_none();
        self.refusing = Some(Refusing::CommitFailed { free });
        self.probed_at = Some(now);
        newly
    }
}

/// Bytes an unprivileged writer may still use in `dir`'s file system (`None`
/// when it cannot be measured).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Whether a SQLite error means the disk (or a quota) is full.
pub fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);
    const MIB: u64 = 1024 * 1024;

    fn at(ms: i64) -> Timestamp {
        T0 + Duration::from_ms(ms)
    }

    fn guard(min_free_mib: u64) -> DiskGuard {
        DiskGuard::new(DiskPolicy {
            min_free_bytes: min_free_mib * MIB,
            probe_every: Duration::from_ms(10_000),
        })
    }

    #[test]
    fn free_space_is_measured_for_every_group_under_a_floor_and_never_without_one() {
        let mut g = guard(64);
        let mut measured = 0;
        for ms in 0..30 {
            let a = g.admit(at(ms), || {
                measured += 1;
                Some(1_000 * MIB)
            });
            assert_eq!(a, Admit::Write);
        }
        assert_eq!(measured, 30);
        let mut no_floor = guard(0);
        assert_eq!(no_floor.admit(at(0), || unreachable!()), Admit::Write);
        no_floor.commit_failed(at(1), Some(0));
        assert!(
            matches!(no_floor.admit(at(2), || Some(0)), Admit::Refuse { .. }),
            "measured while refusing"
        );
    }

    #[test]
    fn under_the_floor_writes_are_refused_until_space_is_back_and_no_probe_eats_the_reserve() {
        let mut g = guard(64);
        assert_eq!(
            g.admit(at(0), || Some(63 * MIB)),
            Admit::Refuse {
                why: Refusing::BelowFloor { free: 63 * MIB },
                newly: true
            }
        );
        assert!(g.is_refusing());
        // Every group while refusing measures again; still short, even long
        // after a probe would be due.
        for ms in [100, 5_000, 60_000] {
            assert!(matches!(
                g.admit(at(ms), || Some(60 * MIB)),
                Admit::Refuse { newly: false, .. }
            ));
        }
        assert_eq!(
            g.admit(at(61_000), || Some(64 * MIB)),
            Admit::Resume {
                free: Some(64 * MIB)
            }
        );
        assert!(!g.is_refusing());
        assert_eq!(g.admit(at(61_100), || Some(70 * MIB)), Admit::Write);
    }

    #[test]
    fn after_a_failed_commit_writes_resume_when_space_grew_or_a_probe_is_due() {
        let mut g = guard(0);
        assert!(g.commit_failed(at(0), Some(MIB)), "a new spell");
        assert!(!g.commit_failed(at(10), Some(MIB)), "the same spell");
        // A little more room, but not RESUME_FREE_BYTES more: still refusing.
        assert_eq!(
            g.admit(at(500), || Some(2 * MIB)),
            Admit::Refuse {
                why: Refusing::CommitFailed { free: Some(MIB) },
                newly: false
            }
        );
        assert_eq!(
            g.admit(at(600), || Some(MIB + RESUME_FREE_BYTES)),
            Admit::Resume {
                free: Some(MIB + RESUME_FREE_BYTES)
            }
        );
        assert!(!g.committed(), "resumed already: no spell to end");
        // It fails again: a new spell; the next try waits for the probe.
        assert!(g.commit_failed(at(700), None));
        assert!(matches!(
            g.admit(at(5_000), || None),
            Admit::Refuse { newly: false, .. }
        ));
        assert_eq!(
            g.admit(at(10_700), || None),
            Admit::Probe,
            "unmeasurable free space: a probe decides"
        );
        assert!(g.is_refusing(), "a probe is not yet a resumption");
        assert!(
            !g.commit_failed(at(10_710), None),
            "a failed probe: the same spell"
        );
        assert!(matches!(g.admit(at(10_800), || None), Admit::Refuse { .. }));
        assert_eq!(g.admit(at(20_710), || None), Admit::Probe);
        assert!(g.committed(), "the probe committed: the spell is over");
        assert!(!g.is_refusing());
        assert_eq!(g.admit(at(20_800), || unreachable!()), Admit::Write);
    }

    #[test]
    fn a_quota_that_looks_roomy_does_not_resume_every_group_only_probes_do() {
        // The file system says 10 GiB free, but the commit failed (a quota).
        let mut g = guard(64);
        let roomy = 10 * 1024 * MIB;
        g.commit_failed(at(0), Some(roomy));
        for ms in [1, 100, 5_000, 9_999] {
            assert!(
                matches!(g.admit(at(ms), || Some(roomy)), Admit::Refuse { .. }),
                "at {ms} ms: refused, not retried"
            );
        }
        assert_eq!(g.admit(at(10_000), || Some(roomy)), Admit::Probe);
        assert!(!g.commit_failed(at(10_001), Some(roomy)));
        assert!(matches!(
            g.admit(at(10_002), || Some(roomy)),
            Admit::Refuse { .. }
        ));
    }

    #[test]
    fn an_idle_edge_notices_space_coming_back_without_a_write() {
        let mut g = guard(64);
        assert!(
            !g.idle_check(|| unreachable!()),
            "not refusing: not measured"
        );
        assert!(matches!(g.admit(at(0), || Some(MIB)), Admit::Refuse { .. }));
        assert!(!g.idle_check(|| Some(10 * MIB)));
        assert!(g.is_refusing());
        assert!(g.idle_check(|| Some(100 * MIB)));
        assert!(!g.is_refusing());
    }

    #[test]
    fn a_clock_that_steps_back_does_not_freeze_the_probes() {
        let mut g = guard(0);
        g.commit_failed(at(10_000), None);
        assert_eq!(
            g.admit(at(0), || None),
            Admit::Probe,
            "probed after the clock went back"
        );
    }

    #[test]
    fn free_bytes_measures_a_real_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).is_some_and(|f| f > 0));
        assert_eq!(free_bytes(&dir.path().join("missing")), None);
    }
}
