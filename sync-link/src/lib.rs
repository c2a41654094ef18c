//! The link between an edge and the hub, shared by both shells: mutual-TLS
//! QUIC configuration ([`tls`]), session frames on a byte stream
//! ([`frame`]), the reader task and stop signal ([`task`]), where "now"
//! comes from ([`clock`]), and the one loop that drives a session core —
//! `EdgeSession` or `HubSession` from `sync_protocol::session` — over a
//! stream ([`driver`]). The cores decide; this crate only moves their bytes
//! and their time.

pub mod clock;
pub mod driver;
pub mod frame;
pub mod task;
pub mod tls;

pub use clock::{Clock, SystemClock};
pub use driver::{End, SendHalf, Shell, Work, drive};
pub use frame::{FrameError, read_frame, write_frame};
