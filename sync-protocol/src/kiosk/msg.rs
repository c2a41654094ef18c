//! The kiosk's messages: the two handshake frames in the clear, then what a
//! device sends ([`Up`]) and what its edge sends ([`Down`]), sealed. Wire
//! order is fixed: variants and fields are appended, never reordered.

use serde::{Deserialize, Serialize};

use super::{MAX_NAME_BYTES, NONCE_BYTES};
use crate::domain::{FoodType, Mass};
use crate::ids::{DeviceId, SurplusId};
use crate::time::Timestamp;

/// A provider's or recipient's name as the kiosk gets it.
pub type Name = heapless::String<MAX_NAME_BYTES>;

/// `s` cut to at most [`MAX_NAME_BYTES`] bytes at a character boundary: how
/// the edge fits a stored name into a card.
pub fn name(s: &str) -> Name {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Name::new();
    // `end` bytes fit by construction.
    let _ = out.push_str(&s[..end]);
    out
}

/// Device → edge, the first frame of a connection, in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub device: DeviceId,
    /// Fresh random bytes for this connection (see the module doc).
    pub nonce: [u8; NONCE_BYTES],
}

/// Edge → device, the answer to [`Hello`], in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The edge knows the device: derive the session keys and seal `Ready`.
    Challenge {
        nonce: [u8; NONCE_BYTES],
    },
    Refused(Refusal),
}

/// Why the edge will not talk to a device. In `HelloReply` before the keys
/// exist, or sealed in `Down::Refused`; the edge closes the connection after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// No credential with this device id.
    UnknownDevice,
    /// The credential was revoked (`pahlawan kiosk revoke`).
    Revoked,
    /// The device speaks another [`super::KIOSK_VERSION`]: update it.
    Version,
    /// A frame out of order or that did not decode.
    Protocol,
    /// Too many failed handshakes or actions: try again later.
    RateLimited { retry_after_ms: u32 },
}

/// A device's action, identified for the edge's dedupe: the same id is
/// answered the same way however often it arrives.
///
/// `boot` is drawn at random when the device starts and `seq` counts the
/// actions since, so ids from two boots do not collide; the edge also keeps
/// each id's [`Action`] and answers [`Outcome::IdReused`] to an id that comes
/// back with a different one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActionId {
    pub boot: u32,
    pub seq: u32,
}

/// What a button press asks of the edge. Accepting needs no version: a
/// surplus is never offered twice to one recipient, so the surplus names
/// the offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Accept {
        surplus: SurplusId,
    },
    Decline {
        surplus: SurplusId,
    },
    PickedUp {
        surplus: SurplusId,
    },
    /// Delivered to the recipient: at most what was posted.
    Delivered {
        surplus: SurplusId,
        delivered: Mass,
    },
}

/// The kind of an [`Action`], without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Accept,
    Decline,
    PickedUp,
    Delivered,
}

impl Action {
    pub const fn surplus(&self) -> SurplusId {
        match *self {
            Action::Accept { surplus }
            | Action::Decline { surplus }
            | Action::PickedUp { surplus }
            | Action::Delivered { surplus, .. } => surplus,
        }
    }

    pub const fn kind(&self) -> ActionKind {
        match self {
            Action::Accept { .. } => ActionKind::Accept,
            Action::Decline { .. } => ActionKind::Decline,
            Action::PickedUp { .. } => ActionKind::PickedUp,
            Action::Delivered { .. } => ActionKind::Delivered,
        }
    }
}

/// Device → edge, sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Up {
    /// The first sealed frame: proves the device holds its key. `device_ms`
    /// (its uptime) comes back in `Welcome`'s time sync.
    Ready {
        firmware: u16,
        device_ms: u64,
    },
    Act {
        id: ActionId,
        action: Action,
    },
    /// Sent when the link is otherwise idle; answered with [`Down::Time`].
    Heartbeat {
        device_ms: u64,
    },
}

/// Where a card stands for this recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Offered: accept or decline before `respond_by`.
    Offered,
    /// Claimed by this recipient: pick it up before `expires_at`.
    Claimed,
    /// Picked up: record what was delivered.
    PickedUp,
}

/// One surplus as the kiosk shows it: an offer to this recipient, or its
/// claim in progress. A card with a higher `version` replaces an older one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub surplus: SurplusId,
    pub version: u64,
    pub stage: Stage,
    pub provider: Name,
    pub food_type: FoodType,
    pub quantity: Mass,
    /// From the provider to the recipient, in metres.
    pub distance_m: u32,
    /// `Offered`: the offer's deadline (its ACK deadline, or the food's
    /// expiry if sooner); unanswered by then, it goes to someone else.
    pub respond_by: Timestamp,
    /// When the food expires: a claim not picked up by then lapses.
    pub expires_at: Timestamp,
}

/// Why a card went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Withdrawal {
    /// Unanswered by its deadline: offered to someone else.
    TimedOut,
    /// The food expired.
    Expired,
    /// Someone else claimed it first.
    ClaimedByAnother,
    /// Withdrawn by the provider or an operator (or the provider was erased).
    Cancelled,
}

/// The edge's clock, answering the device's `device_ms` (echoed): the device
/// estimates the edge's time as `edge_now` plus half the round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSync {
    pub device_ms: u64,
    pub edge_now: Timestamp,
}

/// How the edge answered an action. A repeated [`ActionId`] gets the same
/// outcome as the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied (now, or when the id first arrived).
    Done,
    /// Another recipient claimed it first.
    LostRace,
    /// The offer's deadline or the food's expiry passed.
    Expired,
    /// Not (or no longer) offered to or claimed by this recipient.
    NotYours,
    /// Not allowed now (e.g. delivering more than was posted).
    Invalid,
    /// This id came with another action before: nothing was done.
    IdReused,
    /// Not applied, try again with the same id after the delay (rate limit,
    /// or the edge's queue is full).
    Busy { retry_after_ms: u32 },
}

/// Edge → device, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Down {
    /// The first sealed frame. The device forgets the cards it holds that
    /// are not among the `open` cards that follow: that is how it learns what
    /// was withdrawn while it was away.
    Welcome {
        recipient: Name,
        time: TimeSync,
        /// Minutes east of UTC for showing times (the edge's configuration).
        utc_offset_minutes: i16,
        /// How many `Card`s follow at once (at most [`super::MAX_CARDS`]).
        open: u8,
    },
    Card(Card),
    Withdrawn {
        surplus: SurplusId,
        reason: Withdrawal,
    },
    Result {
        id: ActionId,
        outcome: Outcome,
    },
    Time(TimeSync),
    Refused(Refusal),
}
