//! Kiosk pairing inside the group's transaction: one-time codes stored by
//! hash, redeemed once (the decision is `edge_core::kiosk::redeem`), device
//! credentials created, renewed and revoked — each audited in the same
//! transaction, like every write.

use rusqlite::{OptionalExtension, params};
use sync_protocol::{RecipientId, Timestamp};

use super::command::{KioskAnswer, KioskOp};
use super::{StoreError, Writer};
use crate::commands::Actor;
use edge_core::kiosk::{Pairing, redeem};

impl Writer {
    pub(super) fn kiosk(
        &mut self,
        now: Timestamp,
        op: KioskOp,
        actor: Option<Box<Actor>>,
    ) -> Result<KioskAnswer, StoreError> {
        let (answer, action, resource, status) = match op {
            KioskOp::NewCode {
                recipient,
                code_hash,
                expires_at,
            } => {
                let answer = self.new_code(now, recipient, code_hash, expires_at)?;
                let status = if answer == KioskAnswer::CodeStored {
                    201
                } else {
                    422
                };
                (
                    answer,
                    "kiosk.code",
                    format!("recipient/{recipient}"),
                    status,
                )
            }
            KioskOp::Redeem {
                code_hash,
                device,
                secret_hash,
                label,
                expires_at,
                max_devices,
            } => {
                let new = NewDevice {
                    id: device,
                    secret_hash,
                    label,
                    expires_at,
                };
                let answer = self.redeem(now, code_hash, new, max_devices)?;
                let status = match answer {
                    KioskAnswer::Paired(_) => 201,
                    KioskAnswer::TooManyDevices => 429,
                    _ => 401,
                };
                (answer, "kiosk.pair", format!("kiosk/{device}"), status)
            }
            KioskOp::Renew { device, expires_at } => {
                let changed = self.conn.prepare_cached(
                    "UPDATE kiosk_devices SET expires_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![device.as_bytes(), expires_at.unix_ms()])?;
                let status = if changed > 0 { 200 } else { 404 };
                let answer = KioskAnswer::Changed(changed > 0);
                (answer, "kiosk.renew", format!("kiosk/{device}"), status)
            }
            KioskOp::Revoke { device } => {
                let changed = self.conn.prepare_cached(
                    "UPDATE kiosk_devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![device.as_bytes(), now.unix_ms()])?;
                let status = if changed > 0 { 200 } else { 404 };
                let answer = KioskAnswer::Changed(changed > 0);
                (answer, "kiosk.revoke", format!("kiosk/{device}"), status)
            }
        };
        if let Some(mut actor) = actor {
            // A pairing is made by an anonymous page: once paired, it is
            // the recipient's device that acted.
            if let KioskAnswer::Paired(r) = answer {
                actor.sub = r.to_string();
            }
            self.audit(now, actor.record(action, resource, status))?;
        }
        Ok(answer)
    }

    fn new_code(
        &mut self,
        now: Timestamp,
        recipient: RecipientId,
        code_hash: [u8; 32],
        expires_at: Timestamp,
    ) -> Result<KioskAnswer, StoreError> {
        let known: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM recipients WHERE id = ?1 AND owner_edge IS NULL AND erased_at IS NULL",
            )?
            .query_row([recipient.as_bytes()], |r| r.get(0))
            .optional()?;
        if known.is_none() {
            return Ok(KioskAnswer::UnknownRecipient);
        }
        // Codes whose time is over are of no use: drop them as new ones come.
        self.conn
            .prepare_cached("DELETE FROM kiosk_pairings WHERE expires_at < ?1")?
            .execute([now.unix_ms()])?;
        self.conn
            .prepare_cached(
                "INSERT INTO kiosk_pairings (code_hash, recipient_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                code_hash,
                recipient.as_bytes(),
                now.unix_ms(),
                expires_at.unix_ms()
            ])?;
        Ok(KioskAnswer::CodeStored)
    }

    fn redeem(
        &mut self,
        now: Timestamp,
        code_hash: [u8; 32],
        new: NewDevice,
        max_devices: u32,
    ) -> Result<KioskAnswer, StoreError> {
        let stored = self
            .conn
            .prepare_cached(
                "SELECT recipient_id, expires_at, used_by IS NOT NULL FROM kiosk_pairings WHERE code_hash = ?1",
            )?
            .query_row([code_hash], |row| {
                let id: Vec<u8> = row.get(0)?;
                Ok((id, row.get::<_, i64>(1)?, row.get::<_, bool>(2)?))
            })
            .optional()?;
        let stored = match stored {
            None => None,
            Some((id, expires_at, used)) => Some(Pairing {
                recipient: RecipientId::from_bytes(
                    id.try_into()
                        .map_err(|_| StoreError::Corrupt("kiosk pairing recipient id".into()))?,
                ),
                expires_at: Timestamp::from_unix_ms(expires_at),
                used,
            }),
        };
        let recipient = match redeem(stored, now) {
            Ok(r) => r,
            Err(refusal) => return Ok(KioskAnswer::Refused(refusal)),
        };
        let held: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM kiosk_devices WHERE recipient_id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
            )?
            .query_row(params![recipient.as_bytes(), now.unix_ms()], |r| r.get(0))?;
        if held >= i64::from(max_devices) {
            return Ok(KioskAnswer::TooManyDevices);
        }
        self.conn
            .prepare_cached("UPDATE kiosk_pairings SET used_by = ?2 WHERE code_hash = ?1")?
            .execute(params![code_hash, new.id.as_bytes()])?;
        self.conn
            .prepare_cached(
                "INSERT INTO kiosk_devices (id, recipient_id, secret_hash, label, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                new.id.as_bytes(),
                recipient.as_bytes(),
                new.secret_hash,
                new.label,
                now.unix_ms(),
                new.expires_at.unix_ms()
            ])?;
        Ok(KioskAnswer::Paired(recipient))
    }
}

struct NewDevice {
    id: uuid::Uuid,
    secret_hash: [u8; 32],
    label: String,
    expires_at: Timestamp,
}
