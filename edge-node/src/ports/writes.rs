//! The command port: every write goes through the writer's queues.
//! Requests (registrations, posts, actions, erasures) are shed at once when
//! their queue is full (`Busy`: the API answers 503). Background work (the
//! hub link's marks and imports, retention, re-sealing, key swaps) waits for
//! room in its own bounded queue. An audit record a request needs before it
//! may answer (a refusal, a read of contact data) waits for room at most
//! `audit_wait`, then is `Busy` too: no request waits without a bound.

use std::sync::Arc;
use std::time::Duration;

use sync_protocol::{
    AuditRecord, GeoPoint, Provider, Recipient, Subject, SurplusId, Timestamp, TraceContext,
};
use tokio::sync::oneshot;

use super::EdgeError;
use crate::cells::CellSet;
use crate::commands::{
    Acted, Actor, IdempotencyKey, NewProvider, NewRecipient, NewSurplus, Posted, Rejection,
    SurplusAction,
};
use crate::pii::PiiKeys;
use crate::store::writer::{
    ChannelAnswer, ChannelOp, Command, KioskAnswer, KioskOp, PostRequest, QueueSenders, Reply,
    Unavailable,
};
use sync_protocol::Surplus;

/// Rows per retention or re-seal step: one writer group stays short.
pub const STEP_ROWS: usize = 256;
/// Neighbouring recipients imported per writer command.
pub const IMPORT_CHUNK: usize = 256;

/// A cheap, cloneable handle on the writer's queues.
#[derive(Clone)]
pub struct Writes {
    queues: QueueSenders,
    cells: Arc<CellSet>,
    audit_wait: Duration,
}

/// How a command waits for room in its queue.
#[derive(Debug, Clone, Copy)]
enum Room {
    /// A request: none now is `Busy`.
    Now,
    /// Background work: wait for it.
    Wait,
    /// Request-path background work: wait at most this long, then `Busy`.
    Within(Duration),
}

impl Writes {
    pub fn new(queues: QueueSenders, cells: Arc<CellSet>, audit_wait: Duration) -> Writes {
        Writes {
            queues,
            cells,
            audit_wait,
        }
    }

    /// The owned cell a point lies in, or `Misdirected`.
    pub fn owned_cell(&self, p: &GeoPoint) -> Result<u64, EdgeError> {
        self.cells
            .owner_cell(p)
            .map_err(|cell| EdgeError::Misdirected { cell })
    }

    pub fn cells(&self) -> &CellSet {
        &self.cells
    }

    async fn call<T>(
        &self,
        room: Room,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, EdgeError> {
        let (reply, rx) = oneshot::channel();
        let command = make(reply);
        match room {
            Room::Now => self.queues.request(command)?,
            Room::Wait => self.queues.background(command, None).await?,
            Room::Within(d) => self.queues.background(command, Some(d)).await?,
        }
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(EdgeError::Unavailable(Unavailable::new(
                "the write was abandoned by a failed commit",
            ))),
        }
    }

    pub async fn register_provider(
        &self,
        new: NewProvider,
        actor: Option<Actor>,
    ) -> Result<Result<Provider, Rejection>, EdgeError> {
        self.owned_cell(&new.location)?;
        self.call(Room::Now, |reply| Command::RegisterProvider {
            new,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    pub async fn register_recipient(
        &self,
        new: NewRecipient,
        actor: Option<Actor>,
    ) -> Result<Result<Recipient, Rejection>, EdgeError> {
        let cell = self.owned_cell(&new.location)?;
        self.call(Room::Now, |reply| Command::RegisterRecipient {
            new,
            cell,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    pub async fn post_surplus(
        &self,
        new: NewSurplus,
        idempotency_key: Option<String>,
        trace: Option<TraceContext>,
        actor: Option<Actor>,
    ) -> Result<Result<Posted, Rejection>, EdgeError> {
        self.post_surplus_with(new, idempotency_key, trace, actor, None)
            .await
    }

    /// `post_surplus` with routed travel times for its first match.
    pub async fn post_surplus_with(
        &self,
        new: NewSurplus,
        idempotency_key: Option<String>,
        trace: Option<TraceContext>,
        actor: Option<Actor>,
        hints: Option<edge_core::matching::TravelHints>,
    ) -> Result<Result<Posted, Rejection>, EdgeError> {
        let cell = self.owned_cell(&new.location)?;
        let idempotency = idempotency_key.map(|key| IdempotencyKey {
            key,
            fingerprint: new.fingerprint(),
        });
        let post = Box::new(PostRequest {
            new,
            cell,
            idempotency,
            trace,
            actor,
            hints,
        });
        self.call(Room::Now, |reply| Command::Post { post, reply })
            .await
    }

    pub async fn act(
        &self,
        surplus_id: SurplusId,
        action: SurplusAction,
        trace: Option<TraceContext>,
        actor: Option<Actor>,
    ) -> Result<Result<Surplus, Rejection>, EdgeError> {
        let acted = self.act_keyed(surplus_id, action, None, trace, actor);
        Ok(acted.await?.map(|a| a.surplus))
    }

    /// `act` with an optional `Idempotency-Key`: the same key and action
    /// again answers with the surplus as it stands and is not applied twice.
    pub async fn act_keyed(
        &self,
        surplus_id: SurplusId,
        action: SurplusAction,
        idempotency_key: Option<String>,
        trace: Option<TraceContext>,
        actor: Option<Actor>,
    ) -> Result<Result<Acted, Rejection>, EdgeError> {
        let idempotency = idempotency_key.map(|key| IdempotencyKey {
            key,
            fingerprint: action.fingerprint(&surplus_id),
        });
        self.call(Room::Now, |reply| Command::Act {
            surplus_id,
            action,
            idempotency,
            trace,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    /// Kiosk pairing and device credentials, audited with `actor`.
    pub async fn kiosk(&self, op: KioskOp, actor: Option<Actor>) -> Result<KioskAnswer, EdgeError> {
        self.call(Room::Now, |reply| Command::Kiosk {
            op,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    /// A recipient's notification channels, audited with `actor`.
    pub async fn channel(
        &self,
        op: ChannelOp,
        actor: Option<Actor>,
    ) -> Result<ChannelAnswer, EdgeError> {
        self.call(Room::Now, |reply| Command::Channel {
            op,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    /// GDPR erasure of one of this edge's providers or recipients; false if
    /// it is unknown here, already erased, or a neighbour's.
    pub async fn erase(&self, subject: Subject, actor: Option<Actor>) -> Result<bool, EdgeError> {
        self.call(Room::Now, |reply| Command::Erase {
            subject,
            actor: actor.map(Box::new),
            reply,
        })
        .await
    }

    /// Fires due timers now; returns how many fired (manual clocks use this).
    pub async fn tick(&self) -> Result<usize, EdgeError> {
        self.call(Room::Now, |reply| Command::Tick { reply }).await
    }

    /// Writes one audit record a request must not answer without (a
    /// refusal, a read of personal data): waits for room in the background
    /// queue at most `audit_wait`, then `Busy` (the API answers 503).
    pub async fn audit(&self, record: AuditRecord) -> Result<(), EdgeError> {
        self.call(Room::Within(self.audit_wait), |reply| Command::Audit {
            record,
            reply,
        })
        .await
    }

    /// Re-seals every contact sealed under an older key, a step at a time;
    /// returns how many.
    pub async fn reseal_all(&self) -> Result<usize, EdgeError> {
        self.in_steps(|reply| Command::Reseal {
            limit: STEP_ROWS,
            reply,
        })
        .await
    }

    /// Repeats a background step (answering how many rows it did) until it
    /// does none; returns the total.
    async fn in_steps(&self, step: impl Fn(Reply<usize>) -> Command) -> Result<usize, EdgeError> {
        let mut total = 0;
        loop {
            let n = self.call(Room::Wait, &step).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// New contacts are sealed with `keys` from now on (readers open with
    /// them once the swap has committed).
    pub async fn swap_pii_keys(&self, keys: PiiKeys) -> Result<(), EdgeError> {
        let keys = Arc::new(keys);
        self.call(Room::Wait, |reply| Command::SwapPiiKeys { keys, reply })
            .await
    }

    /// Deletes operational data last touched before `cutoff`, a step at a
    /// time; returns how many rows.
    pub async fn retain(&self, cutoff: Timestamp) -> Result<usize, EdgeError> {
        self.in_steps(|reply| Command::Retain {
            cutoff,
            limit: STEP_ROWS,
            reply,
        })
        .await
    }

    /// The hub acknowledged the outbox up to `seq`.
    pub async fn mark_published(&self, seq: u64) -> Result<(), EdgeError> {
        self.call(Room::Wait, |reply| Command::MarkPublished { seq, reply })
            .await
    }

    /// The notification dispatcher finished every delivery up to `seq`.
    pub async fn mark_notified(&self, seq: u64) -> Result<(), EdgeError> {
        self.call(Room::Wait, |reply| Command::MarkNotified { seq, reply })
            .await
    }

    /// The hub granted this lease epoch.
    pub async fn set_lease_epoch(&self, epoch: u64) -> Result<(), EdgeError> {
        self.call(Room::Wait, |reply| Command::SetLeaseEpoch { epoch, reply })
            .await
    }

    /// Imports neighbouring recipients a slice at a time, so a large
    /// registry never holds one writer group for long.
    pub async fn import_recipients(
        &self,
        entries: Vec<sync_protocol::session::RegistryEntry>,
    ) -> Result<usize, EdgeError> {
        let mut imported = 0;
        for chunk in entries.chunks(IMPORT_CHUNK) {
            let entries = chunk.to_vec();
            imported += self
                .call(Room::Wait, |reply| Command::ImportRecipients {
                    entries,
                    reply,
                })
                .await?;
        }
        Ok(imported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::queues;

    fn writes(audit_wait: Duration) -> (Writes, crate::store::writer::Queues) {
        let (senders, receivers) = queues(1, 1);
        let cells = crate::cells::CellSet::covering(13, [-6.4, 106.7, -6.1, 107.0]).expect("cells");
        (Writes::new(senders, Arc::new(cells), audit_wait), receivers)
    }

    fn record() -> AuditRecord {
        AuditRecord {
            actor: "admin".into(),
            role: "admin".into(),
            action: "contact.read".into(),
            resource: "provider/x".into(),
            status: 200,
            ip: None,
            user_agent: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_path_audit_waits_its_bound_then_is_busy_while_link_work_waits_on() {
        let (w, queued) = writes(Duration::from_millis(1_000));
        // The hub link's mark takes the only background place (the writer
        // is not draining), and waits for its answer.
        let mark = tokio::spawn({
            let w = w.clone();
            async move { w.mark_published(7).await }
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        assert_eq!(w.audit(record()).await, Err(EdgeError::Busy));
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(1_000)..Duration::from_millis(1_010)).contains(&waited),
            "its bound: {waited:?}"
        );
        // Link work has no deadline: another mark still waits for room.
        let second = tokio::spawn({
            let w = w.clone();
            async move { w.mark_published(8).await }
        });
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        assert!(!second.is_finished(), "background work waits for room");
        // The writer goes away: both learn it, neither hangs.
        drop(queued);
        for task in [mark, second] {
            let r = task.await.expect("joined");
            assert!(matches!(r, Err(EdgeError::Unavailable(_))), "{r:?}");
        }
    }

    #[tokio::test]
    async fn a_full_request_queue_is_busy_at_once_and_a_point_outside_the_cells_misdirected() {
        let (w, _queued) = writes(Duration::from_millis(1));
        let tick = tokio::spawn({
            let w = w.clone();
            async move { w.tick().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            w.tick().await,
            Err(EdgeError::Busy),
            "the first tick holds the one place"
        );
        tick.abort();
        let bandung = GeoPoint::new(-6.9, 107.6).expect("valid");
        assert!(matches!(
            w.owned_cell(&bandung),
            Err(EdgeError::Misdirected { .. })
        ));
    }
}
