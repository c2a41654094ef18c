//! Domain types shared by edge, hub, CLI and firmware: food types, mass,
//! the surplus status, providers and recipients, and the limits on each.

#[cfg(feature = "alloc")]
use alloc::string::String;
#[cfg(feature = "alloc")]
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

#[cfg(feature = "alloc")]
use crate::geo::GeoPoint;
#[cfg(feature = "alloc")]
use crate::ids::SurplusId;
use crate::ids::{ProviderId, RecipientId};
use crate::time::Timestamp;

/// Named maxima for every user-supplied value (TigerBeetle style: limits on
/// everything, decided in one place).
pub struct Validation;

impl Validation {
    /// More than ten tonnes in one posting is a typo, not a surplus.
    pub const MAX_QUANTITY_KG: f64 = 10_000.0;
    /// A recipient's daily capacity above 1,000 t is a typo.
    pub const MAX_CAPACITY_KG_PER_DAY: f64 = 1_000_000.0;
    pub const MAX_NAME_CHARS: usize = 200;
    pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
    pub const MAX_PHONE_CHARS: usize = 32;
    pub const MAX_EMAIL_CHARS: usize = 254;
    /// Surplus expiring more than 14 days out is not surplus food.
    pub const MAX_EXPIRY_DAYS: i64 = 14;
}

/// The kinds of food the system routes. Wire order is fixed: append only.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FoodType {
    PreparedMeals,
    Bakery,
    Produce,
    Dairy,
    MeatFish,
    DryGoods,
    Frozen,
}

impl FoodType {
    pub const ALL: [FoodType; 7] = [
        FoodType::PreparedMeals,
        FoodType::Bakery,
        FoodType::Produce,
        FoodType::Dairy,
        FoodType::MeatFish,
        FoodType::DryGoods,
        FoodType::Frozen,
    ];

    /// The snake_case name used in JSON, SQL and configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            FoodType::PreparedMeals => "prepared_meals",
            FoodType::Bakery => "bakery",
            FoodType::Produce => "produce",
            FoodType::Dairy => "dairy",
            FoodType::MeatFish => "meat_fish",
            FoodType::DryGoods => "dry_goods",
            FoodType::Frozen => "frozen",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Not one of the food type names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown food type (expected one of prepared_meals, bakery, produce, dairy, meat_fish, dry_goods, frozen)"
)]
pub struct UnknownFoodType;

impl FromStr for FoodType {
    type Err = UnknownFoodType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FoodType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(UnknownFoodType)
    }
}

impl fmt::Display for FoodType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for FoodType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of food types as a bitmask: what a recipient accepts. Bits no
/// food type uses are dropped when decoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "u8", from = "u8")]
pub struct FoodTypeSet(u8);

impl From<u8> for FoodTypeSet {
    fn from(bits: u8) -> FoodTypeSet {
        FoodTypeSet::from_bits_truncate(bits)
    }
}

impl From<FoodTypeSet> for u8 {
    fn from(s: FoodTypeSet) -> u8 {
        s.0
    }
}

impl FoodTypeSet {
    pub const fn empty() -> FoodTypeSet {
        FoodTypeSet(0)
    }
    pub fn all() -> FoodTypeSet {
        FoodType::ALL.into_iter().collect()
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Rebuilds a set from stored bits, ignoring bits no food type uses.
    pub fn from_bits_truncate(bits: u8) -> FoodTypeSet {
        FoodTypeSet(bits & FoodTypeSet::all().0)
    }
    pub const fn contains(self, t: FoodType) -> bool {
        self.0 & t.bit() != 0
    }
    pub fn insert(&mut self, t: FoodType) {
        self.0 |= t.bit();
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = FoodType> {
        FoodType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl FromIterator<FoodType> for FoodTypeSet {
    fn from_iter<I: IntoIterator<Item = FoodType>>(iter: I) -> Self {
        let mut s = FoodTypeSet::empty();
        for t in iter {
            s.insert(t);
        }
        s
    }
}

impl fmt::Debug for FoodTypeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A mass in whole grams: integer, so impact totals add up exactly.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mass(u64);

impl Mass {
    pub const ZERO: Mass = Mass(0);

    pub const fn from_grams(g: u64) -> Mass {
        Mass(g)
    }
    pub const fn grams(self) -> u64 {
        self.0
    }
    /// Kilograms from a client, rounded to the gram. `None` for non-finite,
    /// negative or larger-than-`u64` input; range checks are the caller's.
    pub fn from_kg(kg: f64) -> Option<Mass> {
        let g = libm::round(kg * 1_000.0);
        (g.is_finite() && g >= 0.0 && g < u64::MAX as f64).then_some(Mass(g as u64))
    }
    pub fn kg(self) -> f64 {
        self.0 as f64 / 1_000.0
    }
    pub const fn saturating_sub(self, other: Mass) -> Mass {
        Mass(self.0.saturating_sub(other.0))
    }
    pub const fn saturating_add(self, other: Mass) -> Mass {
        Mass(self.0.saturating_add(other.0))
    }
}

impl fmt::Debug for Mass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}g", self.0)
    }
}

/// Where a surplus is in its life. `Delivered` and `Expired` are terminal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SurplusStatus {
    Available,
    Offered,
    Claimed,
    PickedUp,
    Delivered,
    Expired,
    DeadLettered,
}

impl SurplusStatus {
    pub const ALL: [SurplusStatus; 7] = [
        SurplusStatus::Available,
        SurplusStatus::Offered,
        SurplusStatus::Claimed,
        SurplusStatus::PickedUp,
        SurplusStatus::Delivered,
        SurplusStatus::Expired,
        SurplusStatus::DeadLettered,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SurplusStatus::Available => "available",
            SurplusStatus::Offered => "offered",
            SurplusStatus::Claimed => "claimed",
            SurplusStatus::PickedUp => "picked_up",
            SurplusStatus::Delivered => "delivered",
            SurplusStatus::Expired => "expired",
            SurplusStatus::DeadLettered => "dead_lettered",
        }
    }

    pub const fn is_terminal(self) -> bool {
        matches!(self, SurplusStatus::Delivered | SurplusStatus::Expired)
    }

    /// Nobody holds it yet: it can still be offered, claimed or expire.
    pub const fn is_unclaimed(self) -> bool {
        matches!(
            self,
            SurplusStatus::Available | SurplusStatus::Offered | SurplusStatus::DeadLettered
        )
    }
}

/// Not one of the status names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status (expected one of available, offered, claimed, picked_up, delivered, expired, dead_lettered)"
)]
pub struct UnknownStatus;

impl FromStr for SurplusStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SurplusStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(UnknownStatus)
    }
}

impl fmt::Display for SurplusStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SurplusStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "alloc")]
/// How to reach a provider or recipient. Personal data: never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub phone: String,
    pub email: String,
}

#[cfg(feature = "alloc")]
impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Contact(<redacted>)")
    }
}

#[cfg(feature = "alloc")]
/// Contact data as an edge sealed it: AES-256-GCM under a key id, bound to
/// the subject's id. Opaque to anyone without the edge's PII keys (the hub
/// stores it as is); empty once the subject is erased, or for a neighbour's
/// recipient, whose contact this edge never holds.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedContact(pub Vec<u8>);

#[cfg(feature = "alloc")]
impl SealedContact {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(feature = "alloc")]
impl fmt::Debug for SealedContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedContact({} bytes)", self.0.len())
    }
}

/// Whose personal data: a provider or a recipient (GDPR's data subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subject {
    Provider(ProviderId),
    Recipient(RecipientId),
}

impl Subject {
    /// The subject's id (sealed contacts are bound to it).
    pub fn id_bytes(&self) -> &[u8; 16] {
        match self {
            Subject::Provider(p) => p.as_bytes(),
            Subject::Recipient(r) => r.as_bytes(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Provider(_) => "provider",
            Subject::Recipient(_) => "recipient",
        }
    }
}

/// `provider/<uuid>` or `recipient/<uuid>`: how the audit log names it.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Provider(p) => write!(f, "provider/{p}"),
            Subject::Recipient(r) => write!(f, "recipient/{r}"),
        }
    }
}

#[cfg(feature = "alloc")]
/// A restaurant, hotel or grocery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    pub id: ProviderId,
    pub name: String,
    pub location: GeoPoint,
    pub contact: SealedContact,
}

#[cfg(feature = "alloc")]
/// An NGO, food bank or shelter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub id: RecipientId,
    pub name: String,
    pub location: GeoPoint,
    pub capacity_per_day: Mass,
    pub accepted_food_types: FoodTypeSet,
    /// The cell's general food bank: the last resort after the dead-letter
    /// queue gives up.
    pub is_fallback: bool,
    pub contact: SealedContact,
}

/// A pending offer of a surplus to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub recipient_id: RecipientId,
    /// The ACK deadline: unanswered by then, the surplus is rematched.
    pub expires_at: Timestamp,
    /// Made to the cell's fallback recipient after the dead-letter queue gave up.
    pub fallback: bool,
}

#[cfg(feature = "alloc")]
/// A surplus as readers see it: a snapshot of its committed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surplus {
    pub id: SurplusId,
    pub provider_id: ProviderId,
    pub location: GeoPoint,
    /// The S2 cell (at the owning edge's level) the surplus lies in.
    pub cell: u64,
    pub quantity: Mass,
    pub food_type: FoodType,
    pub expires_at: Timestamp,
    pub description: String,
    pub posted_at: Timestamp,
    pub status: SurplusStatus,
    /// Bumped by every change; a claim must carry the version it read.
    pub version: u64,
    pub claimed_by: Option<RecipientId>,
    pub delivered: Option<Mass>,
    pub offer: Option<Offer>,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn food_type_names_round_trip() {
        for t in FoodType::ALL {
            assert_eq!(t.as_str().parse::<FoodType>(), Ok(t));
        }
        assert!("pizza".parse::<FoodType>().is_err());
        assert!("Bakery".parse::<FoodType>().is_err());
    }

    #[test]
    fn food_type_set_membership() {
        let s: FoodTypeSet = [FoodType::Bakery, FoodType::Frozen].into_iter().collect();
        assert!(s.contains(FoodType::Bakery) && s.contains(FoodType::Frozen));
        assert!(!s.contains(FoodType::Dairy));
        assert_eq!(FoodTypeSet::from_bits_truncate(0xff), FoodTypeSet::all());
        let decoded: FoodTypeSet = postcard::from_bytes(&[0xff, 0x01]).expect("decodes");
        assert_eq!(
            decoded,
            FoodTypeSet::all(),
            "unused bits are dropped on the wire too"
        );
        assert_eq!(s.iter().count(), 2);
    }

    #[test]
    fn mass_from_kg_rounds_and_rejects_garbage() {
        assert_eq!(Mass::from_kg(12.3456), Some(Mass::from_grams(12_346)));
        assert_eq!(Mass::from_kg(f64::NAN), None);
        assert_eq!(Mass::from_kg(-1.0), None);
        assert_eq!(Mass::from_kg(1e300), None);
        assert_eq!(Mass::from_grams(2_500_000).kg(), 2_500.0);
    }

    #[test]
    fn status_names_round_trip() {
        for s in SurplusStatus::ALL {
            assert_eq!(s.as_str().parse::<SurplusStatus>(), Ok(s));
        }
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn contact_is_redacted_in_debug() {
        let c = Contact {
            phone: "+62 812 0000".into(),
            email: "a@b.id".into(),
        };
        let shown = alloc::format!("{c:?}");
        assert!(!shown.contains("812") && !shown.contains("a@b"));
    }
}
