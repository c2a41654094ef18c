//! The I/O-free half of the `sd_notify` protocol: reading `$NOTIFY_SOCKET`,
//! `$WATCHDOG_USEC` and `$WATCHDOG_PID` the way `sd_notify(3)` and
//! `sd_watchdog_enabled(3)` do, the messages, and [`Supervision`] — what to
//! tell systemd at each watchdog tick, given what the writer shows.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

/// `READY=1`: start-up is finished (`Type=notify` units leave "activating").
pub const READY: &str = "READY=1";
/// `WATCHDOG=1`: a keep-alive ping.
pub const WATCHDOG: &str = "WATCHDOG=1";
/// `STOPPING=1`: shutdown has begun.
pub const STOPPING: &str = "STOPPING=1";

/// The writer wakes at most this long apart when a watchdog is on, however
/// long the interval (it also wakes for every group and every timer).
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(1);
/// ... and at least this long apart, however short the interval.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// Where `$NOTIFY_SOCKET` says systemd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifySocket {
    /// A socket file (`/run/systemd/notify`).
    Path(PathBuf),
    /// A Linux abstract socket: `@name`, the name without the `@`.
    Abstract(Vec<u8>),
}

/// An environment systemd would not have set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract @name")]
    Socket(String),
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    Usec(String),
    #[error("WATCHDOG_PID={0:?} is not a process id")]
    Pid(String),
}

/// `$NOTIFY_SOCKET`: none when unset or empty (not run by systemd: nothing
/// is sent).
pub fn notify_socket(value: Option<&OsStr>) -> Result<Option<NotifySocket>, EnvError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Ok(Some(NotifySocket::Path(PathBuf::from(value)))),
        Some(b'@') if bytes.len() > 1 => Ok(Some(NotifySocket::Abstract(bytes[1..].to_vec()))),
        _ => Err(EnvError::Socket(value.to_string_lossy().into_owned())),
    }
}

/// The watchdog interval as `sd_watchdog_enabled` reads it: none when
/// `$WATCHDOG_USEC` is unset, or when `$WATCHDOG_PID` names another process
/// (the variables were inherited, the watchdog is not ours to feed).
pub fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Result<Option<Duration>, EnvError> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    let micros = usec
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0 && n < u64::MAX)
        .ok_or_else(|| EnvError::Usec(usec.to_string()))?;
    if let Some(pid) = pid {
        let pid = pid
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| EnvError::Pid(pid.to_string()))?;
        if pid != my_pid {
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(micros)))
}

/// How often to ping: half the interval, as `sd_watchdog_enabled(3)` advises.
pub fn ping_every(watchdog: Duration) -> Duration {
    watchdog / 2
}

/// How often the writer must at least go round its loop so that a healthy,
/// idle writer is seen to advance between two pings (four beats a ping).
pub fn heartbeat_every(watchdog: Duration) -> Duration {
    (ping_every(watchdog) / 4).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT)
}

/// What the writer shows at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSeen {
    /// `/readyz` would say ready (the writer runs and can commit).
    pub ready: bool,
    /// The writer thread is running.
    pub alive: bool,
    /// Times round its loop so far.
    pub heartbeats: u64,
}

/// What to send at a tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    pub ready: bool,
    pub ping: bool,
    /// The writer stopped advancing at this tick (after advancing before):
    /// worth one log line, not one per tick.
    pub stalled: bool,
}

/// Ticks of the notifier: `READY=1` once, at the first tick the edge is
/// ready; after that (with a watchdog) `WATCHDOG=1` at each tick the writer
/// is alive and went round its loop since the tick before. A writer stuck in
/// one group, or ended, stops the pings and systemd restarts the edge.
///
/// A writer that runs but cannot commit (not ready) keeps the pings: a
/// restart would not mend the disk, and `/readyz` already says so.
#[derive(Debug, Clone, Default)]
pub struct Supervision {
    ready_sent: bool,
    /// The heartbeat count at the tick before.
    last: Option<u64>,
    stalled: bool,
}

impl Supervision {
    pub fn new() -> Supervision {
        Supervision::default()
    }

    /// Whether `READY=1` has been sent.
    pub fn is_ready_sent(&self) -> bool {
        self.ready_sent
    }

    pub fn tick(&mut self, writer: WriterSeen, watchdog: bool) -> Tick {
        let ready = !self.ready_sent && writer.ready;
        self.ready_sent |= ready;
        if !self.ready_sent || !watchdog {
            return Tick {
                ready,
                ..Tick::default()
            };
        }
        let advanced = self.last.is_none_or(|last| writer.heartbeats > last);
        debug_assert!(
            self.last.is_none_or(|last| writer.heartbeats >= last),
            "heartbeats only grow"
        );
        self.last = Some(writer.heartbeats);
        let ping = writer.alive && advanced;
        let stalled = !ping && !self.stalled;
        self.stalled = !ping;
        Tick {
            ready,
            ping,
            stalled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type SocketRow = (Option<&'static str>, Result<Option<NotifySocket>, EnvError>);
    type WatchdogRow = (
        Option<&'static str>,
        Option<&'static str>,
        Result<Option<Duration>, EnvError>,
    );

    #[test]
    fn notify_socket_is_a_path_an_abstract_name_or_nothing() {
        let rows: &[SocketRow] = &[
            (None, Ok(None)),
            (Some(""), Ok(None)),
            (
                Some("/run/systemd/notify"),
                Ok(Some(NotifySocket::Path("/run/systemd/notify".into()))),
            ),
            (
                Some("@/org/freedesktop/systemd1/notify/42"),
                Ok(Some(NotifySocket::Abstract(
                    b"/org/freedesktop/systemd1/notify/42".to_vec(),
                ))),
            ),
            (Some("@"), Err(EnvError::Socket("@".into()))),
            (
                Some("relative/sock"),
                Err(EnvError::Socket("relative/sock".into())),
            ),
            (
                Some("vsock:2:1234"),
                Err(EnvError::Socket("vsock:2:1234".into())),
            ),
        ];
        for (value, want) in rows {
            assert_eq!(
                &notify_socket(value.map(OsStr::new)),
                want,
                "NOTIFY_SOCKET={value:?}"
            );
        }
    }

    #[test]
    fn the_watchdog_is_ours_only_when_usec_is_set_and_the_pid_is_ours_or_unset() {
        let me = 4242;
        let two_s = Ok(Some(Duration::from_secs(2)));
        let rows: &[WatchdogRow] = &[
            (None, None, Ok(None)),
            (None, Some("4242"), Ok(None)),
            (Some("2000000"), None, two_s.clone()),
            (Some("2000000"), Some("4242"), two_s),
            (Some("2000000"), Some("1"), Ok(None)),
            (Some("0"), None, Err(EnvError::Usec("0".into()))),
            (Some("-5"), None, Err(EnvError::Usec("-5".into()))),
            (Some("2s"), None, Err(EnvError::Usec("2s".into()))),
            (
                Some("18446744073709551615"),
                None,
                Err(EnvError::Usec("18446744073709551615".into())),
            ),
            (Some("2000000"), Some("me"), Err(EnvError::Pid("me".into()))),
            (Some("2000000"), Some("0"), Err(EnvError::Pid("0".into()))),
        ];
        for (usec, pid, want) in rows {
            assert_eq!(
                &watchdog_interval(*usec, *pid, me),
                want,
                "WATCHDOG_USEC={usec:?} WATCHDOG_PID={pid:?}"
            );
        }
    }

    #[test]
    fn pings_come_at_half_the_interval_and_the_writer_beats_four_times_a_ping_within_bounds() {
        let rows = [
            (
                Duration::from_secs(30),
                Duration::from_secs(15),
                MAX_HEARTBEAT,
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(1),
                Duration::from_millis(250),
            ),
            (
                Duration::from_millis(20),
                Duration::from_millis(10),
                MIN_HEARTBEAT,
            ),
        ];
        for (watchdog, ping, beat) in rows {
            assert_eq!(ping_every(watchdog), ping, "{watchdog:?}");
            assert_eq!(heartbeat_every(watchdog), beat, "{watchdog:?}");
        }
    }

    fn seen(ready: bool, alive: bool, heartbeats: u64) -> WriterSeen {
        WriterSeen {
            ready,
            alive,
            heartbeats,
        }
    }

    /// Runs ticks from a fresh [`Supervision`]; each output as `R` (ready),
    /// `P` (ping), `S` (stalled), `-` (nothing), ticks separated by spaces.
    fn run(watchdog: bool, ticks: &[WriterSeen]) -> String {
        let mut s = Supervision::new();
        ticks
            .iter()
            .map(|w| {
                let t = s.tick(*w, watchdog);
                let mut out = String::new();
                for (on, c) in [(t.ready, 'R'), (t.ping, 'P'), (t.stalled, 'S')] {
                    if on {
                        out.push(c);
                    }
                }
                if out.is_empty() {
                    out.push('-');
                }
                out
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn ready_once_then_pings_while_the_writer_advances() {
        let rows: &[(&str, bool, &[WriterSeen], &str)] = &[
            (
                "not ready yet: nothing, then READY with the first ping",
                true,
                &[
                    seen(false, true, 0),
                    seen(true, true, 1),
                    seen(true, true, 5),
                ],
                "- RP P",
            ),
            (
                "without a watchdog: READY once, never a ping",
                false,
                &[
                    seen(true, true, 1),
                    seen(true, true, 2),
                    seen(false, true, 3),
                ],
                "R - -",
            ),
            (
                "a writer stuck in a group stops the pings, logged once; it resumes",
                true,
                &[
                    seen(true, true, 1),
                    seen(true, true, 2),
                    seen(true, true, 2),
                    seen(true, true, 2),
                    seen(true, true, 3),
                ],
                "RP P S - P",
            ),
            (
                "a writer thread that ended stops the pings for good",
                true,
                &[
                    seen(true, true, 1),
                    seen(false, false, 2),
                    seen(false, false, 2),
                ],
                "RP S -",
            ),
            (
                "a writer that cannot commit but runs keeps the pings",
                true,
                &[
                    seen(true, true, 1),
                    seen(false, true, 2),
                    seen(false, true, 3),
                ],
                "RP P P",
            ),
        ];
        for (what, watchdog, ticks, want) in rows {
            assert_eq!(run(*watchdog, ticks), *want, "{what}");
        }
    }
}
