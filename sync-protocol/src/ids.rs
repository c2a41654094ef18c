//! Typed identifiers: UUID v7 for entities (time-ordered, so SQLite's B-tree
//! appends), and a short validated name for an edge.

#[cfg(feature = "alloc")]
use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub const fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            pub const fn from_bytes(b: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(b))
            }
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A posted surplus.
    SurplusId
);
uuid_id!(
    /// A restaurant, hotel or grocery that posts surplus.
    ProviderId
);
uuid_id!(
    /// An NGO, food bank or shelter that receives offers.
    RecipientId
);
uuid_id!(
    /// A paired embedded kiosk: the public half of its device credential
    /// (the other half is its link key, which never travels).
    DeviceId
);

/// The longest edge name accepted.
pub const EDGE_ID_MAX_LEN: usize = 64;

#[cfg(feature = "alloc")]
/// An edge node's name, e.g. `jakarta-1`: 1–64 characters of `a-z 0-9 - _ .`,
/// starting with a letter or digit. It is also the common name in the edge's
/// certificate, so it must be safe in file names and SQL.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EdgeId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeIdError {
    #[error("edge id must be 1 to {EDGE_ID_MAX_LEN} characters")]
    Length,
    #[error(
        "edge id may contain only a-z, 0-9, '-', '_' and '.', and must start with a letter or digit"
    )]
    Charset,
}

#[cfg(feature = "alloc")]
impl EdgeId {
    pub fn new(s: &str) -> Result<EdgeId, EdgeIdError> {
        if s.is_empty() || s.len() > EDGE_ID_MAX_LEN {
            return Err(EdgeIdError::Length);
        }
        let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c);
        let first_ok = s.as_bytes()[0].is_ascii_alphanumeric();
        if !first_ok || !s.bytes().all(ok_char) {
            return Err(EdgeIdError::Charset);
        }
        Ok(EdgeId(String::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "alloc")]
impl<'de> Deserialize<'de> for EdgeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EdgeId::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "alloc")]
impl FromStr for EdgeId {
    type Err = EdgeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EdgeId::new(s)
    }
}

#[cfg(feature = "alloc")]
impl fmt::Display for EdgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "alloc")]
impl fmt::Debug for EdgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EdgeId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "alloc")]
    #[test]
    fn edge_ids_are_validated() {
        for ok in ["jakarta-1", "a", "edge_2.bandung"] {
            assert!(EdgeId::new(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        let table: [(&str, EdgeIdError); 6] = [
            ("", EdgeIdError::Length),
            (&long, EdgeIdError::Length),
            ("-lead", EdgeIdError::Charset),
            ("Jakarta", EdgeIdError::Charset),
            ("../etc", EdgeIdError::Charset),
            ("a'; drop", EdgeIdError::Charset),
        ];
        for (input, err) in table {
            assert_eq!(EdgeId::new(input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn uuid_ids_round_trip_through_text() {
        let id = SurplusId::from_bytes([7; 16]);
        let parsed: SurplusId = id.to_string().parse().expect("parses");
        assert_eq!(parsed, id);
        assert!("not-a-uuid".parse::<SurplusId>().is_err());
    }
}
