//! The edge's ports: small types, each with one job, through which the
//! outer layers (HTTP, the hub link, housekeeping, `simulate`) reach the
//! store. None of them holds state of its own that another writes.
//!
//! - [`Writes`]: the writer's queues — requests shed when full, background
//!   work waits for room; request-path audits wait a bounded time.
//! - [`Reads`]: the read model and the read-only connection pool.
//! - [`LinkPort`]: what the hub link needs, and [`LinkStatus`], which the
//!   link publishes on a `watch` for `/api/v1/sync` and metrics.

mod link;
mod reads;
mod writes;

pub use link::{LinkPort, LinkStatus};
pub use reads::Reads;
pub use writes::Writes;

use crate::store::StoreError;
use crate::store::writer::{QueueError, Unavailable};

/// Why the edge could not do what was asked (beyond business refusals).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The point lies in a cell this edge does not own.
    #[error("the point lies in S2 cell {} which this edge does not own", crate::cells::token(*cell))]
    Misdirected { cell: u64 },
    /// The writer's queue is full: back off and retry.
    #[error("the edge is saturated; retry shortly")]
    Busy,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl From<QueueError> for EdgeError {
    fn from(e: QueueError) -> EdgeError {
        match e {
            QueueError::Full => EdgeError::Busy,
            QueueError::Stopped => EdgeError::Unavailable(Unavailable::new(e.to_string())),
        }
    }
}

impl From<StoreError> for EdgeError {
    fn from(e: StoreError) -> EdgeError {
        EdgeError::Unavailable(if e.is_disk_full() {
            Unavailable::disk_full(e.to_string())
        } else {
            Unavailable::new(e.to_string())
        })
    }
}
