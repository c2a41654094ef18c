//! The edge's side of a sync session. It says Hello, learns the hub's
//! high-water mark, asks its shell for outbox events after the last one sent,
//! ships them in bounded batches with a bounded number in flight, and reports
//! what the hub acknowledged so the shell can mark it published.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::machine::SessionCore;
use super::msg::{
    BatchEvent, EdgeMsg, HubMsg, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, RefusalReason, RegistryEntry,
};
use super::{
    DEFAULT_MAX_BATCH_EVENTS, DEFAULT_MAX_IN_FLIGHT, HEARTBEAT_INTERVAL, IDLE_TIMEOUT,
    PROTOCOL_VERSION,
};
use crate::ids::EdgeId;
use crate::time::{Duration, Timestamp};

#[derive(Debug, Clone)]
pub struct EdgeSessionConfig {
    pub edge_id: EdgeId,
    pub cells: Vec<u64>,
    /// Events per batch, at most (≤ `MAX_BATCH_EVENTS`).
    pub max_batch_events: usize,
    /// Envelope bytes per batch, at most (≤ `MAX_BATCH_BYTES`).
    pub max_batch_bytes: usize,
    /// Batches sent and not yet acknowledged, at most.
    pub max_in_flight: usize,
    pub heartbeat_interval: Duration,
    /// Nothing heard from the hub for this long: the session is dead.
    pub idle_timeout: Duration,
}

impl EdgeSessionConfig {
    pub fn new(edge_id: EdgeId, cells: Vec<u64>) -> EdgeSessionConfig {
        EdgeSessionConfig {
            edge_id,
            cells,
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            max_batch_bytes: MAX_BATCH_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Why an edge session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the hub refused the session: {0:?}")]
    Refused(RefusalReason),
    #[error("the hub broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("nothing heard from the peer within the idle timeout")]
    IdleTimeout,
    #[error(
        "the hub has applied up to {hub} but this edge only committed {edge}: data was lost here"
    )]
    EdgeBehindHub { hub: u64, edge: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitWelcome,
    Streaming,
    Closed,
}

/// What the shell should load from the outbox next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Load events with `seq > after`...
    pub after: u64,
    /// ...at most this many.
    pub max_events: usize,
}

#[derive(Debug)]
pub struct EdgeSession {
    cfg: EdgeSessionConfig,
    state: State,
    /// The hub's acknowledged high-water mark.
    acked: u64,
    /// The last seq put into a batch.
    sent: u64,
    /// The last seq committed locally (the shell keeps this current).
    committed: u64,
    /// Last seq of each batch in flight, oldest first.
    in_flight: VecDeque<u64>,
    out: VecDeque<EdgeMsg>,
    registry: Option<Vec<RegistryEntry>>,
    lease_epoch: u64,
    conflicts: Vec<u64>,
    last_sent: Timestamp,
    last_heard: Timestamp,
}

impl EdgeSession {
    /// A new session; the Hello is queued at once.
    pub fn new(
        cfg: EdgeSessionConfig,
        now: Timestamp,
        committed: u64,
        lease_epoch: u64,
    ) -> EdgeSession {
        let hello = EdgeMsg::Hello {
            protocol: PROTOCOL_VERSION,
            edge_id: cfg.edge_id.clone(),
            cells: cfg.cells.clone(),
            committed_seq: committed,
            lease_epoch,
        };
        EdgeSession {
            cfg,
            state: State::AwaitWelcome,
            acked: 0,
            sent: 0,
            committed,
            in_flight: VecDeque::new(),
            out: VecDeque::from([hello]),
            registry: None,
            lease_epoch,
            conflicts: Vec::new(),
            last_sent: now,
            last_heard: now,
        }
    }

    /// The outbox grew to `seq`.
    pub fn set_committed(&mut self, seq: u64) {
        self.committed = self.committed.max(seq);
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Committed events the hub has not acknowledged yet.
    pub fn backlog(&self) -> u64 {
        self.committed.saturating_sub(self.acked)
    }

    pub fn is_streaming(&self) -> bool {
        self.state == State::Streaming
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The lease epoch the hub granted (stamp it on new events).
    pub fn lease_epoch(&self) -> u64 {
        self.lease_epoch
    }

    /// Cells another edge holds the lease of.
    pub fn conflicts(&self) -> &[u64] {
        &self.conflicts
    }

    /// The neighbouring recipients the hub sent since the last call.
    pub fn take_registry(&mut self) -> Option<Vec<RegistryEntry>> {
        self.registry.take()
    }

    pub fn handle(&mut self, now: Timestamp, msg: HubMsg) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::Protocol("message after close"));
        }
        self.last_heard = now;
        let result = self.on_message(msg);
        if result.is_err() {
            self.state = State::Closed;
        }
        result
    }

    fn on_message(&mut self, msg: HubMsg) -> Result<(), SessionError> {
        match (self.state, msg) {
            (
                State::AwaitWelcome,
                HubMsg::Welcome {
                    high_water,
                    lease_epoch,
                    conflicts,
                },
            ) => {
                if high_water > self.committed {
                    return Err(SessionError::EdgeBehindHub {
                        hub: high_water,
                        edge: self.committed,
                    });
                }
                self.acked = high_water;
                self.sent = high_water;
                self.lease_epoch = lease_epoch;
                self.conflicts = conflicts;
                self.state = State::Streaming;
                Ok(())
            }
            (State::Streaming, HubMsg::Ack { high_water }) => {
                if high_water < self.acked || high_water > self.sent {
                    return Err(SessionError::Protocol("ack outside the window"));
                }
                self.acked = high_water;
                while self
                    .in_flight
                    .front()
                    .is_some_and(|last| *last <= high_water)
                {
                    self.in_flight.pop_front();
                }
                Ok(())
            }
            (_, HubMsg::Heartbeat { .. }) => Ok(()),
            (State::Streaming, HubMsg::Registry { recipients }) => {
                self.registry
                    .get_or_insert_with(Vec::new)
                    .extend(recipients);
                Ok(())
            }
            (_, HubMsg::Refused { reason }) => Err(SessionError::Refused(reason)),
            (State::AwaitWelcome, _) => Err(SessionError::Protocol("expected Welcome")),
            (_, HubMsg::Welcome { .. }) => Err(SessionError::Protocol("a second Welcome")),
            (State::Closed, _) => Err(SessionError::Protocol("message after close")),
        }
    }

    /// What to load from the outbox, if a batch may be sent now.
    pub fn wants(&self) -> Option<Want> {
        let room = self.state == State::Streaming
            && self.in_flight.len() < self.cfg.max_in_flight
            && self.sent < self.committed;
        room.then(|| Want {
            after: self.sent,
            max_events: self.cfg.max_batch_events.clamp(1, MAX_BATCH_EVENTS),
        })
    }

    /// The shell loaded these events, starting right after `want.after`.
    /// The core cuts them to the byte limit and queues one batch; events past
    /// the cut are simply asked for again.
    pub fn send_events(&mut self, now: Timestamp, first_seq: u64, mut events: Vec<BatchEvent>) {
        if self.wants().is_none() || first_seq != self.sent + 1 || events.is_empty() {
            return;
        }
        let limit = self.cfg.max_batch_bytes.clamp(1, MAX_BATCH_BYTES);
        let mut bytes = 0;
        let mut keep = 0;
        for e in &events {
            bytes += e.envelope.len();
            if keep > 0 && bytes > limit {
                break;
            }
            keep += 1;
        }
        events.truncate(keep.min(self.cfg.max_batch_events.clamp(1, MAX_BATCH_EVENTS)));
        let last = first_seq + events.len() as u64 - 1;
        debug_assert!(
            last <= self.committed,
            "sent an event beyond the committed outbox"
        );
        self.sent = last;
        self.in_flight.push_back(last);
        self.out.push_back(EdgeMsg::Batch { first_seq, events });
        self.last_sent = now;
    }

    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<EdgeMsg> {
        let msg = self.out.pop_front();
        if msg.is_some() {
            self.last_sent = now;
        }
        msg
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.state == State::Closed {
            return None;
        }
        let heartbeat = self.last_sent + self.cfg.heartbeat_interval;
        let idle = self.last_heard + self.cfg.idle_timeout;
        Some(heartbeat.min(idle))
    }

    pub fn handle_timeout(&mut self, now: Timestamp) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Ok(());
        }
        if now >= self.last_heard + self.cfg.idle_timeout {
            self.state = State::Closed;
            return Err(SessionError::IdleTimeout);
        }
        if now >= self.last_sent + self.cfg.heartbeat_interval && self.out.is_empty() {
            self.out.push_back(EdgeMsg::Heartbeat {
                at: now,
                backlog: self.backlog(),
            });
            self.last_sent = now;
        }
        Ok(())
    }
}

impl SessionCore for EdgeSession {
    type Incoming = HubMsg;
    type Outgoing = EdgeMsg;
    type Action = ();
    type Error = SessionError;

    fn handle(&mut self, now: Timestamp, msg: HubMsg) -> Result<(), SessionError> {
        EdgeSession::handle(self, now, msg)
    }

    fn refuse_malformed(&mut self) -> SessionError {
        self.state = State::Closed;
        SessionError::Protocol("a frame that does not decode")
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<EdgeMsg> {
        EdgeSession::poll_transmit(self, now)
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        EdgeSession::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Timestamp) -> Result<(), SessionError> {
        EdgeSession::handle_timeout(self, now)
    }

    fn is_closed(&self) -> bool {
        EdgeSession::is_closed(self)
    }
}
