//! What the writer is asked to do, and the answers it holds back until the
//! group that carried them has committed.

use std::sync::Arc;

use sync_protocol::{
    AuditRecord, Provider, Recipient, RecipientId, Subject, SurplusId, Timestamp, TraceContext,
};
use tokio::sync::oneshot;

use crate::commands::{
    Acted, Actor, IdempotencyKey, NewProvider, NewRecipient, NewSurplus, Posted, Rejection,
    SurplusAction,
};
use crate::pii::PiiKeys;

/// The store could not make the write durable; nothing was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the edge could not commit: {reason}")]
pub struct Unavailable {
    pub reason: String,
    /// The disk under the database is full (SQLite's `SQLITE_FULL`): the
    /// API answers 507, and the write may succeed once space is freed.
    pub disk_full: bool,
}

impl Unavailable {
    pub fn new(reason: impl Into<String>) -> Unavailable {
        Unavailable {
            reason: reason.into(),
            disk_full: false,
        }
    }

    pub fn disk_full(reason: impl Into<String>) -> Unavailable {
        Unavailable {
            reason: reason.into(),
            disk_full: true,
        }
    }
}

pub type Reply<T> = oneshot::Sender<Result<T, Unavailable>>;

/// A post, as the writer needs it.
#[derive(Debug)]
pub struct PostRequest {
    pub new: NewSurplus,
    /// The owned cell the surplus lies in.
    pub cell: u64,
    pub idempotency: Option<IdempotencyKey>,
    pub trace: Option<TraceContext>,
    pub actor: Option<Actor>,
    /// Routed travel times for some recipients (none: from distance).
    pub hints: Option<edge_core::matching::TravelHints>,
}

pub enum Command {
    RegisterProvider {
        new: NewProvider,
        actor: Option<Box<Actor>>,
        reply: Reply<Result<Provider, Rejection>>,
    },
    RegisterRecipient {
        new: NewRecipient,
        cell: u64,
        actor: Option<Box<Actor>>,
        reply: Reply<Result<Recipient, Rejection>>,
    },
    Post {
        post: Box<PostRequest>,
        reply: Reply<Result<Posted, Rejection>>,
    },
    Act {
        surplus_id: SurplusId,
        action: SurplusAction,
        /// The page's `Idempotency-Key`: a repeat answers, never re-applies.
        idempotency: Option<IdempotencyKey>,
        trace: Option<TraceContext>,
        actor: Option<Box<Actor>>,
        reply: Reply<Result<Acted, Rejection>>,
    },
    /// GDPR erasure of one of this edge's subjects (false: not ours or
    /// unknown).
    Erase {
        subject: Subject,
        actor: Option<Box<Actor>>,
        reply: Reply<bool>,
    },
    /// Re-seals up to `limit` contacts sealed under an older key; answers
    /// how many (0: none left).
    Reseal { limit: usize, reply: Reply<usize> },
    /// Seal with these keys from now on (after `pahlawan keys rotate`);
    /// readers open contacts with them once the group has committed.
    SwapPiiKeys {
        keys: Arc<PiiKeys>,
        reply: Reply<()>,
    },
    /// An audit record with no write of its own (a refusal, a read of
    /// personal data).
    Audit {
        record: AuditRecord,
        reply: Reply<()>,
    },
    /// Deletes up to `limit` rows of operational data last touched before
    /// `cutoff`; answers how many (0: done).
    Retain {
        cutoff: Timestamp,
        limit: usize,
        reply: Reply<usize>,
    },
    /// Fire due timers now (the manual clock's way of moving time).
    Tick { reply: Reply<usize> },
    /// The hub acknowledged the outbox up to `seq`.
    MarkPublished { seq: u64, reply: Reply<()> },
    /// The hub granted this lease epoch: stamp it on new events.
    SetLeaseEpoch { epoch: u64, reply: Reply<()> },
    /// Recipients of neighbouring cells, from the hub (no events: not ours).
    ImportRecipients {
        entries: Vec<sync_protocol::session::RegistryEntry>,
        reply: Reply<usize>,
    },
    /// Kiosk pairing, devices and their audit records (`kiosk.rs`).
    Kiosk {
        op: KioskOp,
        actor: Option<Box<Actor>>,
        reply: Reply<KioskAnswer>,
    },
    /// A recipient's notification channels (`channels.rs`), audited.
    Channel {
        op: ChannelOp,
        actor: Option<Box<Actor>>,
        reply: Reply<ChannelAnswer>,
    },
    /// The notification dispatcher finished every delivery up to `seq`.
    MarkNotified { seq: u64, reply: Reply<()> },
    /// Finish what is queued ahead of this, then stop. Handles that outlive
    /// the edge (a lingering connection) then get `Unavailable`.
    Stop,
}

impl Command {
    /// Answers a command its group never reached with the group's failure
    /// (a caller told why — a full disk is 507, not a generic 503).
    pub(super) fn refuse(self, failure: &Unavailable) {
        match self {
            Command::RegisterProvider { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::RegisterRecipient { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Post { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Act { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Erase { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Reseal { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::SwapPiiKeys { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Audit { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Retain { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Tick { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::MarkPublished { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::SetLeaseEpoch { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::ImportRecipients { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Kiosk { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Channel { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::MarkNotified { reply, .. } => drop(reply.send(Err(failure.clone()))),
            Command::Stop => {}
        }
    }
}

/// What a kiosk command asks (hashes, never the codes or secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KioskOp {
    /// Store a one-time code for a recipient of this edge.
    NewCode {
        recipient: RecipientId,
        code_hash: [u8; 32],
        expires_at: Timestamp,
    },
    /// Trade a code for a new device credential (`label`: who asked, from
    /// where, as the audit log names it).
    Redeem {
        code_hash: [u8; 32],
        device: DeviceId,
        secret_hash: [u8; 32],
        label: String,
        expires_at: Timestamp,
        max_devices: u32,
    },
    /// Extend a valid device's life.
    Renew {
        device: DeviceId,
        expires_at: Timestamp,
    },
    /// Revoke a device (no effect on one already revoked).
    Revoke { device: DeviceId },
}

/// A kiosk device's id.
pub type DeviceId = uuid::Uuid;

/// What a kiosk command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KioskAnswer {
    /// The code is stored.
    CodeStored,
    /// No such recipient on this edge (or erased, or a neighbour's).
    UnknownRecipient,
    /// Paired: the device acts for this recipient.
    Paired(RecipientId),
    /// The code could not be redeemed.
    Refused(edge_core::kiosk::PairRefusal),
    /// The recipient holds the most devices allowed.
    TooManyDevices,
    /// Renewed or revoked: whether a row changed.
    Changed(bool),
}

/// What a channel command asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelOp {
    /// Register a channel for a recipient of this edge (the writer seals
    /// `target`).
    Add {
        recipient: RecipientId,
        id: uuid::Uuid,
        kind: crate::commands::ChannelKind,
        target: crate::commands::ChannelTarget,
        max_per_recipient: u32,
    },
    /// Remove one of the recipient's channels.
    Remove {
        recipient: RecipientId,
        id: uuid::Uuid,
    },
}

/// What a channel command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAnswer {
    Added,
    /// No such recipient on this edge (or erased, or a neighbour's).
    UnknownRecipient,
    /// The recipient holds the most channels allowed.
    TooMany,
    /// Removed: whether a row went.
    Removed(bool),
}

/// An answer held back until the group commits.
pub(super) enum Pending {
    Provider(
        Reply<Result<Provider, Rejection>>,
        Result<Provider, Rejection>,
    ),
    Recipient(
        Reply<Result<Recipient, Rejection>>,
        Result<Recipient, Rejection>,
    ),
    Post(Reply<Result<Posted, Rejection>>, Result<Posted, Rejection>),
    Act(Reply<Result<Acted, Rejection>>, Result<Acted, Rejection>),
    Count(Reply<usize>, usize),
    Erased(Reply<bool>, bool),
    Kiosk(Reply<KioskAnswer>, KioskAnswer),
    Channel(Reply<ChannelAnswer>, ChannelAnswer),
    Done(Reply<()>),
}

impl Pending {
    /// Answers with the held value, or with `failure` if the group did not
    /// commit.
    pub(super) fn send(self, failure: Option<&Unavailable>) {
        // A dropped receiver means the client went away; nothing to do.
        macro_rules! answer {
            ($reply:expr, $value:expr) => {{
                let _ = $reply.send(match failure {
                    None => Ok($value),
                    Some(e) => Err(e.clone()),
                });
            }};
        }
        match self {
            Pending::Provider(r, v) => answer!(r, v),
            Pending::Recipient(r, v) => answer!(r, v),
            Pending::Post(r, v) => answer!(r, v),
            Pending::Act(r, v) => answer!(r, v),
            Pending::Count(r, v) => answer!(r, v),
            Pending::Erased(r, v) => answer!(r, v),
            Pending::Kiosk(r, v) => answer!(r, v),
            Pending::Channel(r, v) => answer!(r, v),
            Pending::Done(r) => answer!(r, ()),
        }
    }
}
