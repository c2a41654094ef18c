//! The event log's vocabulary: every state change an edge commits becomes one
//! `Event` in its outbox, wrapped in an `Envelope` that names the edge, its
//! dense sequence number, its lease epoch and the trace it belongs to.
//!
//! Wire rule: variants and fields are only ever appended (postcard encodes
//! enum variants by index). Golden bytes in `wire` pin the format.

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::domain::{FoodType, Mass, Provider, Recipient, SealedContact, Subject};
use crate::geo::GeoPoint;
use crate::ids::{EdgeId, ProviderId, RecipientId, SurplusId};
use crate::time::Timestamp;
use crate::trace::TraceContext;

/// A surplus as first posted (version 1, status `available`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurplusPosted {
    pub id: SurplusId,
    pub provider_id: ProviderId,
    pub location: GeoPoint,
    /// The S2 cell (at the edge's ownership level) the surplus lies in.
    pub cell: u64,
    pub quantity: Mass,
    pub food_type: FoodType,
    pub expires_at: Timestamp,
    pub description: String,
}

/// How a surplus came to be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimVia {
    /// The recipient accepted the offer made to it.
    OfferAccepted,
    /// The recipient claimed it directly (e.g. from a kiosk list).
    Direct,
}

/// Why a surplus entered the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterReason {
    /// No feasible recipient was found.
    NoCandidate,
    /// The maximum number of offers failed (declined or unacknowledged).
    OffersExhausted,
    /// The DLQ retries ran out and the fallback recipient did not take it
    /// (or there is none); only a direct claim or expiry ends it now.
    FallbackFailed,
}

/// One committed state change. Every surplus event carries the surplus's
/// `version` *after* the change, so a projection can apply events idempotently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    ProviderRegistered(Provider),
    RecipientRegistered(Recipient),
    SurplusPosted(SurplusPosted),
    OfferMade {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
        ack_deadline: Timestamp,
        /// 1 for the first offer of this surplus, 2 for the second, ...
        attempt: u32,
        /// Made to the cell's fallback recipient after the DLQ gave up.
        fallback: bool,
        version: u64,
    },
    OfferDeclined {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
        version: u64,
    },
    OfferTimedOut {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
        version: u64,
    },
    Claimed {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
        via: ClaimVia,
        version: u64,
    },
    PickedUp {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
        version: u64,
    },
    Delivered {
        surplus_id: SurplusId,
        recipient_id: RecipientId,
        delivered: Mass,
        version: u64,
    },
    Expired {
        surplus_id: SurplusId,
        version: u64,
    },
    DeadLettered {
        surplus_id: SurplusId,
        reason: DeadLetterReason,
        /// Retries already made from the DLQ.
        dlq_attempts: u32,
        /// When the DLQ will retry, if it will.
        retry_at: Option<Timestamp>,
        version: u64,
    },
    /// The subject's contact re-sealed under the active PII key
    /// (`pahlawan keys rotate`).
    ContactResealed {
        subject: Subject,
        contact: SealedContact,
    },
    /// GDPR erasure: the subject's name and contact are gone everywhere; its
    /// surplus, offers and delivered kilograms stay (impact totals hold).
    SubjectErased {
        subject: Subject,
    },
    /// Who did what to which resource, from where (the audit log). `at` is
    /// the envelope's.
    Audited(AuditRecord),
}

/// What an erased subject's name becomes, everywhere.
pub const ERASED_NAME: &str = "[erased]";

/// One audit-log entry: every mutating call, every refusal of one, and every
/// read of personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The token's `sub` (empty when the caller was not authenticated).
    pub actor: String,
    /// `provider`, `ngo`, `admin` (or empty).
    pub role: String,
    /// What was attempted, e.g. `surplus.post`, `recipient.read_contact`.
    pub action: String,
    /// The resource, e.g. `surplus/0190…`.
    pub resource: String,
    /// The HTTP status answered.
    pub status: u16,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Event {
    /// The surplus this event is about, if any.
    pub fn surplus_id(&self) -> Option<SurplusId> {
        match self {
            Event::ProviderRegistered(_)
            | Event::RecipientRegistered(_)
            | Event::ContactResealed { .. }
            | Event::SubjectErased { .. }
            | Event::Audited(_) => None,
            Event::SurplusPosted(s) => Some(s.id),
            Event::OfferMade { surplus_id, .. }
            | Event::OfferDeclined { surplus_id, .. }
            | Event::OfferTimedOut { surplus_id, .. }
            | Event::Claimed { surplus_id, .. }
            | Event::PickedUp { surplus_id, .. }
            | Event::Delivered { surplus_id, .. }
            | Event::Expired { surplus_id, .. }
            | Event::DeadLettered { surplus_id, .. } => Some(*surplus_id),
        }
    }

    /// The data subject whose personal data this event carries, if any.
    pub fn subject(&self) -> Option<Subject> {
        match self {
            Event::ProviderRegistered(p) => Some(Subject::Provider(p.id)),
            // Its description is the provider's free text: erased with it.
            Event::SurplusPosted(s) => Some(Subject::Provider(s.provider_id)),
            Event::RecipientRegistered(r) => Some(Subject::Recipient(r.id)),
            Event::ContactResealed { subject, .. } | Event::SubjectErased { subject } => {
                Some(*subject)
            }
            _ => None,
        }
    }

    /// GDPR erasure of `subject` in a stored copy of this event: its name
    /// becomes [`ERASED_NAME`], its sealed contact and a provider's free-text
    /// description are emptied. False if the event carried none of it.
    pub fn redact(&mut self, subject: &Subject) -> bool {
        match self {
            Event::ProviderRegistered(p) if Subject::Provider(p.id) == *subject => {
                p.name = ERASED_NAME.into();
                p.contact = SealedContact::default();
                true
            }
            Event::RecipientRegistered(r) if Subject::Recipient(r.id) == *subject => {
                r.name = ERASED_NAME.into();
                r.contact = SealedContact::default();
                true
            }
            Event::ContactResealed {
                subject: s,
                contact,
            } if s == subject && !contact.is_empty() => {
                *contact = SealedContact::default();
                true
            }
            Event::SurplusPosted(s)
                if Subject::Provider(s.provider_id) == *subject && !s.description.is_empty() =>
            {
                s.description.clear();
                true
            }
            _ => false,
        }
    }

    /// Key rotation in a stored copy of this event: `subject`'s sealed
    /// contact is replaced by `contact`. False if nothing changed.
    pub fn reseal(&mut self, subject: &Subject, contact: &SealedContact) -> bool {
        let slot = match self {
            Event::ProviderRegistered(p) if Subject::Provider(p.id) == *subject => &mut p.contact,
            Event::RecipientRegistered(r) if Subject::Recipient(r.id) == *subject => &mut r.contact,
            Event::ContactResealed {
                subject: s,
                contact: c,
            } if s == subject => c,
            _ => return false,
        };
        if slot.is_empty() || slot == contact {
            return false;
        }
        *slot = contact.clone();
        true
    }

    /// A short stable name, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ProviderRegistered(_) => "provider_registered",
            Event::RecipientRegistered(_) => "recipient_registered",
            Event::SurplusPosted(_) => "surplus_posted",
            Event::OfferMade { .. } => "offer_made",
            Event::OfferDeclined { .. } => "offer_declined",
            Event::OfferTimedOut { .. } => "offer_timed_out",
            Event::Claimed { .. } => "claimed",
            Event::PickedUp { .. } => "picked_up",
            Event::Delivered { .. } => "delivered",
            Event::Expired { .. } => "expired",
            Event::DeadLettered { .. } => "dead_lettered",
            Event::ContactResealed { .. } => "contact_resealed",
            Event::SubjectErased { .. } => "subject_erased",
            Event::Audited(_) => "audited",
        }
    }
}

/// An event as it sits in the outbox and travels to the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub edge_id: EdgeId,
    /// Dense and increasing per edge, starting at 1.
    pub seq: u64,
    /// The epoch of the cell lease the edge held when it committed the event;
    /// the hub fences events from a stale epoch.
    pub lease_epoch: u64,
    pub at: Timestamp,
    pub trace_context: Option<TraceContext>,
    pub event: Event,
}
