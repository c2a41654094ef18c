//! The notification dispatcher: the shell around
//! [`edge_core::notify::Dispatcher`]. It reads **committed** outbox events
//! (never anything a group that rolled back wrote), asks the core what each
//! means ([`edge_core::notify::notices`]), prepares one request per channel
//! of the people concerned, sends what the core says is due, reports every
//! outcome back, and stores the core's cursor through the writer's
//! background queue. A restart reads after the stored cursor, so whatever
//! committed is sent at least once; every attempt of one delivery carries
//! the same `webhook-id`, so a receiver drops repeats.
//!
//! Nothing here is on a request's path: a post commits and answers whether
//! a receiver hangs, fails or is fine. Bounded: deliveries queued
//! (`max_queue`, plus at most one read batch), attempts in flight
//! (`max_in_flight`), each attempt's time (`attempt_timeout_ms`) and body
//! (`max_payload_bytes`); a failing channel goes behind its own breaker.
//!
//! - [`webhook`]: one signed attempt and what its answer means.
//! - [`message`]: what an offer and an alert say.

pub mod message;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use edge_core::notify::{
    Attempt, ChannelKey, DeliveryId, Dispatcher, Finished, Notice, Outcome, Planned, notices,
};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sync_protocol::{EdgeId, Envelope, RecipientId, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::clock::Clock;
use crate::commands::{ChannelKind, ChannelTarget};
use crate::config::NotifyConfig;
use crate::metrics::{Metrics, NotifyLabels};
use crate::ports::{EdgeError, Reads, Writes};
use crate::store::writer::ChannelOp;
use crate::web_push;

/// Outbox events read at a time.
const READ_BATCH: usize = 64;
/// The longest the loop sleeps without looking again.
const IDLE: StdDuration = StdDuration::from_secs(5);
/// The wait after the store could not be read.
const STORE_RETRY: StdDuration = StdDuration::from_secs(1);

/// What the dispatcher needs.
pub struct Notifier {
    pub edge_id: EdgeId,
    pub config: NotifyConfig,
    /// Where people reach this edge; links in notifications start with it.
    pub base_url: String,
    /// The city's offset from UTC: text messages give local times.
    pub utc_offset_minutes: i32,
    pub reads: Reads,
    pub writes: Writes,
    pub committed: watch::Receiver<u64>,
    /// The VAPID identity Web Push goes out under (none: not sent).
    pub web_push: Option<Arc<crate::web_push::Vapid>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

/// Starts the dispatcher; it ends when `stop` turns true.
pub fn spawn(n: Notifier, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(n, stop))
}

/// One prepared request and the kind of channel it goes to.
struct Prepared {
    req: webhook::Request,
    kind: &'static str,
    /// The recipient and channel to remove if its receiver says it is gone
    /// for good (a push service's 404 or 410: the subscription expired or
    /// was withdrawn).
    gone: Option<(RecipientId, Uuid)>,
    /// A push message's offer deadline: each attempt's `TTL` is the time
    /// left to it, and its VAPID token is signed afresh.
    push_deadline: Option<Timestamp>,
}

struct Loop {
    n: Notifier,
    core: Dispatcher,
    prepared: HashMap<DeliveryId, Prepared>,
    flying: HashMap<DeliveryId, Attempt>,
    tasks: JoinSet<(DeliveryId, Outcome, String)>,
    task_ids: HashMap<tokio::task::Id, DeliveryId>,
    client: reqwest::Client,
    stored: u64,
    rng: SmallRng,
}

async fn run(n: Notifier, mut stop: watch::Receiver<bool>) {
    let start = loop {
        match n.reads.notified_seq().await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::warn!(error = %e, "notifications: cannot read the stored cursor; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(STORE_RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let timeout = StdDuration::from_millis(n.config.attempt_timeout_ms);
    let mut l = Loop {
        core: Dispatcher::new(n.config.dispatch(), start),
        prepared: HashMap::new(),
        flying: HashMap::new(),
        tasks: JoinSet::new(),
        task_ids: HashMap::new(),
        client: webhook::client(timeout),
        stored: start,
        rng: SmallRng::from_os_rng(),
        n,
    };
    tracing::info!(after = start, "notifications: dispatcher started");
    let mut committed = l.n.committed.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let read_ok = l.read().await;
        l.send();
        l.finish();
        l.store_cursor().await;
        let now = l.n.clock.now();
        let mut wait = match l.core.next_wake() {
            Some(t) if t <= now => StdDuration::ZERO,
            Some(t) => StdDuration::from_millis(t.since(now).as_ms().max(0) as u64).min(IDLE),
            None => IDLE,
        };
        if !read_ok {
            wait = wait.min(STORE_RETRY);
        }
        tokio::select! {
            _ = stop.changed() => {}
            Some(done) = l.tasks.join_next_with_id(), if !l.tasks.is_empty() => l.answered(done),
            _ = committed.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Attempts in flight are dropped with the task set: the stored cursor
    // is before them, so the next start sends them again.
    tracing::info!(cursor = l.stored, "notifications: dispatcher stopped");
}

impl Loop {
    /// Admits committed events while the queue has room; false if the
    /// store could not be read (tried again shortly).
    async fn read(&mut self) -> bool {
        while self.core.has_room() && self.core.admitted() < *self.n.committed.borrow() {
            let batch = match self
                .n
                .reads
                .outbox_after(self.core.admitted(), READ_BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "notifications: cannot read the outbox");
                    return false;
                }
            };
            if batch.is_empty() {
                return true;
            }
            for env in batch {
                let now = self.n.clock.now();
                match self.plan(now, &env).await {
                    Ok(planned) => self.core.admit(now, env.seq, &planned),
                    Err(e) => {
                        tracing::warn!(seq = env.seq, error = %e, "notifications: cannot prepare an event");
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The deliveries one event makes, each request prepared.
    async fn plan(&mut self, now: Timestamp, env: &Envelope) -> Result<Vec<Planned>, EdgeError> {
        let mut out = Vec::new();
        for notice in notices(&env.event) {
            match notice {
                Notice::Offer {
                    surplus_id,
                    recipient_id,
                    ack_deadline,
                    attempt,
                    fallback,
                } => {
                    if ack_deadline <= now {
                        continue;
                    }
                    let channels = self.n.reads.channels(recipient_id).await?;
                    if channels.is_empty() {
                        continue;
                    }
                    let Some(surplus) = self.n.reads.surplus(surplus_id).await? else {
                        continue;
                    };
                    let provider = self.n.reads.provider(surplus.provider_id).await?;
                    let facts = message::OfferFacts {
                        edge: &self.n.edge_id,
                        recipient: recipient_id,
                        attempt,
                        fallback,
                        ack_deadline,
                        surplus: &surplus,
                        provider: provider.as_ref().map(|(p, a)| (p, a.as_str())),
                        base_url: &self.n.base_url,
                    };
                    let offer = message::offer(now, &facts);
                    let Some(body) = self.body(&offer, env.seq) else {
                        continue;
                    };
                    for ch in channels {
                        let Some(kind) = ChannelKind::parse(&ch.kind) else {
                            continue;
                        };
                        let target = match self.n.reads.open_channel(&ch) {
                            Ok(target) => target,
                            Err(e) => {
                                tracing::warn!(channel = %ch.id, error = %e, "notifications: a channel cannot be opened; skipped");
                                continue;
                            }
                        };
                        let id = DeliveryId {
                            seq: env.seq,
                            channel: ChannelKey(ch.key),
                        };
                        let (mut gone, mut push_deadline) = (None, None);
                        let (req, label) = if kind == ChannelKind::Webhook {
                            let req = webhook::Request {
                                url: target.url,
                                id: self.message_id(id),
                                body: body.clone(),
                                scheme: webhook::Scheme::StandardWebhooks {
                                    key: crate::standard_webhooks::key_of(&target.secret)
                                        .map(Arc::new),
                                },
                                content_type: "application/json",
                                basic: None,
                            };
                            (req, "webhook")
                        } else if kind == ChannelKind::WebPush {
                            match self.push_request(id, &target, &offer, ack_deadline, now) {
                                Some(req) => {
                                    gone = Some((recipient_id, ch.id));
                                    push_deadline = Some(ack_deadline);
                                    (req, "web_push")
                                }
                                None => continue,
                            }
                        } else {
                            let whatsapp = kind == ChannelKind::Whatsapp;
                            let text =
                                message::offer_text(&facts, env.seq, self.n.utc_offset_minutes);
                            match self.text_request(id, &target.phone, &text, whatsapp) {
                                Some(req) => (req, if whatsapp { "whatsapp" } else { "sms" }),
                                None => continue,
                            }
                        };
                        self.prepared.insert(
                            id,
                            Prepared {
                                req,
                                kind: label,
                                gone,
                                push_deadline,
                            },
                        );
                        out.push(Planned {
                            channel: id.channel,
                            deadline: ack_deadline,
                        });
                    }
                }
                Notice::Alert(alert) => {
                    let Some(url) = self.n.config.oncall_webhook_url.clone() else {
                        continue;
                    };
                    let value = message::alert(now, &self.n.edge_id, &alert, &self.n.base_url);
                    let Some(body) = self.body(&value, env.seq) else {
                        continue;
                    };
                    let id = DeliveryId {
                        seq: env.seq,
                        channel: ChannelKey::ON_CALL,
                    };
                    let req = webhook::Request {
                        url,
                        id: self.message_id(id),
                        body,
                        scheme: webhook::Scheme::StandardWebhooks { key: None },
                        content_type: "application/json",
                        basic: None,
                    };
                    self.prepared.insert(
                        id,
                        Prepared {
                            req,
                            kind: "oncall",
                            gone: None,
                            push_deadline: None,
                        },
                    );
                    let secs = i64::try_from(self.n.config.alert_deadline_secs).unwrap_or(i64::MAX);
                    out.push(Planned {
                        channel: ChannelKey::ON_CALL,
                        deadline: now.saturating_add(sync_protocol::Duration::from_secs(secs)),
                    });
                }
            }
        }
        Ok(out)
    }

    /// A message through the SMS/WhatsApp gateway (none without one).
    fn text_request(
        &self,
        id: DeliveryId,
        phone: &str,
        text: &str,
        whatsapp: bool,
    ) -> Option<webhook::Request> {
        let g = self.n.config.sms.as_ref()?;
        let (from, to) = if whatsapp {
            (
                format!("whatsapp:{}", g.whatsapp_from.as_ref()?),
                format!("whatsapp:{phone}"),
            )
        } else {
            (g.from.clone(), phone.to_string())
        };
        let base = g.base_url.trim_end_matches('/');
        Some(webhook::Request {
            url: format!("{base}{}", crate::twilio::messages_path(&g.account_sid)),
            id: self.message_id(id),
            body: Arc::new(crate::twilio::message_form(&from, &to, text).into_bytes()),
            scheme: webhook::Scheme::StandardWebhooks { key: None },
            content_type: "application/x-www-form-urlencoded",
            basic: Some(Arc::new((g.account_sid.clone(), g.auth_token.0.clone()))),
        })
    }

    /// A push message for a subscription: the offer (and the delivery's
    /// id, for the page to drop repeats) encrypted for its keys, to live at
    /// the push service until the offer's ACK deadline; none without Web
    /// Push, or if it cannot be made.
    fn push_request(
        &self,
        id: DeliveryId,
        target: &ChannelTarget,
        offer: &serde_json::Value,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Option<webhook::Request> {
        let vapid = self.n.web_push.as_ref()?;
        let message_id = self.message_id(id);
        let made = (|| {
            let sub = web_push::Subscription::parse(&target.p256dh, &target.auth)?;
            let mut payload = offer.clone();
            payload["id"] = serde_json::Value::String(message_id.clone());
            let mut plain = serde_json::to_vec(&payload).unwrap_or_default();
            if plain.len() > web_push::MAX_PLAINTEXT {
                // The description is what gives way; the offer still says
                // what, how much, where and until when.
                payload["data"]["description"] = serde_json::Value::String(String::new());
                plain = serde_json::to_vec(&payload).unwrap_or_default();
            }
            let body = web_push::encrypt(&sub, &plain)?;
            let authorization = vapid.authorization(&target.url, unix_now())?;
            Ok::<_, web_push::WebPushError>((body, authorization))
        })();
        let (body, authorization) = match made {
            Ok(made) => made,
            Err(e) => {
                tracing::warn!(delivery = %message_id, error = %e, "notifications: a push message cannot be made; not sent");
                return None;
            }
        };
        Some(webhook::Request {
            url: target.url.clone(),
            id: message_id,
            body: Arc::new(body),
            scheme: webhook::Scheme::WebPush {
                authorization: authorization.into(),
                ttl_secs: push_ttl(deadline, now),
            },
            content_type: "application/octet-stream",
            basic: None,
        })
    }

    /// The JSON bytes of a body, or none if it is over the size bound.
    fn body(&self, value: &serde_json::Value, seq: u64) -> Option<Arc<Vec<u8>>> {
        let bytes = serde_json::to_vec(value).ok()?;
        if bytes.len() > self.n.config.max_payload_bytes {
            tracing::warn!(
                seq,
                bytes = bytes.len(),
                max = self.n.config.max_payload_bytes,
                "notifications: a body is over notify.max_payload_bytes; not sent"
            );
            return None;
        }
        Some(Arc::new(bytes))
    }

    /// The idempotency id of a delivery: the same for every attempt, unique
    /// across edges, events and channels.
    fn message_id(&self, id: DeliveryId) -> String {
        format!("msg_{}_{}_{}", self.n.edge_id, id.seq, id.channel.0)
    }

    /// Starts every attempt the core says is due.
    fn send(&mut self) {
        let now = self.n.clock.now();
        for attempt in self.core.poll(now) {
            let id = attempt.id;
            let Some(p) = self.prepared.get(&id) else {
                // Never happens: a delivery is prepared before it is admitted.
                self.core.on_outcome(now, attempt, Outcome::Refused, 0);
                continue;
            };
            let (client, mut req) = (self.client.clone(), p.req.clone());
            if let (
                Some(deadline),
                Some(vapid),
                webhook::Scheme::WebPush {
                    authorization,
                    ttl_secs,
                },
            ) = (p.push_deadline, &self.n.web_push, &mut req.scheme)
            {
                *ttl_secs = push_ttl(deadline, now);
                if let Ok(fresh) = vapid.authorization(&req.url, unix_now()) {
                    *authorization = fresh.into();
                }
            }
            let handle = self.tasks.spawn(async move {
                let (outcome, status) = webhook::send(&client, &req, unix_now()).await;
                (id, outcome, status)
            });
            self.task_ids.insert(handle.id(), id);
            self.flying.insert(id, attempt);
        }
    }

    /// One attempt came back (or its task died: counted as failed).
    fn answered(
        &mut self,
        done: Result<(tokio::task::Id, (DeliveryId, Outcome, String)), tokio::task::JoinError>,
    ) {
        let (id, outcome, status) = match done {
            Ok((task, answer)) => {
                self.task_ids.remove(&task);
                answer
            }
            Err(e) => match self.task_ids.remove(&e.id()) {
                Some(id) => (id, Outcome::Failed, "panic".to_string()),
                None => return,
            },
        };
        let Some(attempt) = self.flying.remove(&id) else {
            return;
        };
        let kind = self.prepared.get(&id).map_or("webhook", |p| p.kind);
        if outcome == Outcome::Refused
            && (status == "404" || status == "410")
            && let Some((recipient, channel)) = self.prepared.get(&id).and_then(|p| p.gone)
        {
            self.forget_channel(recipient, channel);
        }
        let label = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        };
        self.n
            .metrics
            .notify_attempts
            .get_or_create(&NotifyLabels {
                channel: kind,
                outcome: label,
            })
            .inc();
        if outcome != Outcome::Delivered {
            tracing::info!(
                delivery = %self.message_id(id),
                attempt = attempt.number,
                %status,
                "notifications: attempt not delivered"
            );
        }
        let now = self.n.clock.now();
        let jitter = self.rng.next_u64();
        self.core.on_outcome(now, attempt, outcome, jitter);
    }

    /// Removes a channel whose receiver said it is gone (nothing more is
    /// sent to it; the removal is audited, by `notify-dispatcher`).
    fn forget_channel(&self, recipient: RecipientId, channel: Uuid) {
        let writes = self.n.writes.clone();
        tokio::spawn(async move {
            let op = ChannelOp::Remove {
                recipient,
                id: channel,
            };
            let actor = crate::commands::Actor {
                sub: "notify-dispatcher".into(),
                role: "system".into(),
                ip: None,
                user_agent: None,
            };
            match writes.channel(op, Some(actor)).await {
                Ok(_) => {
                    tracing::info!(%channel, "notifications: the push subscription is gone; channel removed")
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "notifications: cannot remove a gone channel")
                }
            }
        });
    }

    /// Counts what finished and forgets its prepared request.
    fn finish(&mut self) {
        for f in self.core.drain_finished() {
            let (id, outcome, attempts) = match f {
                Finished::Delivered { id, attempts } => (id, "delivered", attempts),
                Finished::Refused { id, attempts } => (id, "refused", attempts),
                Finished::Expired { id, attempts } => (id, "expired", attempts),
            };
            let kind = self.prepared.remove(&id).map_or(
                if id.channel == ChannelKey::ON_CALL {
                    "oncall"
                } else {
                    "webhook"
                },
                |p| p.kind,
            );
            self.n
                .metrics
                .notify_deliveries
                .get_or_create(&NotifyLabels {
                    channel: kind,
                    outcome,
                })
                .inc();
            if outcome != "delivered" {
                tracing::warn!(delivery = %self.message_id(id), outcome, attempts, "notifications: not delivered");
            }
        }
        let now = self.n.clock.now();
        self.n.metrics.notify_queue.set(self.core.queued() as i64);
        self.n
            .metrics
            .notify_breakers_open
            .set(self.core.open_breakers(now) as i64);
    }

    /// Stores the cursor once it has moved (background work: it waits for
    /// room, never sheds a request).
    async fn store_cursor(&mut self) {
        let cursor = self.core.cursor();
        if cursor <= self.stored {
            return;
        }
        match self.n.writes.mark_notified(cursor).await {
            Ok(()) => self.stored = cursor,
            Err(e) => tracing::warn!(error = %e, "notifications: cannot store the cursor"),
        }
    }
}

/// A push message's `TTL`: the whole seconds left to answer, at least 1.
fn push_ttl(deadline: Timestamp, now: Timestamp) -> u64 {
    u64::try_from(deadline.since(now).as_ms() / 1_000)
        .unwrap_or(0)
        .max(1)
}

/// Seconds since the Unix epoch by the system clock: a Standard Webhooks
/// timestamp is checked against the receiver's wall clock (5 minutes'
/// tolerance), so it is the machine's time, not the edge's possibly
/// manual clock.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
