//! systemd's view of a real `pahlawan edge run`: with `NOTIFY_SOCKET` on a
//! datagram socket this test binds (as systemd would for `Type=notify`),
//! `READY=1` comes once `/readyz` says ready, `WATCHDOG=1` pings follow
//! while the writer goes round its loop — and stop while it is stuck on a
//! database another process holds locked — and SIGTERM says `STOPPING=1`.
//! Without `NOTIFY_SOCKET` nothing is sent; a socket nobody reads does not
//! stop the edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, admin_client, post};
use serde_json::json;
use tokio::net::UnixDatagram;

mod common;

/// The watchdog interval the edge is given: short, so pings come often.
const WATCHDOG: Duration = Duration::from_secs(2);

/// `pahlawan edge run` on a free port with `env`; its base URL.
fn start_edge(data_dir: &Path, env: &[(&str, &OsStr)]) -> (Proc, String) {
    common::edge_in(data_dir, env)
}

/// The socket systemd would listen on, and the edge's environment for it.
struct FakeSystemd {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    usec: String,
}

impl FakeSystemd {
    fn bind(dir: &Path) -> FakeSystemd {
        let path = dir.join("notify.sock");
        FakeSystemd {
            socket: UnixDatagram::bind(&path).expect("bind the notify socket"),
            path,
            usec: WATCHDOG.as_micros().to_string(),
        }
    }

    fn env(&self) -> [(&str, &OsStr); 2] {
        [
            ("NOTIFY_SOCKET", self.path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new(&self.usec)),
        ]
    }

    /// Every message already queued on the socket.
    fn drain(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.try_recv(&mut buf) {
            out.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 messages"));
        }
        out
    }

    /// The next message, waiting for it.
    async fn next(&self, what: &str) -> String {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(testkit::DEADLINE, self.socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("recv");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8 messages")
    }

    /// Waits for `n` more `WATCHDOG=1` pings, then gives their arrival times.
    async fn pings(&self, n: usize) -> Vec<Instant> {
        let mut at = Vec::new();
        while at.len() < n {
            let m = self.next("a WATCHDOG=1 ping").await;
            assert_eq!(m, "WATCHDOG=1", "only pings after READY=1");
            at.push(Instant::now());
        }
        at
    }
}

/// Whether `message` holds the line `line` (messages are `KEY=value` lines).
fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

async fn readyz(base: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("GET /readyz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_when_readyz_says_ready_then_pings_then_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let systemd = FakeSystemd::bind(dir.path());
    let (mut edge, base) = start_edge(&dir.path().join("data"), &systemd.env());

    let first = systemd.next("READY=1").await;
    assert!(
        has_line(&first, "READY=1"),
        "the first message is READY=1: {first:?}"
    );
    assert!(
        first
            .lines()
            .any(|l| l.starts_with("STATUS=serving on 127.0.0.1:")),
        "READY=1 says where it serves: {first:?}"
    );
    // When READY=1 has arrived, /readyz already says ready.
    let (status, body) = readyz(&base).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));

    // The pings keep coming while the edge idles (the writer's heartbeat)...
    systemd.pings(3).await;
    // ...and while it works.
    let c = admin_client(&dir.path().join("data"));
    for i in 0..3 {
        let (s, _) = post(&c, format!("{base}/api/v1/providers"), provider(i))
            .await
            .unwrap();
        assert_eq!(s, 201);
    }
    systemd.pings(2).await;

    edge.terminate();
    let after = systemd.drain();
    let stopping = after
        .iter()
        .position(|m| has_line(m, "STOPPING=1"))
        .unwrap_or_else(|| panic!("STOPPING=1 on SIGTERM, got {after:?}"));
    assert!(
        after[stopping + 1..].is_empty(),
        "nothing after STOPPING=1: {after:?}"
    );
}

fn provider(i: u32) -> serde_json::Value {
    json!({"name": format!("Toko {i}"), "lat": -6.2, "lon": 106.816,
        "contact_phone": "+62 21 555 1234", "contact_email": "toko@example.org"})
}

/// A writer that cannot get the database's write lock (an operator's
/// `sqlite3` holding a transaction open) waits in one group for the busy
/// timeout, again and again while requests come: its loop stops, and with
/// it the pings, longer than the watchdog interval — systemd would restart
/// the edge. Once the lock is let go the pings come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stuck_on_the_database_lock_stops_the_pings_until_it_moves_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let systemd = FakeSystemd::bind(dir.path());
    let (_edge, base) = start_edge(&data, &systemd.env());
    assert!(has_line(&systemd.next("READY=1").await, "READY=1"));
    systemd.pings(1).await;

    let conn = rusqlite::Connection::open(data.join("edge.sqlite3")).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Requests keep the writer trying (each waits out the busy timeout and
    // is answered 503).
    let held = Arc::new(AtomicBool::new(true));
    let load = tokio::spawn({
        let (c, base, held) = (admin_client(&data), base.clone(), held.clone());
        async move {
            let mut i = 0;
            while held.load(Ordering::Relaxed) {
                i += 1;
                let _ = post(&c, format!("{base}/api/v1/providers"), provider(i)).await;
            }
        }
    });
    let mut last = Instant::now();
    let what = format!("no WATCHDOG=1 for longer than WatchdogSec ({WATCHDOG:?})");
    testkit::eventually(&what, || {
        let pinged = systemd.drain().iter().any(|m| has_line(m, "WATCHDOG=1"));
        if pinged {
            last = Instant::now();
        }
        std::future::ready((last.elapsed() > WATCHDOG).then_some(()))
    })
    .await;

    conn.execute_batch("ROLLBACK").unwrap();
    held.store(false, Ordering::Relaxed);
    load.await.unwrap();
    systemd.pings(2).await;
    let (status, _) = readyz(&base).await;
    assert_eq!(status, 200, "ready again");
}

/// Without `NOTIFY_SOCKET` (even with `WATCHDOG_USEC` inherited) nothing
/// is sent; with one nobody listens on, the edge still serves and stops
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_notify_socket_nothing_is_sent_and_a_dead_one_does_not_stop_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let systemd = FakeSystemd::bind(dir.path());
    let usec = [("WATCHDOG_USEC", OsStr::new(&systemd.usec))];
    let (mut edge, base) = start_edge(&dir.path().join("a"), &usec);
    assert_eq!(readyz(&base).await.0, 200);
    edge.terminate();
    // Everything the edge sent was sent before it exited.
    assert_eq!(
        systemd.drain(),
        Vec::<String>::new(),
        "nothing without NOTIFY_SOCKET"
    );

    let nobody = dir.path().join("nobody.sock");
    let env = [
        ("NOTIFY_SOCKET", nobody.as_os_str()),
        ("WATCHDOG_USEC", OsStr::new(&systemd.usec)),
    ];
    let (mut edge, base) = start_edge(&dir.path().join("b"), &env);
    assert_eq!(readyz(&base).await.0, 200);
    edge.terminate();
}
