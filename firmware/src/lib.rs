//! The embedded kiosk's core: the state machine of a small board with five
//! buttons and a 4 × 20 character display that shows a food bank its offers
//! and claims and sends its staff's answers to the edge.
//!
//! `no_std` and allocation-free: it depends only on `sync-protocol` without
//! its `alloc` feature and on `heapless`, so no allocator exists to call
//! (the Cortex-M image in `image/` links none). Like every core it does no
//! I/O and reads no clock: the board's shell passes in button presses, the
//! bytes its TCP socket read, the uptime in milliseconds and, for each
//! connection, 32 random bytes; it takes out the frames to write
//! ([`Kiosk::poll_transmit`]), the four lines to show ([`Kiosk::screen`]),
//! whether to drop the connection ([`Kiosk::status`]) and when to call again
//! ([`Kiosk::poll_timeout`]).
//!
//! ```text
//!   idle ──Card──► offer shown ──OK──► accepting ──Done──► claimed ──OK──► picking up
//!                     │  └─X─► decline? ──OK──► declining ──Done──► (gone)        │ Done
//!                     └── deadline passed / Withdrawn ──► (gone)                  ▼
//!   (gone) ◄──Done── delivering ◄──OK── amount (▲▼ in 0.5 kg) ◄──OK── picked up
//! ```
//!
//! Two rules hold whatever arrives and whenever: an offer is shown as
//! actionable only while the edge has not withdrawn it and its deadline,
//! by the edge's clock as the kiosk estimates it, is more than
//! [`ACTION_MARGIN_MS`] away; and a press makes at most one action, kept
//! (up to [`MAX_PENDING`]) until the edge answers it, sent once per
//! connection with the same [`sync_protocol::kiosk::ActionId`] — so a press
//! while disconnected is sent on reconnect and the edge's dedupe makes a
//! resend harmless.
#![cfg_attr(not(test), no_std)]

mod actions;
mod cards;
mod clock;
mod kiosk;
mod screen;
mod text;
mod view;

pub use clock::Uptime;
pub use kiosk::{Button, Config, Kiosk, LinkStatus};
pub use screen::{COLUMNS, Intent, ROWS, Screen};
pub use text::Language;

/// An offer stops being actionable this long before its deadline (by the
/// estimated edge clock): time for the answer to reach the edge, and more
/// than the clock estimate's worst error ([`MAX_SYNC_ROUND_TRIP_MS`] / 2).
pub const ACTION_MARGIN_MS: u64 = 5_000;

/// A time sync whose round trip took longer is not used: its error (up to
/// half the round trip) could eat the margin.
pub const MAX_SYNC_ROUND_TRIP_MS: u64 = 2_000;

/// Actions kept until the edge answers them. A press beyond it is refused
/// on screen ("queue full") and makes no action.
pub const MAX_PENDING: usize = 8;

/// With nothing else to send for this long, send a heartbeat (which also
/// refreshes the clock estimate).
pub const HEARTBEAT_MS: u64 = 10_000;

/// Nothing heard from the edge for this long: the link is dead.
pub const LINK_TIMEOUT_MS: u64 = 30_000;

/// A connection that has not reached `Welcome` by then is given up.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// How long a notice ("taken by another", "thank you") stays on screen.
pub const NOTICE_MS: u64 = 5_000;

/// For this long after the card on screen changed by itself (the one shown
/// went away, or the first arrived) OK and X do nothing: a press meant for
/// one card never lands on another.
pub const CHANGE_GUARD_MS: u64 = 1_000;

/// One press of ▲ or ▼ on the delivered amount.
pub const KG_STEP_GRAMS: u64 = 500;

#[cfg(test)]
mod tests;
