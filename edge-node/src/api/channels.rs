//! A recipient's notification channels: register a webhook (its signing
//! secret is shown once, in the answer), list them (never the secret),
//! remove one. Admins, or the recipient itself. Each change is audited.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sync_protocol::RecipientId;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::dto::{parse_hyphenated, rfc3339};
use super::error::{ApiError, AuthErrors, BodyErrors, ErrorBody};
use super::extract::{ApiJson, IdPath};
use super::state::AppState;
use crate::commands::{ChannelKind, ChannelTarget};
use crate::standard_webhooks;
use crate::store::writer::{ChannelAnswer, ChannelOp};

/// `POST /recipients/{id}/channels`: a webhook, or a phone number for the
/// SMS/WhatsApp gateway.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewChannelRequest {
    /// A POST of JSON to `url`, signed the Standard Webhooks way.
    Webhook {
        /// `https://…` (`http://` only on loopback, or where the edge
        /// allows it); no user name or password.
        #[schema(
            min_length = 1,
            max_length = 2048,
            pattern = r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.0\.0\.1|\[::1\]))(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
        )]
        url: String,
    },
    /// A text message through the edge's gateway; the recipient answers
    /// `YA n` or `TIDAK n`.
    Sms {
        /// E.164.
        #[schema(pattern = r"^\+[1-9][0-9]{6,14}$")]
        phone: String,
    },
    /// A WhatsApp message through the edge's gateway.
    Whatsapp {
        /// E.164.
        #[schema(pattern = r"^\+[1-9][0-9]{6,14}$")]
        phone: String,
    },
    /// A browser's push subscription, as `PushSubscription.toJSON()` gives
    /// it, made with the edge's key (`GET /notify/web-push`).
    WebPush {
        /// The push service's URL for this subscription (`https://…`).
        #[schema(
            min_length = 1,
            max_length = 2048,
            pattern = r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.0\.0\.1|\[::1\]))(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
        )]
        endpoint: String,
        keys: WebPushKeys,
        /// When the subscription expires (ms since the epoch), if the
        /// browser says: one already expired is refused (later, a push
        /// service's 404 or 410 ends the channel).
        #[serde(rename = "expirationTime", default)]
        #[schema(nullable)]
        expiration_time: Option<f64>,
    },
}

/// A push subscription's keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebPushKeys {
    /// The browser's P-256 public key, uncompressed (its first byte 4),
    /// base64url.
    #[schema(pattern = "^B[A-P][A-Za-z0-9_-]{85}={0,1}$")]
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    #[schema(pattern = "^[A-Za-z0-9_-]{22}(==){0,1}$")]
    pub auth: String,
}

/// A notification channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelJson {
    pub id: Uuid,
    pub recipient_id: Uuid,
    #[schema(pattern = "^(webhook|sms|whatsapp|web_push)$")]
    pub kind: String,
    /// A webhook's URL; a push subscription's service, its origin only
    /// (the rest of its endpoint is a capability); '' for a phone channel.
    pub url: String,
    /// A phone channel's number, all but its last 3 digits hidden ('' for
    /// a webhook).
    pub phone: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A channel just registered, with the secret that signs what it is sent:
/// shown this once, never again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewChannelJson {
    #[serde(flatten)]
    pub channel: ChannelJson,
    /// `whsec_…`: verify `webhook-signature` with it (any Standard Webhooks
    /// library does); '' for other kinds.
    pub secret: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelListJson {
    /// Oldest first.
    pub items: Vec<ChannelJson>,
}

/// Register a notification channel: every offer made to the recipient is
/// POSTed to it (JSON, `webhook-id`/`webhook-timestamp`/`webhook-signature`
/// headers), retried until the offer's ACK deadline. Admins, or the
/// recipient itself.
#[utoipa::path(post, path = "/recipients/{id}/channels", tag = "notifications", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Recipient id")),
    request_body = NewChannelRequest,
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = NewChannelJson),
        (status = 404, description = "No such recipient on this edge", body = ErrorBody),
        (status = 409, description = "`too_many_channels`: the recipient holds the most allowed", body = ErrorBody),
        (status = 422, description = "A field breaks the schema, or `invalid_url`, `invalid_phone`, `invalid_subscription`, `gateway_not_configured`, `web_push_disabled`", body = ErrorBody),
        (status = 503, description = "The edge is saturated or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        BodyErrors, AuthErrors,
    ))]
pub async fn add(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(recipient): IdPath<RecipientId>,
    ApiJson(req): ApiJson<NewChannelRequest>,
) -> Result<(StatusCode, Json<NewChannelJson>), ApiError> {
    caller.require_recipient(recipient)?;
    let notify = &edge.config.notify;
    let (kind, target) = match req {
        NewChannelRequest::Webhook { url } => {
            notify
                .check_url(&url)
                .map_err(|e| ApiError::invalid("invalid_url", format!("url: {e}")))?;
            let target = ChannelTarget {
                url,
                secret: standard_webhooks::new_secret(),
                ..ChannelTarget::default()
            };
            (ChannelKind::Webhook, target)
        }
        NewChannelRequest::WebPush {
            endpoint,
            keys,
            expiration_time,
        } => {
            if edge.web_push.is_none() {
                return Err(ApiError::invalid(
                    "web_push_disabled",
                    "this edge sends no Web Push ([notify.web_push] enabled = false)",
                ));
            }
            notify
                .check_url(&endpoint)
                .map_err(|e| ApiError::invalid("invalid_url", format!("endpoint: {e}")))?;
            crate::web_push::Subscription::parse(&keys.p256dh, &keys.auth)
                .map_err(|e| ApiError::invalid("invalid_subscription", format!("keys: {e}")))?;
            if let Some(at) = expiration_time
                && !(at.is_finite() && at > edge.now().unix_ms() as f64)
            {
                return Err(ApiError::invalid(
                    "invalid_subscription",
                    "expirationTime: the subscription has expired",
                ));
            }
            let target = ChannelTarget {
                url: endpoint,
                p256dh: keys.p256dh.trim_end_matches('=').to_string(),
                auth: keys.auth.trim_end_matches('=').to_string(),
                ..ChannelTarget::default()
            };
            (ChannelKind::WebPush, target)
        }
        NewChannelRequest::Sms { phone } | NewChannelRequest::Whatsapp { phone }
            if !crate::twilio::is_e164(&phone) =>
        {
            return Err(ApiError::invalid(
                "invalid_phone",
                "phone must be E.164 (+62…)",
            ));
        }
        NewChannelRequest::Sms { phone } => (ChannelKind::Sms, phone_target(notify, phone, false)?),
        NewChannelRequest::Whatsapp { phone } => {
            (ChannelKind::Whatsapp, phone_target(notify, phone, true)?)
        }
    };
    let id = Uuid::now_v7();
    let op = ChannelOp::Add {
        recipient,
        id,
        kind,
        target: target.clone(),
        max_per_recipient: notify.max_channels_per_recipient,
    };
    match edge.writes.channel(op, Some(caller.actor())).await? {
        ChannelAnswer::Added => {}
        ChannelAnswer::TooMany => {
            return Err(audited(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_channels",
                format!(
                    "the recipient holds {} channels, the most allowed: remove one first",
                    notify.max_channels_per_recipient
                ),
            )));
        }
        _ => return Err(audited(ApiError::not_found("recipient"))),
    }
    let channel = ChannelJson {
        id,
        recipient_id: *recipient.as_uuid(),
        kind: kind.as_str().into(),
        phone: masked(&target.phone),
        url: shown_url(kind.as_str(), &target.url),
        created_at: rfc3339(edge.now()),
    };
    Ok((
        StatusCode::CREATED,
        Json(NewChannelJson {
            channel,
            secret: target.secret,
        }),
    ))
}

/// The recipient's notification channels (without their secrets). Admins,
/// or the recipient itself.
#[utoipa::path(get, path = "/recipients/{id}/channels", tag = "notifications", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Recipient id")),
    responses(
        (status = 200, body = ChannelListJson),
        (status = 404, description = "No such recipient on this edge (or not a UUID)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn list(
    State(edge): State<AppState>,
    caller: Caller,
    IdPath(recipient): IdPath<RecipientId>,
) -> Result<Json<ChannelListJson>, ApiError> {
    caller.require_recipient(recipient)?;
    if edge.reads.recipient(recipient).await?.is_none() {
        return Err(ApiError::not_found("recipient"));
    }
    let mut items = Vec::new();
    for row in edge.reads.channels(recipient).await? {
        let target = match edge.reads.open_channel(&row) {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(channel = %row.id, error = %e, "a notification channel cannot be opened");
                ChannelTarget::default()
            }
        };
        items.push(ChannelJson {
            id: row.id,
            recipient_id: *recipient.as_uuid(),
            phone: masked(&target.phone),
            url: shown_url(&row.kind, &target.url),
            kind: row.kind,
            created_at: rfc3339(row.created_at),
        });
    }
    Ok(Json(ChannelListJson { items }))
}

/// `{id}` and `{channel_id}` of a channel's path, both UUIDs (anything
/// else is not found).
pub struct ChannelPath {
    recipient: RecipientId,
    channel: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for ChannelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((r, c)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("channel"))?;
        let recipient = parse_hyphenated(&r).map(RecipientId::from_uuid);
        let channel = parse_hyphenated(&c);
        match (recipient, channel) {
            (Some(recipient), Some(channel)) => Ok(ChannelPath { recipient, channel }),
            _ => Err(ApiError::not_found("channel (an id is not a UUID)")),
        }
    }
}

/// Remove a notification channel: nothing more is sent to it. Admins, or
/// the recipient itself.
#[utoipa::path(delete, path = "/recipients/{id}/channels/{channel_id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Recipient id"),
        ("channel_id" = uuid::Uuid, Path, description = "Channel id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such channel of this recipient", body = ErrorBody),
        (status = 503, description = "The edge is saturated or its store failing", body = ErrorBody),
        (status = 507, description = "The edge's disk is full: nothing was stored; retry later (`Retry-After`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn remove(
    State(edge): State<AppState>,
    caller: Caller,
    path: ChannelPath,
) -> Result<StatusCode, ApiError> {
    caller.require_recipient(path.recipient)?;
    let op = ChannelOp::Remove {
        recipient: path.recipient,
        id: path.channel,
    };
    match edge.writes.channel(op, Some(caller.actor())).await? {
        ChannelAnswer::Removed(true) => Ok(StatusCode::NO_CONTENT),
        _ => Err(audited(ApiError::not_found("channel of this recipient"))),
    }
}

/// A phone channel's target, if the edge has a gateway for it.
fn phone_target(
    notify: &crate::config::NotifyConfig,
    phone: String,
    whatsapp: bool,
) -> Result<ChannelTarget, ApiError> {
    let configured = notify
        .sms
        .as_ref()
        .is_some_and(|g| !whatsapp || g.whatsapp_from.is_some());
    if !configured {
        return Err(ApiError::invalid(
            "gateway_not_configured",
            "this edge has no SMS/WhatsApp gateway for this kind ([notify.sms])",
        ));
    }
    Ok(ChannelTarget {
        phone,
        ..ChannelTarget::default()
    })
}

/// What a listing shows of a channel's URL: a webhook's whole, a push
/// endpoint's origin (its path is the subscription's capability).
fn shown_url(kind: &str, url: &str) -> String {
    if kind == ChannelKind::WebPush.as_str() {
        crate::web_push::origin(url).unwrap_or_default()
    } else {
        url.to_string()
    }
}

/// `GET /notify/web-push`
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebPushKeyJson {
    /// The edge's VAPID public key (P-256, uncompressed, base64url): a
    /// page passes it as `applicationServerKey` to `pushManager.subscribe`.
    #[schema(pattern = "^[A-Za-z0-9_-]{87}$")]
    pub application_server_key: String,
}

/// The key push subscriptions are made for. Public: it is a public key.
#[utoipa::path(get, path = "/notify/web-push", tag = "notifications",
    responses(
        (status = 200, body = WebPushKeyJson),
        (status = 404, description = "`web_push_disabled`: this edge sends no Web Push", body = ErrorBody),
    ))]
pub async fn web_push_key(State(edge): State<AppState>) -> Result<Json<WebPushKeyJson>, ApiError> {
    match &edge.web_push {
        Some(v) => Ok(Json(WebPushKeyJson {
            application_server_key: v.public_key(),
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "web_push_disabled",
            "this edge sends no Web Push",
        )),
    }
}

/// `+62•••••••890`: enough to tell numbers apart, not to call one.
fn masked(phone: &str) -> String {
    if phone.len() <= 6 {
        return phone.chars().map(|_| '•').collect();
    }
    let (head, tail) = (&phone[..3], &phone[phone.len() - 3..]);
    format!("{head}{}{tail}", "•".repeat(phone.len() - 6))
}

/// The store wrote this refusal's audit record with the command.
fn audited(e: ApiError) -> ApiError {
    ApiError { audited: true, ..e }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    #[test]
    fn the_schema_states_the_url_rule_the_edge_applies() {
        let schema = serde_json::to_value(NewChannelRequest::schema()).unwrap_or_default();
        let text = schema.to_string();
        let quoted = serde_json::to_string(crate::config::WEBHOOK_URL_PATTERN).unwrap_or_default();
        assert!(text.contains(&format!("\"pattern\":{quoted}")), "{text}");
    }
}
