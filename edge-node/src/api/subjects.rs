//! GDPR: a data subject's export (admins, or the subject itself) and its
//! erasure (admins). Both work for providers and recipients alike: the id
//! says which.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use sync_protocol::{ProviderId, RecipientId, Subject, Timestamp};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::dto::{
    OfferOutcomeName, ProviderJson, RecipientJson, RoleName, SubjectKindName, SurplusJson, rfc3339,
};
use super::error::{ApiError, AuthErrors, ErrorBody};
use super::extract::IdPath;
use super::registry::read_contact;
use super::state::AppState;

/// An offer made to the recipient.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedOffer {
    pub surplus_id: Uuid,
    #[schema(format = DateTime)]
    pub made_at: String,
    #[schema(value_type = OfferOutcomeName)]
    pub outcome: String,
    pub fallback: bool,
}

/// An audit record of something the subject did, or that was done to its data.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedAudit {
    #[schema(format = DateTime)]
    pub at: String,
    /// The token subject that acted; empty when the subject sees what
    /// another did.
    pub actor: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    pub action: String,
    pub resource: String,
    pub status: u16,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Everything this edge holds on one provider or recipient.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectExport {
    #[schema(value_type = SubjectKindName)]
    pub kind: String,
    pub id: Uuid,
    #[schema(format = DateTime)]
    pub exported_at: String,
    /// The profile, contact data included.
    pub provider: Option<ProviderJson>,
    pub recipient: Option<RecipientJson>,
    /// Surplus the provider posted, or the recipient claimed.
    pub surplus: Vec<SurplusJson>,
    /// Offers made to the recipient.
    pub offers: Vec<ExportedOffer>,
    pub audit: Vec<ExportedAudit>,
}

/// The outcome of an erasure.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    #[schema(value_type = SubjectKindName)]
    pub kind: String,
    pub id: Uuid,
    pub erased: bool,
}

/// Which subject an id names here, if any (erased subjects are gone).
async fn find(edge: &AppState, id: Uuid) -> Result<Option<Found>, ApiError> {
    if let Some((p, address)) = edge.reads.provider(ProviderId::from_uuid(id)).await? {
        return Ok(Some(Found::Provider(p, address)));
    }
    if let Some((r, cell)) = edge.reads.recipient(RecipientId::from_uuid(id)).await? {
        return Ok(Some(Found::Recipient(r, cell)));
    }
    Ok(None)
}

/// A subject's row, as read.
enum Found {
    Provider(sync_protocol::Provider, String),
    Recipient(sync_protocol::Recipient, u64),
}

impl Found {
    fn subject(&self) -> Subject {
        match self {
            Found::Provider(p, _) => Subject::Provider(p.id),
            Found::Recipient(r, _) => Subject::Recipient(r.id),
        }
    }
}

/// May this caller see this subject's data: an admin, or the subject itself.
fn require_self_or_admin(caller: &Caller, subject: &Subject) -> Result<(), ApiError> {
    match subject {
        Subject::Provider(p) => caller.require_provider(*p),
        Subject::Recipient(r) => caller.require_recipient(*r),
    }
}

/// Export everything held on a provider or recipient (GDPR access):
/// admins, or the subject itself. Reading it is audited.
#[utoipa::path(get, path = "/subjects/{id}/export", tag = "privacy", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Provider or recipient id")),
    responses(
        (status = 200, body = SubjectExport),
        (status = 404, description = "No such provider or recipient here (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The store, or the key that opens contact data, is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn export(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<Uuid>,
) -> Result<Json<SubjectExport>, ApiError> {
    // Refuse before looking: whether an id exists is not for strangers.
    if !caller.is_admin() && caller.principal.subject != Some(id) {
        return Err(ApiError::forbidden(
            "wrong_subject",
            "only the subject itself (or an admin) may export its data",
        ));
    }
    let Some(found) = find(&edge, id).await? else {
        return Err(ApiError::not_found("subject"));
    };
    let subject = found.subject();
    require_self_or_admin(&caller, &subject)?;
    let (sealed, provider, recipient) = match found {
        Found::Provider(p, address) => (p.contact.clone(), Some((p, address)), None),
        Found::Recipient(r, cell) => (r.contact.clone(), None, Some((r, cell))),
    };
    // The subject sees its own contact; an admin's read of it is audited by
    // `read_contact`; the export itself is audited below either way.
    let contact = if caller.is_admin() {
        read_contact(&edge, &caller, &sealed, &subject).await?
    } else {
        edge.reads.open_contact(&sealed, &subject).ok().flatten()
    };
    let rows = edge.reads.subject_rows(subject).await?;
    let resource = subject.to_string();
    edge.writes
        .audit(caller.actor().record("subject.export", resource, 200))
        .await?;
    Ok(Json(SubjectExport {
        kind: subject.kind().to_string(),
        id,
        exported_at: rfc3339(edge.now()),
        provider: provider.map(|(p, address)| ProviderJson::new(&p, address, contact.as_ref())),
        recipient: recipient.map(|(r, cell)| RecipientJson::new(&r, cell, contact.as_ref())),
        surplus: rows.surplus.iter().map(SurplusJson::from).collect(),
        offers: rows
            .offers
            .into_iter()
            .map(|o| ExportedOffer {
                surplus_id: *o.surplus_id.as_uuid(),
                made_at: rfc3339(Timestamp::from_unix_ms(o.made_at_ms)),
                outcome: o.outcome,
                fallback: o.fallback,
            })
            .collect(),
        audit: exported_audit(rows.audit, &id.hyphenated().to_string(), caller.is_admin()),
    }))
}

/// The audit records of a subject as its export shows them: the subject sees
/// what others did to its data, not who they are or where they were (their
/// personal data); admins (`full`) see all.
fn exported_audit(
    records: Vec<crate::store::export::AuditRow>,
    own: &str,
    full: bool,
) -> Vec<ExportedAudit> {
    records
        .into_iter()
        .map(|a| {
            let shown = full || a.actor == own;
            ExportedAudit {
                at: rfc3339(Timestamp::from_unix_ms(a.at_ms)),
                actor: if shown { a.actor } else { String::new() },
                role: a.role,
                action: a.action,
                resource: a.resource,
                status: a.status,
                ip: if shown { a.ip } else { None },
                user_agent: if shown { a.user_agent } else { None },
            }
        })
        .collect()
}

/// Erase a provider or recipient (GDPR): name and contact are removed here,
/// from the outbox and at the hub; its surplus, offers and delivered
/// kilograms stay, so impact totals hold. Admins only.
#[utoipa::path(post, path = "/subjects/{id}/erase", tag = "privacy", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Provider or recipient id")),
    responses(
        (status = 200, body = Erased),
        (status = 404, description = "Unknown here, already erased, or a neighbour's", body = ErrorBody),
        (status = 503, description = "The edge is saturated or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn erase(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<Uuid>,
) -> Result<(StatusCode, Json<Erased>), ApiError> {
    caller.require_admin()?;
    let Some(subject) = find(&edge, id).await?.map(|f| f.subject()) else {
        return Err(ApiError::not_found("subject"));
    };
    if !edge.writes.erase(subject, Some(caller.actor())).await? {
        return Err(ApiError::not_found("subject"));
    }
    Ok((
        StatusCode::OK,
        Json(Erased {
            kind: subject.kind().to_string(),
            id,
            erased: true,
        }),
    ))
}
