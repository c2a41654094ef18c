//! The vocabulary of writes: validated requests the API (or `simulate`)
//! hands to the writer, and the typed outcomes it answers with.

use sync_protocol::{
    AuditRecord, Contact, FoodType, FoodTypeSet, GeoPoint, Mass, ProviderId, RecipientId, Timestamp,
};

use edge_core::engine::CommandRefusal;
use edge_core::idempotency::Fingerprint;
use edge_core::lifecycle::Refusal;
use sync_protocol::Surplus;

#[derive(Debug, Clone, PartialEq)]
pub struct NewProvider {
    pub name: String,
    pub location: GeoPoint,
    /// Where to pick up, as people write it ('' for none). Kept on this
    /// edge only (not in the event).
    pub address: String,
    pub contact: Contact,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRecipient {
    pub name: String,
    pub location: GeoPoint,
    pub capacity_per_day: Mass,
    pub accepted_food_types: FoodTypeSet,
    pub is_fallback: bool,
    pub contact: Contact,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSurplus {
    pub provider_id: ProviderId,
    pub location: GeoPoint,
    pub quantity: Mass,
    pub food_type: FoodType,
    pub expires_at: Timestamp,
    pub description: String,
}

impl NewSurplus {
    /// A stable fingerprint of the request, so an `Idempotency-Key` reused
    /// with a different body is caught.
    pub fn fingerprint(&self) -> u64 {
        Fingerprint::new()
            .feed(self.provider_id.as_bytes())
            .feed(&self.location.lat().to_bits().to_le_bytes())
            .feed(&self.location.lon().to_bits().to_le_bytes())
            .feed(&self.quantity.grams().to_le_bytes())
            .feed(self.food_type.as_str().as_bytes())
            .feed(&self.expires_at.unix_ms().to_le_bytes())
            .feed(self.description.as_bytes())
            .finish()
    }
}

/// An `Idempotency-Key` header value and the fingerprint of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: u64,
}

/// What a recipient does to a surplus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurplusAction {
    Claim {
        recipient_id: RecipientId,
        version: u64,
    },
    Accept {
        recipient_id: RecipientId,
    },
    Decline {
        recipient_id: RecipientId,
    },
    PickUp {
        recipient_id: RecipientId,
    },
    Deliver {
        recipient_id: RecipientId,
        delivered: Mass,
    },
    /// An operator's retry of a dead-lettered surplus: matched again now.
    DlqRetry,
    /// An operator hands a dead-lettered surplus to a recipient: offered to it.
    DlqResolve {
        recipient_id: RecipientId,
    },
}

impl SurplusAction {
    /// The audit log's name for the action.
    pub fn name(&self) -> &'static str {
        match self {
            SurplusAction::Claim { .. } => "surplus.claim",
            SurplusAction::Accept { .. } => "offer.accept",
            SurplusAction::Decline { .. } => "offer.decline",
            SurplusAction::PickUp { .. } => "surplus.pickup",
            SurplusAction::Deliver { .. } => "surplus.deliver",
            SurplusAction::DlqRetry => "dlq.retry",
            SurplusAction::DlqResolve { .. } => "dlq.resolve",
        }
    }

    /// A stable fingerprint of the action on `surplus`, so an
    /// `Idempotency-Key` reused for another action is caught.
    pub fn fingerprint(&self, surplus: &sync_protocol::SurplusId) -> u64 {
        let (version, grams) = match *self {
            SurplusAction::Claim { version, .. } => (version, 0),
            SurplusAction::Deliver { delivered, .. } => (0, delivered.grams()),
            _ => (0, 0),
        };
        Fingerprint::new()
            .feed(self.name().as_bytes())
            .feed(&self.recipient_id().map_or([0u8; 16], |r| *r.as_bytes()))
            .feed(surplus.as_bytes())
            .feed(&version.to_le_bytes())
            .feed(&grams.to_le_bytes())
            .finish()
    }

    /// The recipient acting; `None` for an operator's action (admins only).
    pub fn recipient_id(&self) -> Option<RecipientId> {
        match *self {
            SurplusAction::Claim { recipient_id, .. }
            | SurplusAction::Accept { recipient_id }
            | SurplusAction::Decline { recipient_id }
            | SurplusAction::PickUp { recipient_id }
            | SurplusAction::Deliver { recipient_id, .. } => Some(recipient_id),
            SurplusAction::DlqRetry | SurplusAction::DlqResolve { .. } => None,
        }
    }
}

/// Who makes a call and from where, for the audit log. The action and
/// resource are named by the caller; the status by the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The token's `sub`.
    pub sub: String,
    /// `provider`, `ngo` or `admin`.
    pub role: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    /// The audit record of `action` on `resource`, answered with `status`.
    pub fn record(&self, action: &str, resource: String, status: u16) -> AuditRecord {
        AuditRecord {
            actor: self.sub.clone(),
            role: self.role.clone(),
            action: action.to_string(),
            resource,
            status,
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// Why a write was refused (each maps to one HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    NotFound,
    UnknownProvider,
    UnknownRecipient,
    /// Too many unfinished surplus: try again later.
    Saturated,
    /// The `Idempotency-Key` was used before with a different request.
    IdempotencyKeyReused,
    /// A registry is full.
    RegistryFull,
    /// The expiry passed before the surplus could be stored.
    ExpiryInPast,
    /// The recipient holds too many uncollected claims.
    TooManyOpenClaims,
    Lifecycle(Refusal),
}

impl Rejected {
    /// The HTTP status this refusal is answered with (the audit log records
    /// it; the API's error mapping is tested against it).
    pub fn status(&self) -> u16 {
        match self {
            Rejected::NotFound => 404,
            Rejected::UnknownProvider
            | Rejected::UnknownRecipient
            | Rejected::IdempotencyKeyReused
            | Rejected::ExpiryInPast => 422,
            Rejected::Saturated | Rejected::RegistryFull => 503,
            Rejected::TooManyOpenClaims => 429,
            Rejected::Lifecycle(Refusal::Expired) => 410,
            Rejected::Lifecycle(Refusal::DeliveredExceedsQuantity) => 422,
            Rejected::Lifecycle(_) => 409,
        }
    }
}

impl From<CommandRefusal> for Rejected {
    fn from(r: CommandRefusal) -> Rejected {
        match r {
            CommandRefusal::NotLive => Rejected::NotFound,
            CommandRefusal::UnknownProvider => Rejected::UnknownProvider,
            CommandRefusal::UnknownRecipient => Rejected::UnknownRecipient,
            CommandRefusal::Saturated => Rejected::Saturated,
            CommandRefusal::RegistryFull => Rejected::RegistryFull,
            CommandRefusal::ExpiryInPast => Rejected::ExpiryInPast,
            CommandRefusal::TooManyOpenClaims => Rejected::TooManyOpenClaims,
            CommandRefusal::Lifecycle(l) => Rejected::Lifecycle(l),
        }
    }
}

/// A refusal and, where there is one, the surplus as it now stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Rejected,
    pub current: Option<Box<Surplus>>,
}

/// An action's result: the surplus, and whether the action was applied
/// before under the same `Idempotency-Key` (then it is not applied again).
#[derive(Debug, Clone, PartialEq)]
pub struct Acted {
    pub surplus: Surplus,
    pub replayed: bool,
}

/// A post's result: the surplus, and whether it already existed under the
/// same `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub surplus: Surplus,
    pub replayed: bool,
}

/// How a notification channel reaches its recipient (issue 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// An HTTPS endpoint of the recipient's own, signed the Standard
    /// Webhooks way.
    Webhook,
    /// A text message through the SMS gateway; answered with `YA n`.
    Sms,
    /// A WhatsApp message through the same gateway.
    Whatsapp,
    /// A browser's push subscription (the kiosk page, a phone): an
    /// encrypted message to its push service, VAPID-identified.
    WebPush,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Sms => "sms",
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::WebPush => "web_push",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        match s {
            "webhook" => Some(ChannelKind::Webhook),
            "sms" => Some(ChannelKind::Sms),
            "whatsapp" => Some(ChannelKind::Whatsapp),
            "web_push" => Some(ChannelKind::WebPush),
            _ => None,
        }
    }
}

/// What a channel needs to send, sealed at rest: where to, and the secret
/// that signs it. Its `Debug` never shows the secret.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelTarget {
    /// A webhook's URL ('' for a phone channel).
    #[serde(default)]
    pub url: String,
    /// `whsec_` and the base64 of the HMAC key (the Standard Webhooks form;
    /// '' for a phone channel).
    #[serde(default)]
    pub secret: String,
    /// A phone channel's number in E.164 ('' for a webhook).
    #[serde(default)]
    pub phone: String,
    /// A push subscription's P-256 public key and authentication secret,
    /// base64url ('' for other kinds); its endpoint is `url`.
    #[serde(default)]
    pub p256dh: String,
    #[serde(default)]
    pub auth: String,
}

impl std::fmt::Debug for ChannelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelTarget")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("phone", &"<redacted>")
            .field("p256dh", &"<redacted>")
            .field("auth", &"<redacted>")
            .finish()
    }
}
