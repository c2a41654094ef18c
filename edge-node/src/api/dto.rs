//! JSON bodies of the API and their validation into commands. Units are in
//! the names (`quantity_kg`), times are RFC 3339 strings, food types are
//! snake_case names. Validation failures are 422s with a specific code.
//!
//! The OpenAPI schemas state exactly what the validators enforce: each
//! string rule is one pattern constant below, used by both the schema and
//! the validator's tests, so a generated client or an API fuzzer can trust
//! the document (`tests/openapi_contract.rs` checks validator and schema
//! agree on random input; schemathesis checks the running edge).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sync_protocol::{
    Contact, FoodType, FoodTypeSet, GeoPoint, Mass, Provider, Recipient, RecipientId, SurplusId,
    SurplusStatus, Timestamp, Validation,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::Role;
use crate::cells;
use crate::commands::{NewProvider, NewRecipient, NewSurplus};
use sync_protocol::Surplus;

/// Control characters (Unicode `Cc`, what `char::is_control` refuses), as
/// an ECMA-262 character-class body.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// Control characters and Unicode `White_Space` (what `char::is_whitespace`
/// and `str::trim` take), as an ECMA-262 character-class body.
const CONTROL_OR_SPACE: &str =
    r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A name: no control characters, and something besides white space
/// (surrounding white space is trimmed off before it is stored).
pub fn name_pattern() -> String {
    format!("^[^{CONTROL}]*[^{CONTROL_OR_SPACE}][^{CONTROL}]*$")
}

/// A phone number: digits, spaces and `+ - ( ) .`, at least one digit.
pub const PHONE_PATTERN: &str = r"^[0-9 +\-().]*[0-9][0-9 +\-().]*$";
/// The fewest characters a phone number has.
pub const MIN_PHONE_CHARS: usize = 3;

/// An e-mail address: one `@`, something before it, and a domain holding a
/// dot that neither starts nor ends it; no white space or control characters.
pub fn email_pattern() -> String {
    let x = CONTROL_OR_SPACE;
    format!("^[^@{x}]+@[^@.{x}][^@{x}]*\\.[^@{x}]*[^@.{x}]$")
}

/// A description: no control characters but line feed and tab.
pub const DESCRIPTION_PATTERN: &str = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$";

/// A street address: no control characters (surrounding white space is
/// trimmed off before it is stored).
pub fn address_pattern() -> String {
    format!("^[^{CONTROL}]*$")
}
/// The most characters an address has.
pub const MAX_ADDRESS_CHARS: usize = 300;

/// The least mass the edge keeps (it stores whole grams).
pub const MIN_KG: f64 = 0.001;

fn string_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn string_enum<'a>(description: &str, names: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    string_schema(description)
        .enum_values(Some(names.into_iter().map(str::to_string)))
        .into()
}

/// Declares a schema-only type: its name in `components/schemas` and its schema.
macro_rules! schema_type {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        pub struct $ty;
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

schema_type!(
    /// A provider's or recipient's name.
    NameText,
    "Name",
    string_schema("1 to 200 characters, not only white space, no control characters; trimmed when stored")
        .min_length(Some(1))
        .max_length(Some(Validation::MAX_NAME_CHARS))
        .pattern(Some(name_pattern()))
        .into()
);
schema_type!(
    /// A contact phone number.
    PhoneText,
    "Phone",
    string_schema("3 to 32 characters of digits, spaces and + - ( ) .")
        .min_length(Some(MIN_PHONE_CHARS))
        .max_length(Some(Validation::MAX_PHONE_CHARS))
        .pattern(Some(PHONE_PATTERN))
        .into()
);
schema_type!(
    /// A contact e-mail address.
    EmailText,
    "Email",
    string_schema("An e-mail address, at most 254 characters")
        .max_length(Some(Validation::MAX_EMAIL_CHARS))
        .pattern(Some(email_pattern()))
        .into()
);
schema_type!(
    /// A surplus's free-text description.
    DescriptionText,
    "Description",
    string_schema("At most 2,000 characters, no control characters but line feed and tab")
        .max_length(Some(Validation::MAX_DESCRIPTION_CHARS))
        .pattern(Some(DESCRIPTION_PATTERN))
        .into()
);
schema_type!(
    /// A provider's street address.
    AddressText,
    "Address",
    string_schema("At most 300 characters, no control characters; trimmed when stored")
        .max_length(Some(MAX_ADDRESS_CHARS))
        .pattern(Some(address_pattern()))
        .into()
);
schema_type!(
    /// A food type's snake_case name.
    FoodTypeName,
    "FoodType",
    string_enum("A food type", FoodType::ALL.iter().map(|t| t.as_str()))
);
schema_type!(
    /// A surplus status's snake_case name.
    SurplusStatusName,
    "SurplusStatus",
    string_enum(
        "Where a surplus is in its life",
        SurplusStatus::ALL.iter().map(|s| s.as_str())
    )
);
schema_type!(
    /// A token's role.
    RoleName,
    "Role",
    string_enum("A caller's role", ROLES.iter().map(|r| r.as_str()))
);
schema_type!(
    /// What became of an offer.
    OfferOutcomeName,
    "OfferOutcome",
    string_enum("What became of an offer", OFFER_OUTCOMES)
);

schema_type!(
    /// What a probe answers.
    HealthStatusName,
    "HealthStatus",
    string_enum("`ok` (/healthz) or `ready` (/readyz)", ["ok", "ready"])
);
schema_type!(
    /// Which kind of data subject an id names.
    SubjectKindName,
    "SubjectKind",
    string_enum("A data subject's kind", ["provider", "recipient"])
);

/// Every role a token can carry.
const ROLES: [Role; 3] = [Role::Provider, Role::Ngo, Role::Admin];

/// A new [`Role`] must be added to [`ROLES`]: this match stops compiling.
const _: fn(Role) = |r| match r {
    Role::Provider | Role::Ngo | Role::Admin => {}
};

/// What the offers table records as an offer's outcome.
pub const OFFER_OUTCOMES: [&str; 6] = [
    "pending",
    "accepted",
    "declined",
    "timed_out",
    "superseded",
    "expired",
];

pub use crate::clock::rfc3339;

/// An RFC 3339 date-time as JSON Schema's `format: date-time` reads one:
/// the `time` crate also takes a space for the `T`, which it does not, and
/// refuses a leap second (`23:59:60` in UTC), which it takes; a leap second
/// reads as the instant after 23:59:59.
fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let d = if s.get(17..19) == Some("60") {
        let before = format!("{}59{}", &s[..17], &s[19..]);
        let d = OffsetDateTime::parse(&before, &Rfc3339).ok()?;
        let utc = d.to_offset(time::UtcOffset::UTC);
        if (utc.hour(), utc.minute(), utc.second()) != (23, 59, 59) {
            return None;
        }
        d + time::Duration::SECOND
    } else {
        OffsetDateTime::parse(s, &Rfc3339).ok()?
    };
    let ms = d.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).ok().map(Timestamp::from_unix_ms)
}

fn point(lat: f64, lon: f64) -> Result<GeoPoint, ApiError> {
    GeoPoint::new(lat, lon).map_err(|e| ApiError::invalid("invalid_coordinates", e.to_string()))
}

/// An address as [`AddressText`] states it; stored trimmed.
fn address(s: Option<String>) -> Result<String, ApiError> {
    let s = s.unwrap_or_default();
    if s.chars().count() > MAX_ADDRESS_CHARS || s.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_address",
            format!("address must be at most {MAX_ADDRESS_CHARS} printable characters"),
        ));
    }
    Ok(s.trim().to_string())
}

/// A name as [`NameText`] states it; stored trimmed.
fn name(s: String) -> Result<String, ApiError> {
    let t = s.trim();
    if t.is_empty()
        || s.chars().count() > Validation::MAX_NAME_CHARS
        || s.chars().any(char::is_control)
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

/// A phone as [`PhoneText`] states it, an e-mail as [`EmailText`] does.
fn contact(phone: String, email: String) -> Result<Contact, ApiError> {
    let phone_ok = (MIN_PHONE_CHARS..=Validation::MAX_PHONE_CHARS).contains(&phone.len())
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
    let email_ok = email.chars().count() <= Validation::MAX_EMAIL_CHARS
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

/// A mass of at least one gram ([`MIN_KG`]) and at most `max_kg`.
fn positive_kg(kg: f64, max_kg: f64, code: &'static str, field: &str) -> Result<Mass, ApiError> {
    let ok = kg.is_finite() && (MIN_KG..=max_kg).contains(&kg);
    match Mass::from_kg(kg).filter(|m| ok && m.grams() > 0) {
        Some(m) => Ok(m),
        None => Err(ApiError::invalid(
            code,
            format!("{field} must be at least {MIN_KG} (a gram) and at most {max_kg}"),
        )),
    }
}

/// `POST /providers`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProviderRequest {
    #[schema(value_type = NameText)]
    pub name: String,
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// Where to pick up food, as people write it (kiosks show it).
    #[schema(value_type = Option<AddressText>)]
    #[serde(default)]
    pub address: Option<String>,
    #[schema(value_type = PhoneText)]
    pub contact_phone: String,
    #[schema(value_type = EmailText)]
    pub contact_email: String,
}

impl NewProviderRequest {
    pub fn validate(self) -> Result<NewProvider, ApiError> {
        Ok(NewProvider {
            name: name(self.name)?,
            location: point(self.lat, self.lon)?,
            address: address(self.address)?,
            contact: contact(self.contact_phone, self.contact_email)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderJson {
    pub id: Uuid,
    /// As registered, or empty once erased.
    pub name: String,
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// Where to pick up ('' when none was given, or once erased).
    pub address: String,
    /// Contact data: shown to admins only (`null` otherwise).
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
}

/// What any caller may see of a provider: enough to pick food up (no
/// contact data). Kiosks show it with each offer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderCardJson {
    pub id: Uuid,
    /// As registered, or empty once erased.
    pub name: String,
    /// Where to pick up ('' when none was given, or once erased).
    pub address: String,
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
}

impl ProviderCardJson {
    pub fn new(p: &Provider, address: String) -> ProviderCardJson {
        ProviderCardJson {
            id: *p.id.as_uuid(),
            name: p.name.clone(),
            address,
            lat: p.location.lat(),
            lon: p.location.lon(),
        }
    }
}

impl ProviderJson {
    /// `contact`: opened for an admin; `None` hides it.
    pub fn new(p: &Provider, address: String, contact: Option<&Contact>) -> ProviderJson {
        ProviderJson {
            id: *p.id.as_uuid(),
            name: p.name.clone(),
            lat: p.location.lat(),
            lon: p.location.lon(),
            address,
            contact_phone: contact.map(|c| c.phone.clone()),
            contact_email: contact.map(|c| c.email.clone()),
        }
    }
}

/// The longest `accepted_food_types` list (repeats are allowed).
pub const MAX_ACCEPTED_FOOD_TYPES: usize = 2 * FoodType::ALL.len();

/// `POST /recipients`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecipientRequest {
    #[schema(value_type = NameText)]
    pub name: String,
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// At least a gram, at most 1,000 t.
    #[schema(minimum = 0.001, maximum = 1_000_000.0)]
    pub capacity_kg_per_day: f64,
    /// snake_case food type names, e.g. `["prepared_meals", "bakery"]`
    /// (repeats allowed, at most twice as many as there are food types).
    #[schema(value_type = Vec<FoodTypeName>, min_items = 1, max_items = 14)]
    pub accepted_food_types: Vec<String>,
    #[serde(default)]
    #[schema(default = false)]
    pub is_fallback: bool,
    #[schema(value_type = PhoneText)]
    pub contact_phone: String,
    #[schema(value_type = EmailText)]
    pub contact_email: String,
}

impl NewRecipientRequest {
    pub fn validate(self) -> Result<NewRecipient, ApiError> {
        if self.accepted_food_types.is_empty()
            || self.accepted_food_types.len() > MAX_ACCEPTED_FOOD_TYPES
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
    /// As registered, or empty once erased.
    pub name: String,
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// The S2 cell token the recipient lies in.
    pub cell: String,
    pub capacity_kg_per_day: f64,
    #[schema(value_type = Vec<FoodTypeName>, min_items = 1)]
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
    #[serde(deserialize_with = "hyphenated_uuid")]
    pub provider_id: Uuid,
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// At least a gram, at most ten tonnes.
    #[schema(minimum = 0.001, maximum = 10_000.0)]
    pub quantity_kg: f64,
    #[schema(value_type = FoodTypeName)]
    pub food_type: String,
    /// RFC 3339, in the future and at most 14 days away (422
    /// `expiry_in_past` / `invalid_expiry` otherwise: a rule on the clock,
    /// which no schema can state).
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[serde(default)]
    #[schema(value_type = Option<DescriptionText>)]
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
    #[schema(format = DateTime)]
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
    #[schema(value_type = FoodTypeName)]
    pub food_type: String,
    pub description: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub posted_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(value_type = SurplusStatusName)]
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
    #[param(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[param(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// More than 0, at most `http.max_radius_km`; defaults to
    /// `matching.radius_km` (the served document states this edge's values).
    #[param(exclusive_minimum = 0.0, maximum = 100.0)]
    pub radius_km: Option<f64>,
    /// Only surplus in this status.
    #[param(value_type = Option<SurplusStatusName>)]
    pub status: Option<String>,
    /// At most this many items, 1 to `http.max_list_items` (also the default).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "integral_usize")]
    pub limit: Option<usize>,
}

/// A UUID as the document's `format: uuid` states one: the hyphenated
/// 8-4-4-4-12 spelling only (the `uuid` crate also reads the simple, braced
/// and URN spellings, which no client is told of).
pub fn hyphenated_uuid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse_hyphenated(&s).ok_or_else(|| {
        serde::de::Error::invalid_value(serde::de::Unexpected::Str(&s), &"a hyphenated UUID")
    })
}

/// `s` as a UUID, if it is spelt hyphenated (8-4-4-4-12).
pub fn parse_hyphenated(s: &str) -> Option<Uuid> {
    (s.len() == 36).then(|| Uuid::try_parse(s).ok()).flatten()
}

/// The largest whole number every JSON reader holds exactly (2^53 − 1):
/// the most an integer field takes, so the document's `maximum` means the
/// same to every client.
pub const MAX_JSON_INTEGER: u64 = (1 << 53) - 1;

/// A whole number as JSON Schema's `integer` reads one: `3` and `3.0`
/// alike (and `"3"` in a query string), 0 to [`MAX_JSON_INTEGER`].
struct Integral;

impl serde::de::Visitor<'_> for Integral {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a whole number from 0 to {MAX_JSON_INTEGER}")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        if v <= MAX_JSON_INTEGER {
            Ok(v)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
        // Exact: every whole f64 up to 2^53 is a whole number there.
        if v.fract() == 0.0 && (0.0..=MAX_JSON_INTEGER as f64).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        match (v.parse::<u64>(), v.parse::<f64>()) {
            (Ok(n), _) => Ok(n),
            (Err(_), Ok(f)) if f.is_finite() => self.visit_f64(f),
            _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
        }
    }
}

fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Integral)
}

/// [`integral`], for a count (a number beyond `usize` is refused).
fn integral_usize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = integral(d)?;
    usize::try_from(n)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("a count beyond this machine's range"))
}

/// `POST /surplus/{id}/claim`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    #[serde(deserialize_with = "hyphenated_uuid")]
    pub recipient_id: Uuid,
    /// The `version` the recipient read.
    #[serde(deserialize_with = "integral")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    pub version: u64,
}

/// `POST /offers/{surplus_id}/accept`, `/decline`, `POST /surplus/{id}/pickup`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientRequest {
    #[serde(deserialize_with = "hyphenated_uuid")]
    pub recipient_id: Uuid,
}

/// `POST /surplus/{id}/deliver`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverRequest {
    #[serde(deserialize_with = "hyphenated_uuid")]
    pub recipient_id: Uuid,
    /// The mass that reached people: the impact figure. At most the
    /// quantity posted (422 `delivered_exceeds_quantity` otherwise).
    #[schema(minimum = 0.0, maximum = 10_000.0)]
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
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(value_type = HealthStatusName)]
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
        assert_eq!(
            parse_rfc3339("2026-11-24 17:00:00Z"),
            None,
            "a space is not a T"
        );
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z"),
            "a leap second is the instant after 23:59:59"
        );
        assert_eq!(
            parse_rfc3339("2017-01-01T06:59:60+07:00"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2016-12-31T10:59:60Z"),
            None,
            "not at 23:59 UTC"
        );
    }

    #[test]
    fn integers_are_read_as_json_schema_reads_them() {
        let read = |v: serde_json::Value| integral(v).ok();
        assert_eq!(read(serde_json::json!(3)), Some(3));
        assert_eq!(read(serde_json::json!(3.0)), Some(3));
        assert_eq!(read(serde_json::json!("3")), Some(3), "a query string's");
        assert_eq!(
            read(serde_json::json!(MAX_JSON_INTEGER)),
            Some(MAX_JSON_INTEGER)
        );
        for no in [
            serde_json::json!(MAX_JSON_INTEGER + 1),
            serde_json::json!(3.5),
            serde_json::json!(-1),
            serde_json::json!(1e300),
            serde_json::json!("three"),
            serde_json::json!(null),
        ] {
            assert_eq!(read(no.clone()), None, "{no}");
        }
    }

    #[test]
    fn uuids_are_hyphenated_only() {
        let u = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(parse_hyphenated(&u.hyphenated().to_string()), Some(u));
        assert_eq!(
            parse_hyphenated(&u.hyphenated().to_string().to_uppercase()),
            Some(u)
        );
        for other in [
            u.simple().to_string(),
            u.braced().to_string(),
            u.urn().to_string(),
        ] {
            assert_eq!(parse_hyphenated(&other), None, "{other}");
        }
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

/// The most items an admin listing page holds (and its default).
pub const MAX_ADMIN_PAGE: usize = 500;
pub const DEFAULT_ADMIN_PAGE: usize = 100;

/// `GET /admin/recipients`, `GET /admin/providers`: a page in id order.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "integral_usize")]
    pub limit: Option<usize>,
    /// Start after this id: the previous page's `next`.
    #[param(value_type = Option<uuid::Uuid>)]
    #[serde(default, deserialize_with = "some_hyphenated_uuid")]
    pub after: Option<Uuid>,
}

/// `GET /admin/surplus`, `GET /admin/dlq`: what the edge holds in memory.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Only surplus in this status.
    #[param(value_type = Option<SurplusStatusName>)]
    pub status: Option<String>,
    /// At most this many items, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "integral_usize")]
    pub limit: Option<usize>,
}

/// `GET /admin/dlq`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DlqQuery {
    /// At most this many items, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "integral_usize")]
    pub limit: Option<usize>,
}

impl DlqQuery {
    pub fn limit(&self) -> Result<usize, super::error::ApiError> {
        page_limit(self.limit)
    }
}

fn some_hyphenated_uuid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
    hyphenated_uuid(d).map(Some)
}

impl PageQuery {
    /// The page size asked for, or 422.
    pub fn limit(&self) -> Result<usize, super::error::ApiError> {
        page_limit(self.limit)
    }
}

impl StatusQuery {
    pub fn limit(&self) -> Result<usize, super::error::ApiError> {
        page_limit(self.limit)
    }

    /// The status asked for, or 422.
    pub fn status(&self) -> Result<Option<sync_protocol::SurplusStatus>, super::error::ApiError> {
        self.status
            .as_deref()
            .map(str::parse::<sync_protocol::SurplusStatus>)
            .transpose()
            .map_err(|e| super::error::ApiError::invalid("invalid_status", e.to_string()))
    }
}

fn page_limit(limit: Option<usize>) -> Result<usize, super::error::ApiError> {
    match limit.unwrap_or(DEFAULT_ADMIN_PAGE) {
        n @ 1..=MAX_ADMIN_PAGE => Ok(n),
        _ => Err(super::error::ApiError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_ADMIN_PAGE}"),
        )),
    }
}

/// A page of recipients.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecipientPageJson {
    pub items: Vec<RecipientJson>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<Uuid>,
}

/// A page of providers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderPageJson {
    pub items: Vec<ProviderJson>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<Uuid>,
}

/// Surplus held in memory, oldest posted first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SurplusItemsJson {
    pub items: Vec<SurplusJson>,
}

/// `GET /admin/status`: an operator's view of the edge.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusJson {
    pub edge_id: String,
    /// The `pahlawan` version serving.
    pub version: String,
    /// The store can commit (as `/readyz`).
    pub ready: bool,
    #[schema(format = DateTime)]
    pub started_at: String,
    pub uptime_seconds: u64,
    /// The last outbox `seq` committed.
    pub committed_seq: u64,
    /// A hub is configured.
    pub hub_enabled: bool,
    pub hub_connected: bool,
    /// The hub's acknowledged high-water mark.
    pub acked_seq: u64,
    /// Committed events the hub has not acknowledged.
    pub outbox_backlog: u64,
    /// Seconds since the oldest unacknowledged event was committed.
    pub replication_lag_seconds: f64,
    /// When the hub last acknowledged events or welcomed a session.
    #[schema(format = DateTime)]
    pub last_sync_at: Option<String>,
    /// The lease epoch the hub granted this edge's cells.
    pub lease_epoch: u64,
    /// Unfinished surplus held in memory.
    pub live_surplus: u64,
    /// Surplus in the dead-letter queue.
    pub dlq_size: u64,
    /// Bytes the data directory's files take.
    pub data_dir_bytes: u64,
}

/// One owned cell.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CellJson {
    /// The S2 cell token.
    pub token: String,
    /// `none` (no hub: nothing to lease), `pending` (the hub has not
    /// granted an epoch yet), `held`, or `conflict` when the hub says
    /// another edge holds its lease (our events there are fenced).
    #[schema(value_type = CellLeaseName)]
    pub lease: String,
}

schema_type!(
    /// Who holds a cell's lease.
    CellLeaseName,
    "CellLease",
    string_enum("Whether this edge holds the cell's lease", ["none", "pending", "held", "conflict"])
);

/// `GET /admin/cells`: the cells this edge owns and the lease epoch it holds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CellsJson {
    /// The S2 level of the owned cells.
    pub level: u8,
    /// The epoch of the leases the hub granted (0: never connected).
    pub lease_epoch: u64,
    pub hub_connected: bool,
    pub cells: Vec<CellJson>,
}
