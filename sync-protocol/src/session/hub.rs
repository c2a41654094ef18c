//! The hub's side of a sync session. The edge's identity comes from its TLS
//! certificate; the high-water mark from the database. Batches are checked —
//! every event from this edge, dense, starting right after the high-water
//! mark — and handed to the shell to apply in one transaction; replays are
//! acknowledged without applying, gaps are refused.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::machine::SessionCore;
use super::msg::{
    BatchEvent, EdgeMsg, HubMsg, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_HELLO_CELLS,
    MAX_REGISTRY_BYTES, MAX_REGISTRY_ENTRIES, RefusalReason, RegistryEntry,
};
use super::{HEARTBEAT_INTERVAL, IDLE_TIMEOUT, PROTOCOL_VERSION};
use crate::event::Envelope;
use crate::ids::EdgeId;
use crate::time::{Duration, Timestamp};
use crate::wire::decode_envelope;

/// The edge went silent for longer than the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the edge was silent past the idle timeout")]
pub struct IdleTimeout;

/// Why a hub session ended, as its driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HubSessionError {
    /// The edge broke a rule; a `Refused` saying which is queued for it.
    #[error("refused: {0:?}")]
    Refused(RefusalReason),
    #[error("the edge went silent")]
    IdleTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitGreeting,
    Streaming,
    Closed,
}

/// The edge introduced itself: the shell grants leases, then calls
/// [`HubSession::greet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub cells: Vec<u64>,
    pub committed_seq: u64,
    pub lease_epoch: u64,
}

/// Events to apply, in order, in one transaction; then call
/// [`HubSession::applied`] with `last_seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    pub events: Vec<(u64, Envelope)>,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// What the shell must do after a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    Greet(Hello),
    Apply(Apply),
}

#[derive(Debug)]
pub struct HubSession {
    edge_id: EdgeId,
    state: State,
    high_water: u64,
    applying: Option<u64>,
    out: VecDeque<HubMsg>,
    heartbeat_interval: Duration,
    idle_timeout: Duration,
    last_sent: Timestamp,
    last_heard: Timestamp,
}

impl HubSession {
    /// `edge_id` is the certificate's; `high_water` the database's.
    pub fn new(edge_id: EdgeId, high_water: u64, now: Timestamp) -> HubSession {
        HubSession {
            edge_id,
            state: State::AwaitHello,
            high_water,
            applying: None,
            out: VecDeque::new(),
            heartbeat_interval: HEARTBEAT_INTERVAL,
            idle_timeout: IDLE_TIMEOUT,
            last_sent: now,
            last_heard: now,
        }
    }

    pub fn high_water(&self) -> u64 {
        self.high_water
    }

    pub fn edge_id(&self) -> &EdgeId {
        &self.edge_id
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn refuse(&mut self, reason: RefusalReason) -> RefusalReason {
        self.out.push_back(HubMsg::Refused { reason });
        self.state = State::Closed;
        reason
    }

    /// A message from the edge. On `Err` a `Refused` is queued and the
    /// session is closed: flush it, then drop the connection.
    pub fn handle(&mut self, now: Timestamp, msg: EdgeMsg) -> Result<Action, RefusalReason> {
        if self.state == State::Closed {
            return Err(RefusalReason::Protocol);
        }
        self.last_heard = now;
        match (self.state, msg) {
            (
                State::AwaitHello,
                EdgeMsg::Hello {
                    protocol,
                    edge_id,
                    cells,
                    committed_seq,
                    lease_epoch,
                },
            ) => {
                if protocol != PROTOCOL_VERSION {
                    return Err(self.refuse(RefusalReason::Version));
                }
                if edge_id != self.edge_id {
                    return Err(self.refuse(RefusalReason::IdentityMismatch));
                }
                if committed_seq < self.high_water {
                    return Err(self.refuse(RefusalReason::EdgeBehindHub));
                }
                if cells.len() > MAX_HELLO_CELLS {
                    return Err(self.refuse(RefusalReason::TooLarge));
                }
                self.state = State::AwaitGreeting;
                Ok(Action::Greet(Hello {
                    cells,
                    committed_seq,
                    lease_epoch,
                }))
            }
            (State::Streaming, EdgeMsg::Batch { first_seq, events }) => {
                self.on_batch(first_seq, events)
            }
            (
                State::AwaitHello | State::AwaitGreeting | State::Streaming,
                EdgeMsg::Heartbeat { .. },
            ) => Ok(Action::None),
            _ => Err(self.refuse(RefusalReason::Protocol)),
        }
    }

    /// Answers the Hello once leases are decided.
    pub fn greet(&mut self, now: Timestamp, lease_epoch: u64, conflicts: Vec<u64>) {
        if self.state != State::AwaitGreeting {
            return;
        }
        self.out.push_back(HubMsg::Welcome {
            high_water: self.high_water,
            lease_epoch,
            conflicts,
        });
        self.state = State::Streaming;
        self.last_sent = now;
    }

    fn on_batch(
        &mut self,
        first_seq: u64,
        events: Vec<BatchEvent>,
    ) -> Result<Action, RefusalReason> {
        if self.applying.is_some() {
            return Err(self.refuse(RefusalReason::Protocol));
        }
        let bytes: usize = events.iter().map(|e| e.envelope.len()).sum();
        if events.is_empty() || events.len() > MAX_BATCH_EVENTS || bytes > MAX_BATCH_BYTES {
            return Err(self.refuse(RefusalReason::TooLarge));
        }
        if first_seq == 0 {
            return Err(self.refuse(RefusalReason::NotDense));
        }
        let Some(last_seq) = first_seq.checked_add(events.len() as u64 - 1) else {
            return Err(self.refuse(RefusalReason::NotDense));
        };
        if last_seq <= self.high_water {
            // A replay of what is already applied: acknowledge, change nothing.
            self.out.push_back(HubMsg::Ack {
                high_water: self.high_water,
            });
            return Ok(Action::None);
        }
        if first_seq > self.high_water + 1 {
            return Err(self.refuse(RefusalReason::Gap {
                expected: self.high_water + 1,
                got: first_seq,
            }));
        }
        let mut decoded = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let seq = first_seq + i as u64;
            let Ok(env) = decode_envelope(&e.envelope) else {
                return Err(self.refuse(RefusalReason::Malformed));
            };
            if env.edge_id != self.edge_id {
                return Err(self.refuse(RefusalReason::ForeignEvent));
            }
            if env.seq != seq {
                return Err(self.refuse(RefusalReason::NotDense));
            }
            if seq > self.high_water {
                decoded.push((e.cell, env));
            }
        }
        let first = self.high_water + 1;
        self.applying = Some(last_seq);
        Ok(Action::Apply(Apply {
            events: decoded,
            first_seq: first,
            last_seq,
        }))
    }

    /// The shell committed the batch ending at `last_seq`.
    pub fn applied(&mut self, now: Timestamp, last_seq: u64) {
        debug_assert_eq!(self.applying, Some(last_seq), "applied what was handed out");
        self.applying = None;
        self.high_water = self.high_water.max(last_seq);
        self.out.push_back(HubMsg::Ack {
            high_water: self.high_water,
        });
        self.last_sent = now;
    }

    /// Recipients of neighbouring cells, for the edge's matching: queued in
    /// as many messages as keep each under [`MAX_REGISTRY_BYTES`] and
    /// [`MAX_REGISTRY_ENTRIES`].
    pub fn push_registry(&mut self, recipients: Vec<RegistryEntry>) {
        if self.state != State::Streaming {
            return;
        }
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for r in recipients {
            let size = crate::wire::encode(&r).len();
            if !chunk.is_empty()
                && (bytes + size > MAX_REGISTRY_BYTES || chunk.len() == MAX_REGISTRY_ENTRIES)
            {
                self.out.push_back(HubMsg::Registry {
                    recipients: core::mem::take(&mut chunk),
                });
                bytes = 0;
            }
            bytes += size;
            chunk.push(r);
        }
        if !chunk.is_empty() {
            self.out.push_back(HubMsg::Registry { recipients: chunk });
        }
    }

    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<HubMsg> {
        let msg = self.out.pop_front();
        if msg.is_some() {
            self.last_sent = now;
        }
        msg
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        (self.state != State::Closed).then(|| {
            (self.last_sent + self.heartbeat_interval).min(self.last_heard + self.idle_timeout)
        })
    }

    /// Sends a heartbeat when due; `Err` when the edge has been silent past
    /// the idle timeout (the session is then closed).
    pub fn handle_timeout(&mut self, now: Timestamp) -> Result<(), IdleTimeout> {
        if self.state == State::Closed {
            return Ok(());
        }
        if now >= self.last_heard + self.idle_timeout {
            self.state = State::Closed;
            return Err(IdleTimeout);
        }
        if now >= self.last_sent + self.heartbeat_interval && self.out.is_empty() {
            self.out.push_back(HubMsg::Heartbeat { at: now });
            self.last_sent = now;
        }
        Ok(())
    }
}

impl SessionCore for HubSession {
    type Incoming = EdgeMsg;
    type Outgoing = HubMsg;
    type Action = Action;
    type Error = HubSessionError;

    fn handle(&mut self, now: Timestamp, msg: EdgeMsg) -> Result<Action, HubSessionError> {
        HubSession::handle(self, now, msg).map_err(HubSessionError::Refused)
    }

    fn refuse_malformed(&mut self) -> HubSessionError {
        HubSessionError::Refused(self.refuse(RefusalReason::Malformed))
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<HubMsg> {
        HubSession::poll_transmit(self, now)
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        HubSession::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Timestamp) -> Result<(), HubSessionError> {
        HubSession::handle_timeout(self, now).map_err(|IdleTimeout| HubSessionError::IdleTimeout)
    }

    fn is_closed(&self) -> bool {
        HubSession::is_closed(self)
    }
}
