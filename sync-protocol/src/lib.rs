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
pub mod ids;
pub mod kiosk;
#[cfg(feature = "alloc")]
pub mod lease;
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

/// Asserts encodings equal their golden hex, printing every actual one
/// (ready to paste after a deliberate, append-only change).
#[cfg(test)]
pub(crate) fn assert_golden(actual: &[alloc::string::String], golden: &[&str]) {
    let report: alloc::string::String = actual
        .iter()
        .map(|h| alloc::format!("    \"{h}\",\n"))
        .collect();
    assert_eq!(actual, golden, "actual encodings:\n{report}");
}

/// Lowercase hex, for the golden-bytes tests.
#[cfg(test)]
pub(crate) fn hex(bytes: &[u8]) -> alloc::string::String {
    use core::fmt::Write;
    let mut s = alloc::string::String::new();
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
