//! The driver with the real session cores on both ends of an in-memory
//! stream, on tokio's paused clock: a backlog streams through, the stop
//! signal ends both sides cleanly, a malformed frame is refused, a silent
//! peer gets heartbeats and then the idle timeout, and a shell with more
//! work is brought back at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sync_protocol::session::edge::{EdgeSession, EdgeSessionConfig, SessionError};
use sync_protocol::session::hub::{Action, HubSession, HubSessionError};
use sync_protocol::session::{BatchEvent, EdgeMsg, HubMsg, PROTOCOL_VERSION, RefusalReason};
use sync_protocol::wire::encode_envelope;
use sync_protocol::{Duration, EdgeId, Envelope, Event, SurplusId, Timestamp};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::*;
use crate::frame::read_frame;

const START: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

/// Milliseconds on tokio's clock (paused in these tests) since the test began.
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        START + Duration::from_ms(self.0.elapsed().as_millis() as i64)
    }
}

impl SendHalf for WriteHalf<DuplexStream> {
    async fn finish(&mut self) {
        let _ = self.shutdown().await;
    }
}

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Edge(#[from] SessionError),
    #[error("{0}")]
    Hub(#[from] HubSessionError),
}

fn edge_id() -> EdgeId {
    EdgeId::new("jkt-1").unwrap()
}

fn envelope(seq: u64) -> Vec<u8> {
    encode_envelope(&Envelope {
        edge_id: edge_id(),
        seq,
        lease_epoch: 1,
        at: START,
        trace_context: None,
        event: Event::Expired {
            surplus_id: SurplusId::from_bytes([seq as u8; 16]),
            version: 2,
        },
    })
}

/// An edge shell over an in-memory outbox.
struct EdgeShell {
    outbox: Vec<Vec<u8>>,
}

impl Shell<EdgeSession> for EdgeShell {
    type Error = TestError;

    async fn prepare(
        &mut self,
        core: &mut EdgeSession,
        clock: &dyn Clock,
    ) -> Result<Work, TestError> {
        core.set_committed(self.outbox.len() as u64);
        while let Some(want) = core.wants() {
            let events: Vec<BatchEvent> = self.outbox[want.after as usize..]
                .iter()
                .take(want.max_events)
                .map(|e| BatchEvent {
                    cell: 0,
                    envelope: e.clone(),
                })
                .collect();
            core.send_events(clock.now(), want.after + 1, events);
        }
        Ok(Work::Done)
    }

    async fn act(&mut self, _: &mut EdgeSession, (): (), _: &dyn Clock) -> Result<(), TestError> {
        Ok(())
    }

    async fn wake(&mut self) {
        std::future::pending().await
    }
}

/// A hub shell over an in-memory log; `applied` follows its length.
struct HubShell {
    log: Vec<u64>,
    applied: watch::Sender<u64>,
    /// Pages left to "read" in `prepare`, each one call.
    pages: u32,
    prepares: u32,
}

impl HubShell {
    fn new() -> (HubShell, watch::Receiver<u64>) {
        let (applied, rx) = watch::channel(0);
        (
            HubShell {
                log: Vec::new(),
                applied,
                pages: 0,
                prepares: 0,
            },
            rx,
        )
    }
}

impl Shell<HubSession> for HubShell {
    type Error = TestError;

    async fn prepare(&mut self, _: &mut HubSession, _: &dyn Clock) -> Result<Work, TestError> {
        self.prepares += 1;
        if self.pages == 0 {
            return Ok(Work::Done);
        }
        self.pages -= 1;
        Ok(Work::More)
    }

    async fn act(
        &mut self,
        core: &mut HubSession,
        action: Action,
        clock: &dyn Clock,
    ) -> Result<(), TestError> {
        match action {
            Action::None => {}
            Action::Greet(_) => core.greet(clock.now(), 1, Vec::new()),
            Action::Apply(a) => {
                self.log.extend(a.events.iter().map(|(_, e)| e.seq));
                core.applied(clock.now(), a.last_seq);
                self.applied.send_replace(self.log.len() as u64);
            }
        }
        Ok(())
    }

    async fn wake(&mut self) {
        std::future::pending().await
    }
}

type Halves = (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>);

fn pipe() -> (Halves, Halves) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (tokio::io::split(a), tokio::io::split(b))
}

fn hub_task(
    (recv, mut send): Halves,
    mut shell: HubShell,
    clock: Arc<TokioClock>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(Result<End, TestError>, HubShell)> {
    tokio::spawn(async move {
        let mut core = HubSession::new(edge_id(), 0, clock.now());
        let r = drive(&mut core, &mut shell, recv, &mut send, &*clock, stop).await;
        (r, shell)
    })
}

fn hello() -> EdgeMsg {
    EdgeMsg::Hello {
        protocol: PROTOCOL_VERSION,
        edge_id: edge_id(),
        cells: vec![],
        committed_seq: 0,
        lease_epoch: 0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_backlog_streams_through_and_the_stop_signal_ends_both_sides() {
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let (edge_end, hub_end) = pipe();
    let (hub_shell, mut applied) = HubShell::new();
    let (_hub_stop, hub_stop_rx) = watch::channel(false);
    let hub = hub_task(hub_end, hub_shell, clock.clone(), hub_stop_rx);

    let (stop, stop_rx) = watch::channel(false);
    let edge = tokio::spawn({
        let clock = clock.clone();
        async move {
            let (recv, mut send) = edge_end;
            let mut cfg = EdgeSessionConfig::new(edge_id(), vec![]);
            cfg.max_batch_events = 7;
            let mut core = EdgeSession::new(cfg, clock.now(), 50, 0);
            let mut shell = EdgeShell {
                outbox: (1..=50).map(envelope).collect(),
            };
            let r = drive(&mut core, &mut shell, recv, &mut send, &*clock, stop_rx).await;
            (r, core.acked())
        }
    });
    applied
        .wait_for(|n| *n == 50)
        .await
        .expect("the hub applied all 50");
    stop.send_replace(true);
    let (edge_end, _) = edge.await.unwrap();
    assert_eq!(edge_end.unwrap(), End::Stopped);
    let (hub_end, shell) = hub.await.unwrap();
    assert_eq!(
        hub_end.unwrap(),
        End::PeerFinished,
        "the edge finished its stream"
    );
    assert_eq!(
        shell.log,
        (1..=50).collect::<Vec<u64>>(),
        "once each, in order"
    );
}

#[tokio::test(start_paused = true)]
async fn a_malformed_frame_is_refused_and_the_stream_finished() {
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let ((mut recv, mut send), hub_end) = pipe();
    let (shell, _) = HubShell::new();
    let (_stop, stop_rx) = watch::channel(false);
    let hub = hub_task(hub_end, shell, clock, stop_rx);
    // A length of 3, then bytes that are no message.
    send.write_all(&[0, 0, 0, 3, 2, 250, 250]).await.unwrap();
    let refused = read_frame::<HubMsg, _>(&mut recv).await.unwrap();
    assert_eq!(
        refused,
        Some(HubMsg::Refused {
            reason: RefusalReason::Malformed
        })
    );
    assert_eq!(
        read_frame::<HubMsg, _>(&mut recv).await.unwrap(),
        None,
        "then a clean end"
    );
    let (end, _) = hub.await.unwrap();
    assert!(matches!(
        end,
        Err(TestError::Hub(HubSessionError::Refused(
            RefusalReason::Malformed
        )))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_gets_heartbeats_then_the_idle_timeout() {
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let ((mut recv, mut send), hub_end) = pipe();
    let (shell, _) = HubShell::new();
    let (_stop, stop_rx) = watch::channel(false);
    let hub = hub_task(hub_end, shell, clock, stop_rx);
    write_frame(&mut send, &hello()).await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = read_frame::<HubMsg, _>(&mut recv).await.unwrap() {
        got.push(m);
    }
    let beat = |s: i64| HubMsg::Heartbeat {
        at: START + Duration::from_secs(s),
    };
    assert_eq!(
        got,
        [
            HubMsg::Welcome {
                high_water: 0,
                lease_epoch: 1,
                conflicts: vec![]
            },
            beat(5),
            beat(10),
        ],
        "a heartbeat every 5 s of silence, nothing after the 15 s idle timeout"
    );
    let (end, _) = hub.await.unwrap();
    assert!(matches!(
        end,
        Err(TestError::Hub(HubSessionError::IdleTimeout))
    ));
}

#[tokio::test(start_paused = true)]
async fn more_work_brings_the_loop_back_at_once_and_the_stop_signal_still_ends_it() {
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let ((mut recv, _send), hub_end) = pipe();
    let (mut shell, _) = HubShell::new();
    shell.pages = 3;
    let (stop, stop_rx) = watch::channel(false);
    let hub = hub_task(hub_end, shell, clock.clone(), stop_rx);
    // Let the loop run until it would sleep, then stop it.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.send_replace(true);
    let (end, shell) = hub.await.unwrap();
    assert_eq!(end.unwrap(), End::Stopped);
    assert_eq!(
        shell.prepares, 4,
        "three pages back to back, then one idle turn"
    );
    assert_eq!(clock.now(), START + Duration::from_ms(500));
    assert_eq!(
        read_frame::<HubMsg, _>(&mut recv).await.unwrap(),
        None,
        "finished cleanly"
    );
}
