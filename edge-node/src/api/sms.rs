//! Replies to offers by SMS or WhatsApp. The gateway POSTs every message it
//! receives here (a form: `From`, `To`, `Body`, …) signed with
//! `X-Twilio-Signature`; a reply `YA n` accepts offer `n` (the outbox number
//! the offer's message named) and `TIDAK n` declines it — if it comes from a
//! number registered as a channel of the recipient the offer was made to.
//! The answer is TwiML: the gateway sends its `<Message>` back.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sync_protocol::{Event, RecipientId, SurplusId};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::state::AppState;
use crate::commands::{Actor, ChannelKind, SurplusAction};
use crate::twilio::{Reply, parse_reply, verify};

/// The path the gateway posts replies to, under `/api/v1`.
pub const INBOUND_PATH: &str = "/notify/sms/inbound";

/// What the gateway posts (Twilio's incoming-message parameters; others
/// are taken and signed over too). The document's description of the form:
/// the handler reads the raw pairs, since the signature covers them all.
#[derive(Debug, ToSchema)]
#[allow(non_snake_case, dead_code)]
pub struct InboundMessage {
    /// The sender (`+62…`, or `whatsapp:+62…`).
    pub From: String,
    pub To: Option<String>,
    /// The message: `YA 123` or `TIDAK 123`.
    pub Body: String,
}

/// A message received by the SMS/WhatsApp gateway (its webhook; signed with
/// `X-Twilio-Signature`, so no bearer token).
#[utoipa::path(post, path = "/notify/sms/inbound", tag = "notifications",
    request_body(content = InboundMessage, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "TwiML: the answer the gateway sends back", content_type = "text/xml", body = String),
        (status = 403, description = "`bad_signature`: not signed with the gateway's token", body = ErrorBody),
        (status = 404, description = "This edge has no gateway ([notify.sms])", body = ErrorBody),
    ))]
pub async fn inbound(State(edge): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(g) = edge.config.notify.sms.as_ref() else {
        return ApiError::not_found("SMS gateway on this edge").into_response();
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let url = g
        .inbound_url
        .clone()
        .unwrap_or_else(|| format!("{}/api/v1{INBOUND_PATH}", edge.config.public_base_url()));
    let signed = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| verify(&g.auth_token.0, &url, &params, sig));
    if !signed {
        return ApiError::forbidden(
            "bad_signature",
            "the request is not signed with the gateway's token",
        )
        .into_response();
    }
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let from = field("From");
    let phone = from.strip_prefix("whatsapp:").unwrap_or(from);
    let text = match parse_reply(field("Body")) {
        None => "Balas YA <nomor> untuk menerima atau TIDAK <nomor> untuk menolak.".to_string(),
        Some(reply) => match answer(&edge, phone, reply).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(error = %e.message, "an SMS reply could not be applied");
                "Maaf, coba lagi sebentar lagi.".to_string()
            }
        },
    };
    twiml(&text)
}

/// Applies a reply from `phone`; the text to send back.
async fn answer(edge: &AppState, phone: &str, reply: Reply) -> Result<String, ApiError> {
    let (n, accept) = match reply {
        Reply::Accept(n) => (n, true),
        Reply::Decline(n) => (n, false),
    };
    let unknown = format!("Tawaran {n} tidak dikenal untuk nomor ini.");
    let Some((surplus_id, recipient_id)) = offer_numbered(edge, n).await? else {
        return Ok(unknown);
    };
    if !is_channel_of(edge, recipient_id, phone).await? {
        return Ok(unknown);
    }
    let action = if accept {
        SurplusAction::Accept { recipient_id }
    } else {
        SurplusAction::Decline { recipient_id }
    };
    let actor = Actor {
        sub: recipient_id.to_string(),
        role: "ngo".into(),
        ip: None,
        user_agent: Some("sms-reply".into()),
    };
    let acted = edge
        .writes
        .act(surplus_id, action, None, Some(actor))
        .await?;
    Ok(match (acted, accept) {
        (Ok(_), true) => {
            format!("Terima kasih! Tawaran {n} diterima. Silakan ambil sebelum batas waktunya.")
        }
        (Ok(_), false) => format!("Tawaran {n} ditolak. Terima kasih."),
        (Err(_), _) => format!("Tawaran {n} sudah tidak berlaku."),
    })
}

/// The offer outbox event `n` made: (surplus, recipient).
async fn offer_numbered(
    edge: &AppState,
    n: u64,
) -> Result<Option<(SurplusId, RecipientId)>, ApiError> {
    let events = edge.reads.outbox_after(n - 1, 1).await?;
    Ok(events
        .into_iter()
        .find(|e| e.seq == n)
        .and_then(|e| match e.event {
            Event::OfferMade {
                surplus_id,
                recipient_id,
                ..
            } => Some((surplus_id, recipient_id)),
            _ => None,
        }))
}

/// Whether `phone` is one of the recipient's SMS or WhatsApp channels.
async fn is_channel_of(
    edge: &AppState,
    recipient: RecipientId,
    phone: &str,
) -> Result<bool, ApiError> {
    for row in edge.reads.channels(recipient).await? {
        let phone_kind = matches!(
            ChannelKind::parse(&row.kind),
            Some(ChannelKind::Sms | ChannelKind::Whatsapp)
        );
        if phone_kind
            && edge
                .reads
                .open_channel(&row)
                .is_ok_and(|t| t.phone == phone)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `<Response><Message>text</Message></Response>`.
fn twiml(text: &str) -> Response {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{escaped}</Message></Response>"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        xml,
    )
        .into_response()
}
