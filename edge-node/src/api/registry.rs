//! Providers and recipients: register (admins) and read (admins, or the
//! subject itself — contact data only for admins).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sync_protocol::{Contact, ProviderId, RecipientId, SealedContact, Subject};

use super::auth::Caller;
use super::dto::{
    NewProviderRequest, NewRecipientRequest, ProviderCardJson, ProviderJson, RecipientJson,
};
use super::error::{ApiError, AuthErrors, BodyErrors, ErrorBody, MisdirectedError};
use super::extract::{ApiJson, IdPath};
use super::state::AppState;

/// Register a provider (restaurant, hotel, grocery). Admins only.
#[utoipa::path(post, path = "/providers", tag = "registry", security(("bearer" = [])),
    request_body = NewProviderRequest,
    responses(
        (status = 201, description = "Registered", body = ProviderJson, links(
            ("GetProvider" = (operation_id = "get_provider",
                parameters(("id" = "$response.body#/id")))),
            ("PostSurplus" = (operation_id = "post_surplus",
                description = "Post surplus as this provider, where it stands",
                request_body = json!({"provider_id": "$response.body#/id",
                    "lat": "$response.body#/lat", "lon": "$response.body#/lon"}))),
            ("ExportSubject" = (operation_id = "export",
                parameters(("id" = "$response.body#/id")))),
            ("EraseSubject" = (operation_id = "erase",
                parameters(("id" = "$response.body#/id")))),
        )),
        (status = 422, description = "A field breaks the schema", body = ErrorBody),
        (status = 503, description = "The edge is saturated, its registry full, or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        BodyErrors, MisdirectedError, AuthErrors,
    ))]
pub async fn post_provider(
    State(edge): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewProviderRequest>,
) -> Result<(StatusCode, Json<ProviderJson>), ApiError> {
    caller.require_admin()?;
    let new = req.validate()?;
    let contact = new.contact.clone();
    let address = new.address.clone();
    let provider = edge
        .writes
        .register_provider(new, Some(caller.actor()))
        .await??;
    Ok((
        StatusCode::CREATED,
        Json(ProviderJson::new(&provider, address, Some(&contact))),
    ))
}

/// Read a provider: admins, or the provider itself (without contact data).
#[utoipa::path(get, path = "/providers/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Provider id")),
    responses(
        (status = 200, body = ProviderJson),
        (status = 404, description = "No such provider (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The store, or the key that opens contact data, is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn get_provider(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<ProviderId>,
) -> Result<Json<ProviderJson>, ApiError> {
    caller.require_provider(id)?;
    let (provider, address) = edge
        .reads
        .provider(id)
        .await?
        .ok_or_else(|| ApiError::not_found("provider"))?;
    let subject = Subject::Provider(id);
    let contact = read_contact(&edge, &caller, &provider.contact, &subject).await?;
    Ok(Json(ProviderJson::new(
        &provider,
        address,
        contact.as_ref(),
    )))
}

/// What any authenticated caller may see of a provider — name, address and
/// place, no contact data: a kiosk shows it with each offer.
#[utoipa::path(get, path = "/providers/{id}/card", tag = "registry", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Provider id")),
    responses(
        (status = 200, body = ProviderCardJson),
        (status = 404, description = "No such provider (or not a UUID, or erased)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn provider_card(
    State(edge): State<AppState>,
    _caller: Caller,
    IdPath(id): IdPath<ProviderId>,
) -> Result<Json<ProviderCardJson>, ApiError> {
    let (provider, address) = edge
        .reads
        .provider(id)
        .await?
        .ok_or_else(|| ApiError::not_found("provider"))?;
    Ok(Json(ProviderCardJson::new(&provider, address)))
}

/// Register a recipient (NGO, food bank, shelter). Admins only.
#[utoipa::path(post, path = "/recipients", tag = "registry", security(("bearer" = [])),
    request_body = NewRecipientRequest,
    responses(
        (status = 201, description = "Registered", body = RecipientJson, links(
            ("GetRecipient" = (operation_id = "get_recipient",
                parameters(("id" = "$response.body#/id")))),
            ("PendingOffers" = (operation_id = "pending",
                parameters(("id" = "$response.body#/id")))),
            ("ExportSubject" = (operation_id = "export",
                parameters(("id" = "$response.body#/id")))),
            ("EraseSubject" = (operation_id = "erase",
                parameters(("id" = "$response.body#/id")))),
        )),
        (status = 422, description = "A field breaks the schema", body = ErrorBody),
        (status = 503, description = "The edge is saturated, its registry full, or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        BodyErrors, MisdirectedError, AuthErrors,
    ))]
pub async fn post_recipient(
    State(edge): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewRecipientRequest>,
) -> Result<(StatusCode, Json<RecipientJson>), ApiError> {
    caller.require_admin()?;
    let new = req.validate()?;
    let cell = edge.writes.owned_cell(&new.location)?;
    let contact = new.contact.clone();
    let recipient = edge
        .writes
        .register_recipient(new, Some(caller.actor()))
        .await??;
    Ok((
        StatusCode::CREATED,
        Json(RecipientJson::new(&recipient, cell, Some(&contact))),
    ))
}

/// Read a recipient: admins, or the recipient itself (without contact data).
#[utoipa::path(get, path = "/recipients/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Recipient id")),
    responses(
        (status = 200, body = RecipientJson),
        (status = 404, description = "No such recipient (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The store, or the key that opens contact data, is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn get_recipient(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<RecipientId>,
) -> Result<Json<RecipientJson>, ApiError> {
    caller.require_recipient(id)?;
    let (r, cell) = edge
        .reads
        .recipient(id)
        .await?
        .ok_or_else(|| ApiError::not_found("recipient"))?;
    let subject = Subject::Recipient(id);
    let contact = read_contact(&edge, &caller, &r.contact, &subject).await?;
    Ok(Json(RecipientJson::new(&r, cell, contact.as_ref())))
}

/// An admin's read of a subject's contact: opened, and audited before it is
/// shown. Others see none.
pub(super) async fn read_contact(
    edge: &AppState,
    caller: &Caller,
    sealed: &SealedContact,
    subject: &Subject,
) -> Result<Option<Contact>, ApiError> {
    if !caller.is_admin() || sealed.is_empty() {
        return Ok(None);
    }
    let contact = edge.reads.open_contact(sealed, subject).map_err(|e| {
        tracing::error!(error = %e, "a sealed contact cannot be opened");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "pii_unavailable",
            "the contact data cannot be opened with the configured keys",
        )
    })?;
    edge.writes
        .audit(
            caller
                .actor()
                .record("contact.read", subject.to_string(), 200),
        )
        .await?;
    Ok(contact)
}
