//! Surplus: post, read, list near a point, claim, pick up, deliver.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sync_protocol::{GeoPoint, SurplusId, SurplusStatus};

use super::auth::Caller;
use super::dto::{
    ClaimRequest, DeliverRequest, NearQuery, NewSurplusRequest, RecipientRequest, SurplusJson,
    SurplusListJson, SurplusNearJson, recipient_id,
};
use super::error::{ActionErrors, ApiError, AuthErrors, BodyErrors, ErrorBody, MisdirectedError};
use super::extract::{ApiJson, ApiQuery, IdPath, IdempotencyKeyHeader, Traceparent};
use super::state::AppState;
use crate::commands::SurplusAction;

/// Post surplus food. It is matched at once: the reply carries the offer.
#[utoipa::path(post, path = "/surplus", tag = "surplus", security(("bearer" = [])),
    request_body = NewSurplusRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "1 to 255 visible ASCII characters. Retrying with the same key returns the same surplus, never a duplicate; \
            the same key with another body is refused (422 `idempotency_key_reused`)")),
    responses(
        (status = 201, description = "Posted (or replayed: header Idempotent-Replayed: true)", body = SurplusJson,
            headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key")),
            links(
                ("GetSurplus" = (operation_id = "get_surplus",
                    parameters(("id" = "$response.body#/id")))),
                ("AcceptOffer" = (operation_id = "accept",
                    parameters(("surplus_id" = "$response.body#/id")),
                    request_body = json!({"recipient_id": "$response.body#/offer/recipient_id"}))),
                ("DeclineOffer" = (operation_id = "decline",
                    parameters(("surplus_id" = "$response.body#/id")),
                    request_body = json!({"recipient_id": "$response.body#/offer/recipient_id"}))),
                ("ClaimSurplus" = (operation_id = "claim",
                    parameters(("id" = "$response.body#/id")),
                    request_body = json!({"recipient_id": "$response.body#/offer/recipient_id",
                        "version": "$response.body#/version"}))),
                ("PickUpSurplus" = (operation_id = "pickup",
                    parameters(("id" = "$response.body#/id")))),
                ("DeliverSurplus" = (operation_id = "deliver",
                    parameters(("id" = "$response.body#/id")))),
                ("OffersOfRecipient" = (operation_id = "pending",
                    parameters(("id" = "$response.body#/offer/recipient_id")))),
            )),
        (status = 422, description = "A field breaks the schema; or `unknown_provider`, `expiry_in_past`, \
            `invalid_expiry` (more than 14 days away), `idempotency_key_reused`", body = ErrorBody),
        (status = 503, description = "The edge is saturated (`Retry-After`) or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        BodyErrors, MisdirectedError, AuthErrors,
    ))]
pub async fn post_surplus(
    State(edge): State<AppState>,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    Traceparent(trace): Traceparent,
    ApiJson(req): ApiJson<NewSurplusRequest>,
) -> Result<Response, ApiError> {
    let new = req.validate(edge.now())?;
    caller.require_provider(new.provider_id)?;
    let _slot = edge.matching_slot().await?;
    let hints = edge.travel_hints(&new).await;
    let posted = edge
        .writes
        .post_surplus_with(new, key, trace, Some(caller.actor()), hints)
        .await??;
    let mut resp = (
        StatusCode::CREATED,
        Json(SurplusJson::from(&posted.surplus)),
    )
        .into_response();
    if posted.replayed {
        resp.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

/// Read a surplus.
#[utoipa::path(get, path = "/surplus/{id}", tag = "surplus", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Surplus id")),
    responses(
        (status = 200, body = SurplusJson),
        (status = 404, description = "No such surplus (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn get_surplus(
    State(edge): State<AppState>,
    _caller: Caller,
    IdPath(id): IdPath<SurplusId>,
) -> Result<Json<SurplusJson>, ApiError> {
    let v = edge
        .reads
        .surplus(id)
        .await?
        .ok_or_else(|| ApiError::not_found("surplus"))?;
    Ok(Json(SurplusJson::from(&v)))
}

/// Surplus near a point, nearest first: everything unfinished, and what
/// finished within the recent window (24 h by default).
#[utoipa::path(get, path = "/surplus", tag = "surplus", security(("bearer" = [])),
    params(NearQuery),
    responses(
        (status = 200, body = SurplusListJson),
        (status = 422, description = "A query parameter breaks the schema", body = ErrorBody),
        MisdirectedError, AuthErrors,
    ))]
pub async fn list_surplus(
    State(edge): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<NearQuery>,
) -> Result<Json<SurplusListJson>, ApiError> {
    let http = &edge.config.http;
    let point = GeoPoint::new(q.lat, q.lon)
        .map_err(|e| ApiError::invalid("invalid_coordinates", e.to_string()))?;
    edge.writes.owned_cell(&point)?;
    let radius_km = q.radius_km.unwrap_or(edge.config.matching.radius_km);
    if !(radius_km.is_finite() && radius_km > 0.0 && radius_km <= http.max_radius_km) {
        return Err(ApiError::invalid(
            "invalid_radius",
            format!(
                "radius_km must be more than 0 and at most {}",
                http.max_radius_km
            ),
        ));
    }
    let status = q
        .status
        .as_deref()
        .map(str::parse::<SurplusStatus>)
        .transpose()
        .map_err(|e| ApiError::invalid("invalid_status", e.to_string()))?;
    let limit = q.limit.unwrap_or(http.max_list_items);
    if limit == 0 || limit > http.max_list_items {
        return Err(ApiError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {}", http.max_list_items),
        ));
    }
    let items = edge
        .reads
        .surplus_near(&point, radius_km, status, limit)
        .iter()
        .map(|(v, d)| SurplusNearJson {
            surplus: SurplusJson::from(v),
            distance_km: *d,
        })
        .collect();
    Ok(Json(SurplusListJson { items }))
}

/// A recipient's action on a surplus: only as itself (or by an admin),
/// once per `Idempotency-Key`.
pub(super) async fn act(
    edge: &AppState,
    caller: &Caller,
    id: SurplusId,
    action: SurplusAction,
    key: Option<String>,
    trace: Traceparent,
) -> Result<Response, ApiError> {
    match action.recipient_id() {
        Some(r) => caller.require_recipient(r)?,
        None => caller.require_admin()?,
    }
    let started = std::time::Instant::now();
    let answered = edge
        .writes
        .act_keyed(id, action, key, trace.0, Some(caller.actor()))
        .await;
    if matches!(
        action,
        SurplusAction::Claim { .. } | SurplusAction::Accept { .. }
    ) {
        edge.metrics
            .claim_latency
            .observe(started.elapsed().as_secs_f64());
    }
    let acted = answered??;
    let mut resp = Json(SurplusJson::from(&acted.surplus)).into_response();
    if acted.replayed {
        resp.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

/// Claim a surplus directly with the version read: first commit wins. The
/// recipient claims only as itself.
#[utoipa::path(post, path = "/surplus/{id}/claim", tag = "surplus", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Surplus id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "1 to 255 visible ASCII characters. Repeating an action with the same key answers with the surplus as it stands \
            and does not apply it again (header Idempotent-Replayed: true); the same key with another action is refused (422 `idempotency_key_reused`)")),
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "Claimed", body = SurplusJson, headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key")), links(
            ("PickUpSurplus" = (operation_id = "pickup",
                parameters(("id" = "$response.body#/id")),
                request_body = json!({"recipient_id": "$response.body#/claimed_by"}))),
        )),
        (status = 422, description = "A field breaks the schema, or `unknown_recipient`, `idempotency_key_reused`", body = ErrorBody),
        BodyErrors, ActionErrors, AuthErrors,
    ))]
pub async fn claim(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SurplusId>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    trace: Traceparent,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Response, ApiError> {
    let action = SurplusAction::Claim {
        recipient_id: recipient_id(req.recipient_id),
        version: req.version,
    };
    act(&edge, &caller, id, action, key, trace).await
}

/// The claimant picked the food up.
#[utoipa::path(post, path = "/surplus/{id}/pickup", tag = "surplus", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Surplus id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "1 to 255 visible ASCII characters. Repeating an action with the same key answers with the surplus as it stands \
            and does not apply it again (header Idempotent-Replayed: true); the same key with another action is refused (422 `idempotency_key_reused`)")),
    request_body = RecipientRequest,
    responses(
        (status = 200, description = "Picked up", body = SurplusJson, headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key")), links(
            ("DeliverSurplus" = (operation_id = "deliver",
                parameters(("id" = "$response.body#/id")),
                request_body = json!({"recipient_id": "$response.body#/claimed_by",
                    "delivered_kg": "$response.body#/quantity_kg"}))),
        )),
        (status = 422, description = "A field breaks the schema, or `unknown_recipient`, `idempotency_key_reused`", body = ErrorBody),
        BodyErrors, ActionErrors, AuthErrors,
    ))]
pub async fn pickup(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SurplusId>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    trace: Traceparent,
    ApiJson(req): ApiJson<RecipientRequest>,
) -> Result<Response, ApiError> {
    let action = SurplusAction::PickUp {
        recipient_id: recipient_id(req.recipient_id),
    };
    act(&edge, &caller, id, action, key, trace).await
}

/// The claimant delivered the food; `delivered_kg` is the impact figure.
#[utoipa::path(post, path = "/surplus/{id}/deliver", tag = "surplus", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Surplus id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "1 to 255 visible ASCII characters. Repeating an action with the same key answers with the surplus as it stands \
            and does not apply it again (header Idempotent-Replayed: true); the same key with another action is refused (422 `idempotency_key_reused`)")),
    request_body = DeliverRequest,
    responses(
        (status = 200, description = "Delivered", body = SurplusJson, headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key"))),
        (status = 422, description = "A field breaks the schema, or `unknown_recipient`, `delivered_exceeds_quantity`, `idempotency_key_reused`", body = ErrorBody),
        BodyErrors, ActionErrors, AuthErrors,
    ))]
pub async fn deliver(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SurplusId>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    trace: Traceparent,
    ApiJson(req): ApiJson<DeliverRequest>,
) -> Result<Response, ApiError> {
    let action = SurplusAction::Deliver {
        recipient_id: recipient_id(req.recipient_id),
        delivered: req.delivered()?,
    };
    act(&edge, &caller, id, action, key, trace).await
}
