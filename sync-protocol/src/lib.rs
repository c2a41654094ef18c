//! The shared language of Pahlawan Pangan: domain types, the event envelope
//! and its versioned wire encoding. `no_std` + `alloc`, so the kiosk firmware
//! speaks exactly what the edge and the hub speak.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod domain;
pub mod event;
pub mod geo;
#[cfg(test)]
mod golden_check;
pub mod ids;
pub mod lease;
pub mod session;
pub mod time;
pub mod trace;
pub mod wire;

pub use domain::{
    Contact, FoodType, FoodTypeSet, Mass, Offer, Provider, Recipient, SealedContact, Subject,
    Surplus, SurplusStatus, Validation,
};
pub use event::{
    AuditRecord, ClaimVia, DeadLetterReason, ERASED_NAME, Envelope, Event, SurplusPosted,
};
pub use geo::{GeoError, GeoPoint};
pub use ids::{EdgeId, EdgeIdError, ProviderId, RecipientId, SurplusId};
pub use time::{Duration, Timestamp};
pub use trace::TraceContext;
pub use wire::{WIRE_VERSION, WireError};
