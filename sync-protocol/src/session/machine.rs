//! What a link driver needs of a session core, so one loop (crate
//! `sync-link`) drives the edge's and the hub's alike: messages in, messages
//! out, one deadline, all with the current time passed in.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::time::Timestamp;

/// A sans-IO session: [`EdgeSession`](super::edge::EdgeSession) and
/// [`HubSession`](super::hub::HubSession) implement it.
pub trait SessionCore {
    /// What the peer sends.
    type Incoming: DeserializeOwned;
    /// What this side sends.
    type Outgoing: Serialize;
    /// What the shell must carry out after a message (load, apply, grant).
    type Action;
    /// Why the session ended; once returned, the core is closed.
    type Error;

    /// A message from the peer.
    fn handle(&mut self, now: Timestamp, msg: Self::Incoming) -> Result<Self::Action, Self::Error>;

    /// The peer sent a frame that does not decode. The core closes, queues
    /// whatever refusal it owes the peer, and says why the session ended.
    fn refuse_malformed(&mut self) -> Self::Error;

    /// The next message to send, if any.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<Self::Outgoing>;

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Heartbeats when due; `Err` when the peer was silent too long.
    fn handle_timeout(&mut self, now: Timestamp) -> Result<(), Self::Error>;

    fn is_closed(&self) -> bool;
}
