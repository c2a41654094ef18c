//! Notification channels inside the group's transaction: registered for a
//! recipient of this edge (what they send to sealed like contact data),
//! removed, deleted with an erased recipient, each change audited; and the
//! dispatcher's durable cursor.

use rusqlite::{OptionalExtension, params};
use sync_protocol::{RecipientId, Timestamp};

use super::command::{ChannelAnswer, ChannelOp};
use super::{StoreError, Writer};
use crate::commands::Actor;

impl Writer {
    pub(super) fn channel(
        &mut self,
        now: Timestamp,
        op: ChannelOp,
        actor: Option<Box<Actor>>,
    ) -> Result<ChannelAnswer, StoreError> {
        let (answer, action, resource) = match op {
            ChannelOp::Add {
                recipient,
                id,
                kind,
                target,
                max_per_recipient,
            } => {
                let answer = if !self.is_own_recipient(recipient)? {
                    ChannelAnswer::UnknownRecipient
                } else if self.channel_count(recipient)? >= u64::from(max_per_recipient) {
                    ChannelAnswer::TooMany
                } else {
                    let plain = serde_json::to_vec(&target)
                        .map_err(|e| StoreError::Corrupt(format!("channel target: {e}")))?;
                    let sealed = self.keys.seal_bytes(&plain, recipient.as_bytes());
                    self.conn
                        .prepare_cached(
                            "INSERT INTO notify_channels (public_id, recipient_id, kind, sealed, created_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )?
                        .execute(params![
                            id.as_bytes(),
                            recipient.as_bytes(),
                            kind.as_str(),
                            sealed,
                            now.unix_ms()
                        ])?;
                    ChannelAnswer::Added
                };
                (answer, "channel.add", format!("channel/{id}"))
            }
            ChannelOp::Remove { recipient, id } => {
                let gone = self
                    .conn
                    .prepare_cached(
                        "DELETE FROM notify_channels WHERE public_id = ?1 AND recipient_id = ?2",
                    )?
                    .execute(params![id.as_bytes(), recipient.as_bytes()])?;
                (
                    ChannelAnswer::Removed(gone > 0),
                    "channel.remove",
                    format!("channel/{id}"),
                )
            }
        };
        if let Some(actor) = actor {
            let status = match answer {
                ChannelAnswer::Added => 201,
                ChannelAnswer::Removed(true) => 204,
                ChannelAnswer::UnknownRecipient | ChannelAnswer::Removed(false) => 404,
                ChannelAnswer::TooMany => 409,
            };
            self.audit(now, actor.record(action, resource, status))?;
        }
        Ok(answer)
    }

    fn is_own_recipient(&self, recipient: RecipientId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM recipients WHERE id = ?1 AND owner_edge IS NULL AND erased_at IS NULL",
            )?
            .query_row([recipient.as_bytes()], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some())
    }

    fn channel_count(&self, recipient: RecipientId) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM notify_channels WHERE recipient_id = ?1")?
            .query_row([recipient.as_bytes()], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// An erased recipient's channels go with it (in the erasure's
    /// transaction).
    pub(super) fn delete_channels(&mut self, recipient: RecipientId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM notify_channels WHERE recipient_id = ?1")?
            .execute([recipient.as_bytes()])?;
        Ok(())
    }

    /// Re-seals up to `limit` channels sealed under a key other than the
    /// active one (after `pahlawan keys rotate`, so the old key can go).
    pub(super) fn reseal_channels(&mut self, limit: usize) -> Result<usize, StoreError> {
        let keys = self.keys.clone();
        let active = keys.active_id().to_be_bytes();
        let todo: Vec<(i64, Vec<u8>, Vec<u8>)> = self
            .conn
            .prepare_cached(
                "SELECT id, recipient_id, sealed FROM notify_channels
                 WHERE substr(sealed, 2, 4) <> ?1 LIMIT ?2",
            )?
            .query_map(params![active.as_slice(), limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for (id, recipient, sealed) in &todo {
            let recipient: [u8; 16] = recipient
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("recipient id is not 16 bytes".into()))?;
            let plain = keys.open_bytes(sealed, &recipient)?;
            let sealed = keys.seal_bytes(&plain, &recipient);
            self.conn
                .prepare_cached("UPDATE notify_channels SET sealed = ?1 WHERE id = ?2")?
                .execute(params![sealed, id])?;
        }
        Ok(todo.len())
    }

    /// The dispatcher finished every delivery up to `seq` (never moves
    /// back, never past the last committed event).
    pub(super) fn mark_notified(&mut self, seq: u64) -> Result<(), StoreError> {
        let seq = seq.min(self.last_seq()) as i64;
        self.conn
            .prepare_cached(
                "UPDATE notify_state SET notified_seq = max(notified_seq, ?1) WHERE id = 1",
            )?
            .execute([seq])?;
        Ok(())
    }
}
