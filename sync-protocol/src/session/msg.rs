//! Session messages and their framing: a 4-byte big-endian length, then the
//! versioned wire encoding. Batches are bounded in events and bytes.

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::domain::{FoodTypeSet, Mass};
use crate::geo::GeoPoint;
use crate::ids::{EdgeId, RecipientId};
use crate::time::Timestamp;
use crate::wire::{self, WireError};

/// At most this many events in one batch.
pub const MAX_BATCH_EVENTS: usize = 2_048;
/// At most this many envelope bytes in one batch.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// No session frame may exceed this (a full batch plus overhead).
pub const MAX_SESSION_FRAME_BYTES: usize = MAX_BATCH_BYTES + 64 * 1024;
/// At most this many recipients in one registry message.
pub const MAX_REGISTRY_ENTRIES: usize = 10_000;
/// At most this many encoded bytes of recipients in one registry message:
/// a large registry goes out in several messages, each well inside
/// [`MAX_SESSION_FRAME_BYTES`].
pub const MAX_REGISTRY_BYTES: usize = 256 * 1024;
/// At most this many cells in a Hello (each costs the hub a lease row and a
/// neighbour computation).
pub const MAX_HELLO_CELLS: usize = 4_096;

/// One outbox event as shipped: the stored envelope frame, untouched, and the
/// S2 cell it concerns (0 when none), so the hub can place it in its region
/// without decoding history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEvent {
    pub cell: u64,
    pub envelope: Vec<u8>,
}

/// A recipient in a neighbouring cell, for matching across the border.
/// Contact data never leaves its owning edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    pub id: RecipientId,
    pub owner: EdgeId,
    pub cell: u64,
    pub name: alloc::string::String,
    pub location: GeoPoint,
    pub capacity_per_day: Mass,
    pub accepted_food_types: FoodTypeSet,
    pub is_fallback: bool,
    /// The owner erased it (GDPR): forget it — never offer to it again,
    /// and drop its name. Its other fields are empty.
    pub erased: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EdgeMsg {
    Hello {
        protocol: u16,
        edge_id: EdgeId,
        /// The cells the edge serves (S2 ids at its ownership level).
        cells: Vec<u64>,
        /// The last `seq` committed in the edge's outbox.
        committed_seq: u64,
        /// The lease epoch the edge currently stamps on its events.
        lease_epoch: u64,
    },
    Batch {
        first_seq: u64,
        events: Vec<BatchEvent>,
    },
    Heartbeat {
        at: Timestamp,
        /// Events committed but not yet acknowledged.
        backlog: u64,
    },
}

/// Why the hub refused an edge and closed the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// The Hello named another edge than the certificate does.
    IdentityMismatch,
    /// An event in a batch was stamped with another edge's id.
    ForeignEvent,
    /// A batch started after `expected`: events are missing.
    Gap { expected: u64, got: u64 },
    /// A batch whose events are not dense and increasing.
    NotDense,
    /// A batch over the count or byte limits.
    TooLarge,
    /// An envelope that does not decode.
    Malformed,
    /// A message out of order (e.g. a batch before Hello).
    Protocol,
    /// The edge speaks another protocol version.
    Version,
    /// The hub holds more of this edge's events than the edge has committed:
    /// the edge lost data (restored from an old backup?). A human must look.
    EdgeBehindHub,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HubMsg {
    Welcome {
        /// The last `seq` of this edge the hub has applied.
        high_water: u64,
        /// The epoch to stamp on new events.
        lease_epoch: u64,
        /// Cells the edge asked for that another edge holds.
        conflicts: Vec<u64>,
    },
    Ack {
        high_water: u64,
    },
    Heartbeat {
        at: Timestamp,
    },
    Registry {
        recipients: Vec<RegistryEntry>,
    },
    Refused {
        reason: RefusalReason,
    },
}

/// `[len: u32 BE][WIRE_VERSION][postcard]`.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = wire::encode(msg);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The body length announced by a frame header, refused above the limit.
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_SESSION_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its length header).
pub fn decode_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    wire::decode_with_limit(body, MAX_SESSION_FRAME_BYTES)
}
