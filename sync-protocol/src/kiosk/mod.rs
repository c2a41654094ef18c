//! The embedded kiosk's protocol: a small board with buttons and a 4 × 20
//! character display talks to its edge over a LAN TCP connection. I/O-free
//! and allocation-free (it compiles without the `alloc` feature), so the
//! firmware core and the edge's listener share exactly this code.
//!
//! # Frames
//!
//! Every frame is `[len: u16 BE][KIOSK_VERSION][payload]`, where `len`
//! counts the bytes after the length (version + payload) and is at most
//! [`MAX_FRAME_BODY_BYTES`]. A header announcing more is refused before a
//! byte of the body is buffered ([`frame::FrameReader`]). The version byte is
//! bumped only by a change that is not append-only: new message variants and
//! reasons are appended, and the golden bytes in `tests.rs` pin every message.
//! Strings are `heapless` with a fixed capacity ([`MAX_NAME_BYTES`]), so
//! decoding a hostile frame allocates nothing at all.
//!
//! # Protecting the link
//!
//! A food bank's LAN is not trusted: anyone on the Wi-Fi can read and write
//! it. So no credential crosses the wire, and after a one-round-trip
//! handshake every frame is sealed with ChaCha20-Poly1305:
//!
//! ```text
//! device                                              edge
//!  Hello{device_id, device_nonce}        (clear) ──►   looks up the device's key
//!                                        (clear) ◄──   Challenge{edge_nonce} | Refused
//!  keys = HKDF-SHA256(key, device_id, device_nonce, edge_nonce)    (both sides)
//!  Ready{firmware, device_ms}           (sealed) ──►   opens ⇒ device authenticated
//!                                       (sealed) ◄──   Welcome{recipient, time, open cards}
//!  Act / Heartbeat ...                  (sealed) ◄─►   Card / Withdrawn / Result / Time ...
//! ```
//!
//! - **The device credential** is `(DeviceId, LinkKey)`: an id that may be
//!   seen and a 256-bit key shared only by the device and its edge, issued at
//!   pairing. The key never travels; a device proves it holds it by sealing
//!   `Ready` under a key derived from it, and the edge proves the same by
//!   sealing `Welcome`.
//! - **Session keys**: HKDF-SHA256 with salt [`seal::KDF_SALT`], the link key
//!   as input keying material and `device_id ‖ device_nonce ‖ edge_nonce` as
//!   info gives 64 bytes: the device → edge key, then the edge → device key.
//!   Each side picks its 32-byte nonce at random for every connection, so a
//!   session's keys are fresh if *either* side's nonce is; two directions,
//!   two keys, so a frame reflected back at its sender does not open.
//! - **Nonce rule**: the AEAD nonce is `0u32 ‖ n` with `n` the frame's
//!   number in its direction (u64, little-endian), starting at 0 for every
//!   session and never sent: both ends count. The AEAD's associated data is
//!   the frame's first three bytes (length and version), so neither can be
//!   altered. A direction stops at [`seal::MAX_FRAMES_PER_DIRECTION`]; the
//!   link must then be made again (new nonces, new keys).
//! - **Replay protection**: TCP delivers in order, so a receiver accepts only
//!   frame `n` next. A replayed, reordered, dropped, truncated or altered
//!   frame fails to open, and the link closes. A recorded session replayed
//!   later fails at its first sealed frame: the other side's fresh nonce gave
//!   this session other keys.
//! - **Actions across connections** carry an [`ActionId`] (`boot`, `seq`):
//!   the device resends an unanswered action with the same id after a
//!   reconnect and the edge answers a repeated id with the result it gave the
//!   first time, so an action takes effect once whatever the link does.
//! - **What it does not hide**: frame sizes and timing, and the device id in
//!   `Hello`. A `Refused` in the clear can be forged by someone on the LAN —
//!   who could as well cut the cable; it denies service, it cannot make the
//!   device act or the edge accept anything.
//!
//! Why not TLS-PSK: a TLS stack costs a Cortex-M4 tens of kilobytes of flash
//! and RAM and a dependency we cannot keep small; this is one AEAD (no
//! tables, constant time, fast without AES hardware) and one KDF from
//! well-kept no_std crates, with the state machine small enough to test
//! exhaustively here.
//!
//! [`link::DeviceLink`] and [`link::EdgeLink`] are the two ends as I/O-free
//! cores: bytes in, events and frames out; the firmware and the edge's TCP
//! shell carry the bytes.

pub mod frame;
pub mod link;
pub mod msg;
pub mod seal;

pub use frame::{Frame, FrameReader, KioskError};
pub use link::{DeviceEvent, DeviceLink, EdgeEvent, EdgeLink};
pub use msg::{
    Action, ActionId, ActionKind, Card, Down, Hello, HelloReply, Name, Outcome, Refusal, Stage,
    TimeSync, Up, Withdrawal,
};
pub use seal::{LinkKey, NONCE_BYTES};

/// The version byte of every kiosk frame.
pub const KIOSK_VERSION: u8 = 1;

/// Bytes of the length header.
pub const FRAME_HEADER_BYTES: usize = 2;

/// The most bytes after the header: version, payload and (once sealed) the
/// 16-byte tag. The largest message (a [`Card`] with a full name and the
/// largest numbers) needs about 125 sealed; `tests.rs` checks the worst case
/// of every message fits, leaving room for fields appended later.
pub const MAX_FRAME_BODY_BYTES: usize = 256;

/// A whole frame on the wire, header included.
pub const MAX_FRAME_BYTES: usize = FRAME_HEADER_BYTES + MAX_FRAME_BODY_BYTES;

/// Names (provider, recipient) are cut by the edge to this many UTF-8 bytes,
/// at a character boundary ([`msg::name`]); the display shows 20 columns.
pub const MAX_NAME_BYTES: usize = 40;

/// The edge sends a device at most this many cards (offers and claims) at
/// once; the firmware holds exactly this many.
pub const MAX_CARDS: usize = 8;

#[cfg(test)]
mod tests;
