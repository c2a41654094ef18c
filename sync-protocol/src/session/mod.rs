//! The sync session between an edge and the hub, as I/O-free cores.
//!
//! ```text
//! edge                                   hub
//!  Hello{edge_id, cells, committed_seq} ─►   (identity = the TLS certificate)
//!                                      ◄─ Welcome{high_water, lease_epoch, conflicts}
//!  Batch{first_seq, events} ───────────►   apply in one transaction, in order,
//!  Batch ... (bounded in flight)          idempotent on (edge_id, seq), gaps refused
//!                                      ◄─ Ack{high_water}
//!  Heartbeat ◄────────────────────────► Heartbeat
//!                                      ◄─ Registry{neighbouring cells' recipients}
//! ```
//!
//! [`edge::EdgeSession`] and [`hub::HubSession`] take messages and the
//! current time and return what to send and do; the shells (quinn, SQLite,
//! PostgreSQL) carry it out. A session that sees a protocol violation closes;
//! the edge reconnects and resumes from the hub's high-water mark.

pub mod edge;
pub mod hub;
#[cfg(feature = "tokio")]
pub mod io;
pub mod msg;

pub use msg::{BatchEvent, EdgeMsg, HubMsg, RefusalReason, RegistryEntry};

/// Bumped when the session protocol changes incompatibly.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN identifier for the QUIC connection.
pub const ALPN: &[u8] = b"pahlawan-sync/1";

#[cfg(test)]
mod tests;
