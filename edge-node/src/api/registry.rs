//! Providers and recipients: register and read.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sync_protocol::{ProviderId, RecipientId};

use super::dto::{NewProviderRequest, NewRecipientRequest, ProviderJson, RecipientJson};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, IdPath};
use crate::service::EdgeHandle;

/// Register a provider (restaurant, hotel, grocery).
#[utoipa::path(post, path = "/providers", tag = "registry",
    request_body = NewProviderRequest,
    responses(
        (status = 201, description = "Registered", body = ProviderJson),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 421, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn post_provider(
    State(edge): State<EdgeHandle>,
    ApiJson(req): ApiJson<NewProviderRequest>,
) -> Result<(StatusCode, Json<ProviderJson>), ApiError> {
    let provider = edge.register_provider(req.validate()?).await??;
    Ok((StatusCode::CREATED, Json(ProviderJson::from(&provider))))
}

/// Read a provider.
#[utoipa::path(get, path = "/providers/{id}", tag = "registry",
    params(("id" = uuid::Uuid, Path, description = "Provider id")),
    responses(
        (status = 200, body = ProviderJson),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_provider(
    State(edge): State<EdgeHandle>,
    IdPath(id): IdPath<ProviderId>,
) -> Result<Json<ProviderJson>, ApiError> {
    let provider = edge
        .provider(id)
        .await?
        .ok_or_else(|| ApiError::not_found("provider"))?;
    Ok(Json(ProviderJson::from(&provider)))
}

/// Register a recipient (NGO, food bank, shelter).
#[utoipa::path(post, path = "/recipients", tag = "registry",
    request_body = NewRecipientRequest,
    responses(
        (status = 201, description = "Registered", body = RecipientJson),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 421, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn post_recipient(
    State(edge): State<EdgeHandle>,
    ApiJson(req): ApiJson<NewRecipientRequest>,
) -> Result<(StatusCode, Json<RecipientJson>), ApiError> {
    let new = req.validate()?;
    let cell = edge.owned_cell(&new.location)?;
    let recipient = edge.register_recipient(new).await??;
    Ok((
        StatusCode::CREATED,
        Json(RecipientJson::new(&recipient, cell)),
    ))
}

/// Read a recipient.
#[utoipa::path(get, path = "/recipients/{id}", tag = "registry",
    params(("id" = uuid::Uuid, Path, description = "Recipient id")),
    responses(
        (status = 200, body = RecipientJson),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_recipient(
    State(edge): State<EdgeHandle>,
    IdPath(id): IdPath<RecipientId>,
) -> Result<Json<RecipientJson>, ApiError> {
    let (r, cell) = edge
        .recipient(id)
        .await?
        .ok_or_else(|| ApiError::not_found("recipient"))?;
    Ok(Json(RecipientJson::new(&r, cell)))
}
