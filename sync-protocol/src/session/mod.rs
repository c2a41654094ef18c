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
pub mod feed;
pub mod hub;
pub mod machine;
pub mod msg;

pub use machine::SessionCore;
pub use msg::{BatchEvent, EdgeMsg, HubMsg, RefusalReason, RegistryEntry};

use crate::time::Duration;

/// Events per batch an edge sends unless configured otherwise.
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 1_024;
/// Batches an edge keeps unacknowledged unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Either side sends a heartbeat after this long without sending anything.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Either side ends the session after hearing nothing for this long (three
/// missed heartbeats).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Bumped when the session protocol changes incompatibly.
pub const PROTOCOL_VERSION: u16 = 1;

/// ALPN identifier for the QUIC connection.
pub const ALPN: &[u8] = b"pahlawan-sync/1";

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
