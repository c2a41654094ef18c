//! Telling systemd how the edge is doing (`Type=notify`): `READY=1` once it
//! serves and the writer is up, `WATCHDOG=1` while the writer's loop goes
//! round, `STOPPING=1` when shutdown begins. The protocol is a datagram to
//! the unix socket `$NOTIFY_SOCKET` names; no libsystemd.
//!
//! - [`protocol`]: the environment, the messages and the decisions, no I/O;
//! - this file: the socket and the task that ticks [`protocol::Supervision`].

pub mod protocol;

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::stats::WriterStats;
use protocol::{NotifySocket, Supervision, WriterSeen};

/// Until the edge is ready and no watchdog is on, readiness is looked at
/// this often (start-up normally ends ready: the first look sends it).
const READY_POLL: Duration = Duration::from_millis(100);

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    /// The watchdog interval, when systemd asked for pings.
    watchdog: Option<Duration>,
    /// A send has failed (later failures are logged at debug: one line a
    /// ping would flood the journal).
    failed: AtomicBool,
}

impl Notifier {
    /// From the environment systemd sets; none when `$NOTIFY_SOCKET` is
    /// unset (nothing is ever sent) or cannot be used (logged).
    pub fn from_env() -> Option<Notifier> {
        let socket = protocol::notify_socket(std::env::var_os("NOTIFY_SOCKET").as_deref());
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let watchdog =
            protocol::watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "the systemd watchdog is off");
                    None
                });
        match socket {
            Ok(Some(at)) => Notifier::connect(&at, watchdog)
                .inspect_err(|e| tracing::warn!(error = %e, socket = ?at, "not notifying systemd"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "not notifying systemd");
                None
            }
        }
    }

    /// An unbound, non-blocking datagram socket aimed at `at`.
    pub fn connect(at: &NotifySocket, watchdog: Option<Duration>) -> std::io::Result<Notifier> {
        let to = match at {
            NotifySocket::Path(p) => SocketAddr::from_pathname(p)?,
            NotifySocket::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            to,
            watchdog,
            failed: AtomicBool::new(false),
        })
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`KEY=value` lines). A failure is logged and
    /// otherwise ignored: systemd's absence must not stop the edge.
    pub fn notify(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.to) {
            if self.failed.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, message, "sd_notify failed");
            } else {
                tracing::warn!(error = %e, message, "sd_notify failed (further failures logged at debug)");
            }
        }
    }
}

/// Ticks [`Supervision`] with what `stats` shows: `READY=1` (with `status`)
/// once ready, then, with a watchdog, a ping each half interval while the
/// writer advances. Ends when `stop` turns true, or after `READY=1` when
/// there is no watchdog.
pub fn spawn(
    notifier: Arc<Notifier>,
    stats: Arc<WriterStats>,
    status: String,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let every = notifier.watchdog.map_or(READY_POLL, protocol::ping_every);
    tokio::spawn(async move {
        let mut supervision = Supervision::new();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|down| *down) => return,
            }
            let seen = WriterSeen {
                ready: stats.is_ready(),
                alive: stats.writer_alive.load(Ordering::Relaxed),
                heartbeats: WriterStats::get(&stats.heartbeats),
            };
            let tick = supervision.tick(seen, notifier.watchdog.is_some());
            if tick.ready {
                notifier.notify(&format!("{}\nSTATUS={status}", protocol::READY));
                tracing::debug!("told systemd the edge is ready");
            }
            if tick.ping {
                notifier.notify(protocol::WATCHDOG);
            }
            if tick.stalled {
                tracing::error!(
                    heartbeats = seen.heartbeats,
                    alive = seen.alive,
                    "the writer made no progress since the last watchdog tick: pings withheld, systemd will restart the edge"
                );
            }
            if notifier.watchdog.is_none() && supervision.is_ready_sent() {
                return;
            }
        }
    })
}
