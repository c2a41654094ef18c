//! Who is calling the edge: RS256 bearer tokens verified by the shared
//! [`jwt_auth`] crate (RFC 8725 refusals, injected clock, cache of verified
//! tokens), turned into the edge's [`Principal`] — a provider, a recipient
//! (`ngo`) or an admin.

pub mod keys;

use sync_protocol::{ProviderId, RecipientId, Timestamp};
use uuid::Uuid;

pub use jwt_auth::{AuthError, Claims, Keyring, MAX_TOKEN_BYTES, VerifierConfig, valid_kid};

/// The edge's verifier: tokens for the edge's audience, made into its principals.
pub type Verifier = jwt_auth::Verifier<Principal>;

/// What a principal may act as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A restaurant, hotel or grocery: `sub` is its provider id.
    Provider,
    /// An NGO, food bank or shelter: `sub` is its recipient id.
    Ngo,
    /// An operator.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Ngo => "ngo",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Role, AuthError> {
        match s {
            "provider" => Ok(Role::Provider),
            "ngo" => Ok(Role::Ngo),
            "admin" => Ok(Role::Admin),
            _ => Err(AuthError::InvalidClaims),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject: a provider or recipient id, or an admin's name.
    pub sub: String,
    pub role: Role,
    /// The provider or recipient the subject acts for (not for admins).
    pub subject: Option<Uuid>,
    pub expires_at: Timestamp,
}

impl jwt_auth::FromClaims for Principal {
    fn from_claims(c: Claims) -> Result<Principal, AuthError> {
        let role: Role = c.role.parse()?;
        let subject = match role {
            Role::Admin => None,
            Role::Provider | Role::Ngo => {
                Some(Uuid::try_parse(&c.sub).map_err(|_| AuthError::InvalidClaims)?)
            }
        };
        Ok(Principal {
            // One spelling per subject (rate-limit buckets and audit rows are
            // keyed by it): a provider's or recipient's id, hyphenated.
            sub: subject.map_or(c.sub, |u| u.hyphenated().to_string()),
            role,
            subject,
            expires_at: c.expires_at,
        })
    }

    fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The provider this principal acts for, if it is one.
    pub fn provider(&self) -> Option<ProviderId> {
        (self.role == Role::Provider)
            .then_some(self.subject.map(ProviderId::from_uuid))
            .flatten()
    }

    /// The recipient this principal acts for, if it is one.
    pub fn recipient(&self) -> Option<RecipientId> {
        (self.role == Role::Ngo)
            .then_some(self.subject.map(RecipientId::from_uuid))
            .flatten()
    }
}

#[cfg(test)]
mod tests;
