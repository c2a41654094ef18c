//! The shared language of Pahlawan Pangan: domain types, the event envelope
//! and its versioned wire encoding. `no_std`: with the `alloc` feature (on
//! with `std`) everything; without it the allocation-free core — time, ids,
//! food types and mass, and the embedded kiosk's protocol ([`kiosk`]) — so
//! the kiosk firmware links no allocator at all.
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod backoff;
pub mod domain;
#[cfg(feature = "alloc")]
pub mod event;
pub mod geo;
#[cfg(test)]
mod golden_check;
pub mod ids;
pub mod kiosk;
#[cfg(feature = "alloc")]
pub mod lease;
#[cfg(feature = "alloc")]
pub mod quorum_lease;
#[cfg(feature = "alloc")]
pub mod session;
pub mod time;
#[cfg(feature = "alloc")]
pub mod trace;
#[cfg(feature = "alloc")]
pub mod wire;

#[cfg(feature = "alloc")]
pub use domain::{Contact, Provider, Recipient, SealedContact, Surplus};
pub use domain::{FoodType, FoodTypeSet, Mass, Offer, Subject, SurplusStatus, Validation};
#[cfg(feature = "alloc")]
pub use event::{
    AuditRecord, ClaimVia, DeadLetterReason, ERASED_NAME, Envelope, Event, SurplusPosted,
};
pub use geo::{GeoError, GeoPoint};
pub use ids::{DeviceId, ProviderId, RecipientId, SurplusId};
#[cfg(feature = "alloc")]
pub use ids::{EdgeId, EdgeIdError};
pub use time::{Duration, Timestamp};
#[cfg(feature = "alloc")]
pub use trace::TraceContext;
#[cfg(feature = "alloc")]
pub use wire::{WIRE_VERSION, WireError};
