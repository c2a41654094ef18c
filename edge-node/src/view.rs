//! What readers see of a surplus: a plain snapshot, built by the writer after
//! each commit (for the in-memory read model) or from a stored row.

use sync_protocol::{
    FoodType, GeoPoint, Mass, ProviderId, RecipientId, SurplusId, SurplusStatus, Timestamp,
};

use crate::core::lifecycle::Surplus;

#[derive(Debug, Clone, PartialEq)]
pub struct OfferView {
    pub recipient_id: RecipientId,
    /// The offer's ACK deadline.
    pub expires_at: Timestamp,
    pub fallback: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SurplusView {
    pub id: SurplusId,
    pub provider_id: ProviderId,
    pub location: GeoPoint,
    pub cell: u64,
    pub quantity: Mass,
    pub food_type: FoodType,
    pub expires_at: Timestamp,
    pub description: String,
    pub posted_at: Timestamp,
    pub status: SurplusStatus,
    pub version: u64,
    pub claimed_by: Option<RecipientId>,
    pub delivered: Option<Mass>,
    pub offer: Option<OfferView>,
    pub updated_at: Timestamp,
}

impl From<&Surplus> for SurplusView {
    fn from(s: &Surplus) -> SurplusView {
        SurplusView {
            id: s.posted.id,
            provider_id: s.posted.provider_id,
            location: s.posted.location,
            cell: s.posted.cell,
            quantity: s.posted.quantity,
            food_type: s.posted.food_type,
            expires_at: s.posted.expires_at,
            description: s.posted.description.clone(),
            posted_at: s.posted_at,
            status: s.status,
            version: s.version,
            claimed_by: s.claimed_by,
            delivered: s.delivered,
            offer: s.offer.map(|o| OfferView {
                recipient_id: o.recipient_id,
                expires_at: o.ack_deadline,
                fallback: o.fallback,
            }),
            updated_at: s.updated_at,
        }
    }
}
