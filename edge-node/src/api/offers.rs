//! Offers: accept, decline, the recipient's pending list, and its live stream
//! (Server-Sent Events: the pending offers first, then each new one).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use sync_protocol::{RecipientId, SurplusId};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::auth::Caller;
use super::dto::{OfferListJson, RecipientRequest, SurplusJson, recipient_id};
use super::error::{ActionErrors, ApiError, AuthErrors, BodyErrors, ErrorBody};
use super::extract::{ApiJson, IdPath, IdempotencyKeyHeader, Traceparent};
use super::state::AppState;
use super::surplus::act;
use crate::commands::SurplusAction;
use sync_protocol::Surplus;

/// Accept the offer of a surplus: it becomes claimed by the recipient.
#[utoipa::path(post, path = "/offers/{surplus_id}/accept", tag = "offers", security(("bearer" = [])),
    params(("surplus_id" = uuid::Uuid, Path, description = "Surplus id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "1 to 255 visible ASCII characters. Repeating an action with the same key answers with the surplus as it stands \
            and does not apply it again (header Idempotent-Replayed: true); the same key with another action is refused (422 `idempotency_key_reused`)")),
    request_body = RecipientRequest,
    responses(
        (status = 200, description = "Claimed", body = SurplusJson, headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key")), links(
            ("PickUpSurplus" = (operation_id = "pickup",
                parameters(("id" = "$response.body#/id")),
                request_body = json!({"recipient_id": "$response.body#/claimed_by"}))),
        )),
        (status = 422, description = "A field breaks the schema, or `unknown_recipient`, `idempotency_key_reused`", body = ErrorBody),
        BodyErrors, ActionErrors, AuthErrors,
    ))]
pub async fn accept(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SurplusId>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    trace: Traceparent,
    ApiJson(req): ApiJson<RecipientRequest>,
) -> Result<Response, ApiError> {
    let action = SurplusAction::Accept {
        recipient_id: recipient_id(req.recipient_id),
    };
    act(&edge, &caller, id, action, key, trace).await
}

/// Decline the offer: the surplus is rematched at once, excluding this recipient.
#[utoipa::path(post, path = "/offers/{surplus_id}/decline", tag = "offers", security(("bearer" = [])),
    params(("surplus_id" = uuid::Uuid, Path, description = "Surplus id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "1 to 255 visible ASCII characters. Repeating an action with the same key answers with the surplus as it stands \
            and does not apply it again (header Idempotent-Replayed: true); the same key with another action is refused (422 `idempotency_key_reused`)")),
    request_body = RecipientRequest,
    responses(
        (status = 200, description = "Declined; the surplus as rematched", body = SurplusJson, headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key")), links(
            ("AcceptNextOffer" = (operation_id = "accept",
                parameters(("surplus_id" = "$response.body#/id")),
                request_body = json!({"recipient_id": "$response.body#/offer/recipient_id"}))),
        )),
        (status = 422, description = "A field breaks the schema, or `unknown_recipient`, `idempotency_key_reused`", body = ErrorBody),
        BodyErrors, ActionErrors, AuthErrors,
    ))]
pub async fn decline(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SurplusId>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    trace: Traceparent,
    ApiJson(req): ApiJson<RecipientRequest>,
) -> Result<Response, ApiError> {
    let recipient = recipient_id(req.recipient_id);
    let action = SurplusAction::Decline {
        recipient_id: recipient,
    };
    // A decline rematches: it takes a matching slot like a post (after the
    // caller is known to act for that recipient).
    caller.require_recipient(recipient)?;
    let _slot = edge.matching_slot().await?;
    act(&edge, &caller, id, action, key, trace).await
}

async fn known_recipient(edge: &AppState, id: RecipientId) -> Result<(), ApiError> {
    match edge.reads.recipient(id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("recipient")),
    }
}

/// The offers waiting on this recipient's answer.
#[utoipa::path(get, path = "/recipients/{id}/offers", tag = "offers", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Recipient id")),
    responses(
        (status = 200, body = OfferListJson),
        (status = 404, description = "No such recipient (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn pending(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<RecipientId>,
) -> Result<Json<OfferListJson>, ApiError> {
    caller.require_recipient(id)?;
    known_recipient(&edge, id).await?;
    let items = edge
        .reads
        .pending_offers(&id)
        .iter()
        .map(SurplusJson::from)
        .collect();
    Ok(Json(OfferListJson { items }))
}

/// Open offer streams one subject may hold at once (a kiosk or two, a
/// phone): one subject cannot take every slot.
pub const MAX_STREAMS_PER_SUBJECT: usize = 4;

/// Counts open streams so their number stays under `http.max_streams`, and
/// each subject's under [`MAX_STREAMS_PER_SUBJECT`].
#[derive(Debug, Default)]
pub struct StreamSlots {
    total: AtomicUsize,
    per_subject: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
}

struct SlotGuard(Arc<StreamSlots>, String);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        (self.0).total.fetch_sub(1, Ordering::Relaxed);
        let mut per = self.0.per_subject.lock();
        if let Some(n) = per.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.1);
            }
        }
    }
}

impl SlotGuard {
    /// A stream slot for `sub`: 429 when the subject holds
    /// [`MAX_STREAMS_PER_SUBJECT`] already, 503 when `max` are open.
    fn take(slots: Arc<StreamSlots>, sub: String, max: usize) -> Result<SlotGuard, ApiError> {
        {
            let mut per = slots.per_subject.lock();
            let mine = per.entry(sub.clone()).or_default();
            if *mine >= MAX_STREAMS_PER_SUBJECT {
                if *mine == 0 {
                    per.remove(&sub);
                }
                return Err(ApiError {
                    retry_after_secs: Some(5),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_streams_for_subject",
                        "this subject already holds the most open offer streams allowed",
                    )
                });
            }
            if slots.total.fetch_add(1, Ordering::Relaxed) >= max {
                slots.total.fetch_sub(1, Ordering::Relaxed);
                if *mine == 0 {
                    per.remove(&sub);
                }
                return Err(ApiError {
                    retry_after_secs: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too_many_streams",
                        "too many open offer streams",
                    )
                });
            }
            *mine += 1;
        }
        Ok(SlotGuard(slots, sub))
    }
}

fn offer_event(v: &Surplus) -> Event {
    Event::default()
        .event("offer")
        .id(v.id.to_string())
        .json_data(SurplusJson::from(v))
        .unwrap_or_else(|_| Event::default().event("error"))
}

/// Live offers for a recipient as Server-Sent Events: `offer` events (a
/// surplus, as JSON) — first those pending now, then each new one within
/// milliseconds of its commit. A client too slow to keep up gets a `resync`
/// event and should re-read `GET /recipients/{id}/offers`.
#[utoipa::path(get, path = "/recipients/{id}/offers/stream", tag = "offers", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Recipient id")),
    responses(
        (status = 200, description = "text/event-stream of `offer` events", content_type = "text/event-stream", body = SurplusJson),
        (status = 404, description = "No such recipient (or not a UUID)", body = ErrorBody),
        (status = 503, description = "Too many open streams on this edge (`Retry-After`), or the store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn stream_offers(
    State(edge): State<AppState>,
    caller: Caller,
    axum::Extension(slots): axum::Extension<Arc<StreamSlots>>,
    IdPath(id): IdPath<RecipientId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require_recipient(id)?;
    known_recipient(&edge, id).await?;
    let sub = caller.principal.sub.clone();
    let guard = SlotGuard::take(slots, sub, edge.config.http.max_streams)?;
    // The stream lives no longer than the token that opened it: the client
    // reconnects with a fresh one.
    let token_left = (caller.principal.expires_at - edge.now()).as_ms().max(0) as u64;
    let token_expired = tokio::time::sleep(Duration::from_millis(token_left));
    // Subscribe before reading the snapshot, so no offer falls between them.
    let live = BroadcastStream::new(edge.reads.subscribe_offers());
    let snapshot: Vec<_> = edge
        .reads
        .pending_offers(&id)
        .iter()
        .map(offer_event)
        .collect();
    let live = live.filter_map(move |msg| {
        let _hold = &guard;
        let out = match msg {
            Ok(n) if n.recipient_id == id => Some(offer_event(&n.surplus)),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(_)) => {
                Some(Event::default().event("resync").data(""))
            }
        };
        futures::future::ready(out)
    });
    let shutdown = edge.shutdown_signal();
    let end = async move {
        tokio::select! {
            () = shutdown => {}
            () = token_expired => {}
        }
    };
    let events = stream::iter(snapshot).chain(live).take_until(end).map(Ok);
    let keepalive = Duration::from_secs(edge.config.http.sse_keepalive_secs.max(1));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keepalive)))
}
