//! JSON bodies of the API and their validation into commands. Units are in
//! the names (`quantity_kg`), times are RFC 3339 strings, food types are
//! snake_case names. Validation failures are 422s with a specific code.

use serde::{Deserialize, Serialize};
use sync_protocol::{
    Contact, FoodType, FoodTypeSet, GeoPoint, Mass, Provider, Recipient, RecipientId, SurplusId,
    Timestamp, Validation,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use crate::cells;
use crate::commands::{NewProvider, NewRecipient, NewSurplus};
use sync_protocol::Surplus;

pub fn rfc3339(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.unix_ms()) * 1_000_000)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let d = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let ms = d.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).ok().map(Timestamp::from_unix_ms)
}

fn point(lat: f64, lon: f64) -> Result<GeoPoint, ApiError> {
    GeoPoint::new(lat, lon).map_err(|e| ApiError::invalid("invalid_coordinates", e.to_string()))
}

fn name(s: String) -> Result<String, ApiError> {
    let t = s.trim();
    if t.is_empty()
        || t.chars().count() > Validation::MAX_NAME_CHARS
        || t.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "invalid_name",
            format!(
                "name must be 1 to {} printable characters",
                Validation::MAX_NAME_CHARS
            ),
        ));
    }
    Ok(t.to_string())
}

fn contact(phone: String, email: String) -> Result<Contact, ApiError> {
    let phone_ok = (3..=Validation::MAX_PHONE_CHARS).contains(&phone.len())
        && phone.chars().any(|c| c.is_ascii_digit())
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !phone_ok {
        return Err(ApiError::invalid(
            "invalid_phone",
            "contact_phone must be 3 to 32 characters of digits, spaces and + - ( ) .",
        ));
    }
    let email_ok = email.len() <= Validation::MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !email_ok {
        return Err(ApiError::invalid(
            "invalid_email",
            "contact_email must be an e-mail address",
        ));
    }
    Ok(Contact { phone, email })
}

fn food_type(s: &str) -> Result<FoodType, ApiError> {
    s.parse()
        .map_err(|e: sync_protocol::domain::UnknownFoodType| {
            ApiError::invalid("unknown_food_type", e.to_string())
        })
}

fn positive_kg(kg: f64, max_kg: f64, code: &'static str, field: &str) -> Result<Mass, ApiError> {
    let ok = kg.is_finite() && kg > 0.0 && kg <= max_kg;
    match Mass::from_kg(kg).filter(|m| ok && m.grams() > 0) {
        Some(m) => Ok(m),
        None => Err(ApiError::invalid(
            code,
            format!("{field} must be more than 0 and at most {max_kg}"),
        )),
    }
}

/// `POST /providers`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProviderRequest {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub contact_phone: String,
    pub contact_email: String,
}

impl NewProviderRequest {
    pub fn validate(self) -> Result<NewProvider, ApiError> {
        Ok(NewProvider {
            name: name(self.name)?,
            location: point(self.lat, self.lon)?,
            contact: contact(self.contact_phone, self.contact_email)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderJson {
    pub id: Uuid,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// Contact data: shown to admins only (`null` otherwise).
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
}

impl ProviderJson {
    /// `contact`: opened for an admin; `None` hides it.
    pub fn new(p: &Provider, contact: Option<&Contact>) -> ProviderJson {
        ProviderJson {
            id: *p.id.as_uuid(),
            name: p.name.clone(),
            lat: p.location.lat(),
            lon: p.location.lon(),
            contact_phone: contact.map(|c| c.phone.clone()),
            contact_email: contact.map(|c| c.email.clone()),
        }
    }
}

/// `POST /recipients`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecipientRequest {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub capacity_kg_per_day: f64,
    /// snake_case food type names, e.g. `["prepared_meals", "bakery"]`.
    pub accepted_food_types: Vec<String>,
    #[serde(default)]
    pub is_fallback: bool,
    pub contact_phone: String,
    pub contact_email: String,
}

impl NewRecipientRequest {
    pub fn validate(self) -> Result<NewRecipient, ApiError> {
        if self.accepted_food_types.is_empty()
            || self.accepted_food_types.len() > 2 * FoodType::ALL.len()
        {
            return Err(ApiError::invalid(
                "invalid_food_types",
                "accepted_food_types must list at least one food type",
            ));
        }
        let types = self
            .accepted_food_types
            .iter()
            .map(|s| food_type(s))
            .collect::<Result<FoodTypeSet, _>>()?;
        Ok(NewRecipient {
            name: name(self.name)?,
            location: point(self.lat, self.lon)?,
            capacity_per_day: positive_kg(
                self.capacity_kg_per_day,
                Validation::MAX_CAPACITY_KG_PER_DAY,
                "invalid_capacity",
                "capacity_kg_per_day",
            )?,
            accepted_food_types: types,
            is_fallback: self.is_fallback,
            contact: contact(self.contact_phone, self.contact_email)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecipientJson {
    pub id: Uuid,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// The S2 cell token the recipient lies in.
    pub cell: String,
    pub capacity_kg_per_day: f64,
    pub accepted_food_types: Vec<String>,
    pub is_fallback: bool,
    /// Contact data: shown to admins only (`null` otherwise).
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
}

impl RecipientJson {
    /// `contact`: opened for an admin; `None` hides it.
    pub fn new(r: &Recipient, cell: u64, contact: Option<&Contact>) -> RecipientJson {
        RecipientJson {
            id: *r.id.as_uuid(),
            name: r.name.clone(),
            lat: r.location.lat(),
            lon: r.location.lon(),
            cell: cells::token(cell),
            capacity_kg_per_day: r.capacity_per_day.kg(),
            accepted_food_types: r
                .accepted_food_types
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            is_fallback: r.is_fallback,
            contact_phone: contact.map(|c| c.phone.clone()),
            contact_email: contact.map(|c| c.email.clone()),
        }
    }
}

/// `POST /surplus`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSurplusRequest {
    pub provider_id: Uuid,
    pub lat: f64,
    pub lon: f64,
    pub quantity_kg: f64,
    /// One of `prepared_meals`, `bakery`, `produce`, `dairy`, `meat_fish`,
    /// `dry_goods`, `frozen`.
    pub food_type: String,
    /// RFC 3339, in the future (at most 14 days).
    pub expires_at: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl NewSurplusRequest {
    pub fn validate(self, now: Timestamp) -> Result<NewSurplus, ApiError> {
        let location = point(self.lat, self.lon)?;
        let quantity = positive_kg(
            self.quantity_kg,
            Validation::MAX_QUANTITY_KG,
            "invalid_quantity",
            "quantity_kg",
        )?;
        let food_type = food_type(&self.food_type)?;
        let expires_at = parse_rfc3339(&self.expires_at).ok_or_else(|| {
            ApiError::invalid("invalid_expiry", "expires_at must be an RFC 3339 date-time")
        })?;
        // Whether it is already past is the writer's call, against its own
        // clock and after an Idempotency-Key replay (a retry of an accepted
        // post must get the original, even if the food has since expired).
        if expires_at
            > now + sync_protocol::Duration::from_mins(Validation::MAX_EXPIRY_DAYS * 24 * 60)
        {
            return Err(ApiError::invalid(
                "invalid_expiry",
                "expires_at must be within 14 days",
            ));
        }
        let description = self.description.unwrap_or_default();
        if description.chars().count() > Validation::MAX_DESCRIPTION_CHARS
            || description
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ApiError::invalid(
                "invalid_description",
                format!(
                    "description must be at most {} characters, without control characters",
                    Validation::MAX_DESCRIPTION_CHARS
                ),
            ));
        }
        Ok(NewSurplus {
            provider_id: sync_protocol::ProviderId::from_uuid(self.provider_id),
            location,
            quantity,
            food_type,
            expires_at,
            description,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OfferJson {
    pub recipient_id: Uuid,
    /// When the offer lapses if not accepted (RFC 3339).
    pub expires_at: String,
    /// Offered to the cell's fallback recipient after the DLQ gave up.
    pub fallback: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SurplusJson {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub lat: f64,
    pub lon: f64,
    /// The S2 cell token the surplus lies in.
    pub cell: String,
    pub quantity_kg: f64,
    pub food_type: String,
    pub description: String,
    pub expires_at: String,
    pub posted_at: String,
    pub updated_at: String,
    /// `available`, `offered`, `claimed`, `picked_up`, `delivered`, `expired`
    /// or `dead_lettered`.
    pub status: String,
    /// Send this back when claiming: first commit wins.
    pub version: u64,
    pub claimed_by: Option<Uuid>,
    pub delivered_kg: Option<f64>,
    pub offer: Option<OfferJson>,
}

impl From<&Surplus> for SurplusJson {
    fn from(v: &Surplus) -> SurplusJson {
        SurplusJson {
            id: *v.id.as_uuid(),
            provider_id: *v.provider_id.as_uuid(),
            lat: v.location.lat(),
            lon: v.location.lon(),
            cell: cells::token(v.cell),
            quantity_kg: v.quantity.kg(),
            food_type: v.food_type.as_str().to_string(),
            description: v.description.clone(),
            expires_at: rfc3339(v.expires_at),
            posted_at: rfc3339(v.posted_at),
            updated_at: rfc3339(v.updated_at),
            status: v.status.as_str().to_string(),
            version: v.version,
            claimed_by: v.claimed_by.map(|r| *r.as_uuid()),
            delivered_kg: v.delivered.map(Mass::kg),
            offer: v.offer.as_ref().map(|o| OfferJson {
                recipient_id: *o.recipient_id.as_uuid(),
                expires_at: rfc3339(o.expires_at),
                fallback: o.fallback,
            }),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SurplusNearJson {
    #[serde(flatten)]
    pub surplus: SurplusJson,
    pub distance_km: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SurplusListJson {
    /// Nearest first.
    pub items: Vec<SurplusNearJson>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OfferListJson {
    /// Surplus currently offered to this recipient.
    pub items: Vec<SurplusJson>,
}

/// `GET /surplus` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NearQuery {
    pub lat: f64,
    pub lon: f64,
    /// Defaults to 15 km.
    pub radius_km: Option<f64>,
    /// Only surplus in this status.
    pub status: Option<String>,
    /// At most this many items (default and maximum: 500).
    pub limit: Option<usize>,
}

/// `POST /surplus/{id}/claim`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub recipient_id: Uuid,
    /// The `version` the recipient read.
    pub version: u64,
}

/// `POST /offers/{surplus_id}/accept`, `/decline`, `POST /surplus/{id}/pickup`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientRequest {
    pub recipient_id: Uuid,
}

/// `POST /surplus/{id}/deliver`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverRequest {
    pub recipient_id: Uuid,
    /// The mass that reached people: the impact figure.
    pub delivered_kg: f64,
}

impl DeliverRequest {
    pub fn delivered(&self) -> Result<Mass, ApiError> {
        let ok = self.delivered_kg.is_finite()
            && self.delivered_kg >= 0.0
            && self.delivered_kg <= Validation::MAX_QUANTITY_KG;
        Mass::from_kg(self.delivered_kg)
            .filter(|_| ok)
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_quantity",
                    "delivered_kg must be between 0 and the quantity posted",
                )
            })
    }
}

pub fn recipient_id(u: Uuid) -> RecipientId {
    RecipientId::from_uuid(u)
}

pub fn surplus_id(u: Uuid) -> SurplusId {
    SurplusId::from_uuid(u)
}

/// `GET /sync`: the link to the hub.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncJson {
    /// A hub is configured.
    pub enabled: bool,
    pub connected: bool,
    /// The last outbox event committed here.
    pub committed_seq: u64,
    /// The last one the hub acknowledged.
    pub acked_seq: u64,
    /// Events committed but not yet acknowledged.
    pub backlog: u64,
    /// Age of the oldest unacknowledged event, in seconds.
    pub lag_seconds: f64,
    pub lease_epoch: u64,
    /// Cells whose lease another edge holds (S2 tokens).
    pub lease_conflicts: Vec<String>,
    /// Recipients of neighbouring cells imported from the hub.
    pub neighbours_imported: u64,
    /// Sessions established with the hub since the edge started.
    pub sessions: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthJson {
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_the_millisecond() {
        let t = Timestamp::from_unix_ms(1_795_539_600_123);
        assert_eq!(rfc3339(t), "2026-11-24T17:00:00.123Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        assert_eq!(
            parse_rfc3339("2026-11-25T00:00:00+07:00"),
            Some(Timestamp::from_unix_ms(1_795_539_600_000))
        );
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }

    #[test]
    fn contact_validation_table() {
        let ok = [
            ("+62 812-3456-7890", "a@b.id"),
            ("021 555", "food.bank@example.org"),
        ];
        for (p, e) in ok {
            assert!(contact(p.into(), e.into()).is_ok(), "{p} {e}");
        }
        let bad = [
            ("", "a@b.id"),
            ("call me", "a@b.id"),
            ("+62", "nope"),
            ("+62 812", "a@b"),
            ("+62 812", "a b@c.id"),
            ("+62 812", "@b.id"),
        ];
        for (p, e) in bad {
            assert!(contact(p.into(), e.into()).is_err(), "{p} {e}");
        }
    }
}
