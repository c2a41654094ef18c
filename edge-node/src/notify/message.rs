//! What a notification says: an offer to its recipient (the Standard
//! Webhooks payload shape: `type`, `timestamp`, `data`), and an alert to the
//! on-call webhook in Prometheus Alertmanager's webhook format (version 4),
//! which PagerDuty, Opsgenie and Alertmanager-fed integrations take as is.
//!
//! Privacy: an offer carries what its recipient needs to act — the food,
//! how much, until when, where to collect it (the provider's public name
//! and street address) and the links to answer — and nobody's contact
//! data. An alert carries ids and counts, no names.

use serde_json::{Value, json};
use sync_protocol::{EdgeId, Provider, RecipientId, Surplus, SurplusId, Timestamp};

use crate::clock::rfc3339;
use edge_core::notify::AlertNotice;

/// The offer made to `recipient`, as its channels receive it.
#[derive(Debug, Clone, Copy)]
pub struct OfferFacts<'a> {
    pub edge: &'a EdgeId,
    pub recipient: RecipientId,
    pub attempt: u32,
    pub fallback: bool,
    pub ack_deadline: Timestamp,
    pub surplus: &'a Surplus,
    /// The provider and its street address, if it is still known.
    pub provider: Option<(&'a Provider, &'a str)>,
    /// Where people reach this edge (no trailing `/`).
    pub base_url: &'a str,
}

/// `offer.made`: the JSON body every channel of the recipient is sent.
pub fn offer(now: Timestamp, f: &OfferFacts<'_>) -> Value {
    let s = f.surplus;
    let id = s.id;
    let provider = f.provider.map(|(p, address)| {
        json!({
            "id": p.id.to_string(),
            "name": p.name,
            "address": address,
        })
    });
    json!({
        "type": "offer.made",
        "timestamp": rfc3339(now),
        "data": {
            "edge_id": f.edge.as_str(),
            "surplus_id": id.to_string(),
            "recipient_id": f.recipient.to_string(),
            "attempt": f.attempt,
            "fallback": f.fallback,
            "food_type": s.food_type.as_str(),
            "quantity_kg": s.quantity.grams() as f64 / 1_000.0,
            "description": s.description,
            "answer_by": rfc3339(f.ack_deadline),
            "pickup_window": {
                "from": rfc3339(now.max(s.posted_at)),
                "until": rfc3339(s.expires_at),
            },
            "location": {"lat": s.location.lat(), "lon": s.location.lon()},
            "provider": provider,
            "links": {
                "accept": format!("{}/api/v1/offers/{id}/accept", f.base_url),
                "decline": format!("{}/api/v1/offers/{id}/decline", f.base_url),
                "surplus": format!("{}/api/v1/surplus/{id}", f.base_url),
                "kiosk": format!("{}/kiosk", f.base_url),
            },
        },
    })
}

/// The offer as a text message (SMS, WhatsApp), in Bahasa Indonesia with
/// the English keywords accepted too: what, how much, from whom and where,
/// until when, and how to answer — `reply` is the offer's number.
pub fn offer_text(f: &OfferFacts<'_>, reply: u64, utc_offset_minutes: i32) -> String {
    let s = f.surplus;
    let kg = s.quantity.grams() as f64 / 1_000.0;
    let local = |t: Timestamp| {
        let minutes = t.unix_ms().div_euclid(60_000) + i64::from(utc_offset_minutes);
        let (h, m) = (
            minutes.div_euclid(60).rem_euclid(24),
            minutes.rem_euclid(60),
        );
        format!("{h:02}:{m:02}")
    };
    let from = match f.provider {
        Some((p, address)) if !address.is_empty() => format!("{} ({address})", p.name),
        Some((p, _)) => p.name.clone(),
        None => "penyedia".to_string(),
    };
    let mut text = format!(
        "Pahlawan Pangan: {kg} kg {} dari {from}. Ambil sebelum {}. Balas YA {reply} untuk menerima atau TIDAK {reply} untuk menolak, sebelum {}.",
        s.food_type.as_str(),
        local(s.expires_at),
        local(f.ack_deadline),
    );
    // Two SMS segments at most; the provider's name and address are what
    // gets shortened, never the answer.
    if text.chars().count() > 300 {
        text = format!(
            "Pahlawan Pangan: {kg} kg {}. Ambil sebelum {}. Balas YA {reply} / TIDAK {reply} sebelum {}.",
            s.food_type.as_str(),
            local(s.expires_at),
            local(f.ack_deadline),
        );
    }
    text
}

/// The on-call alert, one firing alert in Alertmanager's webhook format.
/// Its labels identify it (`alertname`, `edge_id`, `surplus_id`), so a
/// receiver that groups or deduplicates by labels sees one alert however
/// often it is retried.
pub fn alert(now: Timestamp, edge: &EdgeId, a: &AlertNotice, base_url: &str) -> Value {
    let name = a.kind.alertname();
    let surplus: SurplusId = a.surplus_id;
    let (summary, description) = match a.kind {
        edge_core::notify::AlertKind::FallbackOffered => (
            format!("Surplus {surplus} went to the cell's fallback recipient"),
            format!(
                "Edge {edge}: the dead-letter queue gave up on surplus {surplus}; the fallback recipient was offered it."
            ),
        ),
        edge_core::notify::AlertKind::NoFallback => (
            format!("Surplus {surplus} will be wasted unless someone steps in"),
            format!(
                "Edge {edge}: the dead-letter queue gave up on surplus {surplus} and no fallback recipient can take it. Claim it directly or resolve it: pahlawan dlq list."
            ),
        ),
    };
    let labels = json!({
        "alertname": name,
        "severity": a.kind.severity(),
        "edge_id": edge.as_str(),
        "surplus_id": surplus.to_string(),
    });
    let annotations = json!({"summary": summary, "description": description});
    let generator = format!("{base_url}/api/v1/surplus/{surplus}");
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\", edge_id=\"{edge}\", surplus_id=\"{surplus}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "pahlawan-oncall",
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": base_url,
        "alerts": [{
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(now),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": generator,
            "fingerprint": fingerprint(name, edge, &surplus),
        }],
    })
}

/// A stable 16-hex-digit id of an alert's labels (FNV-1a).
fn fingerprint(name: &str, edge: &EdgeId, surplus: &SurplusId) -> String {
    let f = edge_core::idempotency::Fingerprint::new()
        .feed(name.as_bytes())
        .feed(edge.as_str().as_bytes())
        .feed(surplus.as_bytes())
        .finish();
    format!("{f:016x}")
}
