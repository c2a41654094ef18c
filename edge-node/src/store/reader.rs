//! Read-only connections for what the in-memory read model does not hold:
//! finished surplus, providers and recipients. Queries run on tokio's
//! blocking pool; the pool of connections is bounded.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::Connection;
use sync_protocol::wire::decode_envelope;
use sync_protocol::{Envelope, Provider, ProviderId, Recipient, RecipientId, SurplusId};

use super::rows::{
    PROVIDER_COLUMNS, RECIPIENT_COLUMNS, provider_from_row, read_surplus_view, recipient_from_row,
};
use super::{StoreError, open_reader_with};
use sync_protocol::Surplus;

/// At most `max_idle` reads run at once (each on its own connection);
/// more wait for a permit.
#[derive(Debug)]
pub struct ReadPool {
    path: PathBuf,
    /// Each connection's page cache, KiB.
    cache_kib: u32,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    permits: tokio::sync::Semaphore,
}

impl ReadPool {
    pub fn new(path: &Path, max_idle: usize) -> ReadPool {
        ReadPool::with_cache(path, max_idle, super::Tuning::default().reader_cache_kib)
    }

    /// A pool whose connections each keep a page cache of `cache_kib`.
    pub fn with_cache(path: &Path, max_idle: usize, cache_kib: u32) -> ReadPool {
        ReadPool {
            path: path.to_path_buf(),
            cache_kib,
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
            permits: tokio::sync::Semaphore::new(max_idle.max(1)),
        }
    }

    async fn with<T, F>(self: &std::sync::Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Corrupt("the read pool is closed".into()))?;
        let pool = self.clone();
        {
            tokio::task::spawn_blocking(move || {
                let conn = pool.idle.lock().pop();
                let conn = match conn {
                    Some(c) => c,
                    None => open_reader_with(&pool.path, pool.cache_kib)?,
                };
                let out = f(&conn);
                let mut idle = pool.idle.lock();
                if idle.len() < pool.max_idle {
                    idle.push(conn);
                }
                out
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
        }
    }

    pub async fn surplus(
        self: &std::sync::Arc<Self>,
        id: SurplusId,
    ) -> Result<Option<Surplus>, StoreError> {
        self.with(move |c| read_surplus_view(c, &id)).await
    }

    /// A provider and its address (edge-local, so beside the domain record).
    pub async fn provider(
        self: &std::sync::Arc<Self>,
        id: ProviderId,
    ) -> Result<Option<(Provider, String)>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PROVIDER_COLUMNS}, address FROM providers WHERE id = ?1 AND erased_at IS NULL"
            ))?;
            let mut rows = stmt.query([id.as_bytes()])?;
            Ok(match rows.next()? {
                Some(row) => Some((provider_from_row(row)?, row.get(5)?)),
                None => None,
            })
        })
        .await
    }

    pub async fn recipient(
        self: &std::sync::Arc<Self>,
        id: RecipientId,
    ) -> Result<Option<(Recipient, u64)>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE id = ?1 AND erased_at IS NULL"
            ))?;
            let mut rows = stmt.query([id.as_bytes()])?;
            Ok(match rows.next()? {
                Some(row) => Some(recipient_from_row(row)?),
                None => None,
            })
        })
        .await
    }

    /// This edge's own recipients (not neighbours' imports, not erased) in
    /// id order after `after`, at most `limit`: a page of the listing.
    pub async fn recipients_page(
        self: &std::sync::Arc<Self>,
        after: Option<RecipientId>,
        limit: usize,
    ) -> Result<Vec<(Recipient, u64)>, StoreError> {
        let after = after.map_or_else(Vec::new, |a| a.as_bytes().to_vec());
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE id > ?1 AND erased_at IS NULL \
                 AND owner_edge IS NULL ORDER BY id LIMIT ?2"
            ))?;
            let rows =
                stmt.query_map(rusqlite::params![after, limit as i64], recipient_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Providers (not erased) in id order after `after`, at most `limit`.
    pub async fn providers_page(
        self: &std::sync::Arc<Self>,
        after: Option<ProviderId>,
        limit: usize,
    ) -> Result<Vec<(Provider, String)>, StoreError> {
        let after = after.map_or_else(Vec::new, |a| a.as_bytes().to_vec());
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PROVIDER_COLUMNS}, address FROM providers WHERE id > ?1 AND erased_at IS NULL \
                 ORDER BY id LIMIT ?2"
            ))?;
            let mut rows = stmt.query(rusqlite::params![after, limit as i64])?;
            let mut page = Vec::new();
            while let Some(row) = rows.next()? {
                page.push((provider_from_row(row)?, row.get(5)?));
            }
            Ok(page)
        })
        .await
    }

    /// Everything held on a subject besides its own row (GDPR export).
    pub async fn subject_rows(
        self: &std::sync::Arc<Self>,
        subject: sync_protocol::Subject,
    ) -> Result<super::export::SubjectRows, StoreError> {
        self.with(move |c| super::export::subject_rows(c, &subject))
            .await
    }

    /// Outbox events with `seq > after`, in order, at most `limit`.
    pub async fn outbox_after(
        self: &std::sync::Arc<Self>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT envelope FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let mut rows = stmt.query(rusqlite::params![after as i64, limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let bytes: Vec<u8> = row.get(0)?;
                out.push(
                    decode_envelope(&bytes)
                        .map_err(|e| StoreError::Corrupt(format!("outbox row: {e}")))?,
                );
            }
            Ok(out)
        })
        .await
    }

    /// Raw outbox rows with `seq > after` (at most `limit`): the first seq
    /// and the events as shipped to the hub.
    pub async fn outbox_batch(
        self: &std::sync::Arc<Self>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<sync_protocol::session::BatchEvent>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, cell, envelope FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let mut rows = stmt.query(rusqlite::params![after as i64, limit as i64])?;
            let mut out = Vec::new();
            let mut expected = after + 1;
            while let Some(row) = rows.next()? {
                let seq = row.get::<_, i64>(0)? as u64;
                if seq != expected {
                    return Err(StoreError::Corrupt(format!(
                        "outbox hole: {seq} after {}",
                        expected - 1
                    )));
                }
                expected += 1;
                out.push(sync_protocol::session::BatchEvent {
                    cell: row.get::<_, i64>(1)? as u64,
                    envelope: row.get(2)?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// The `at` of the outbox event `seq`, if it exists.
    pub async fn event_time(
        self: &std::sync::Arc<Self>,
        seq: u64,
    ) -> Result<Option<sync_protocol::Timestamp>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached("SELECT envelope FROM outbox WHERE seq = ?1")?;
            let mut rows = stmt.query([seq as i64])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            let bytes: Vec<u8> = row.get(0)?;
            Ok(decode_envelope(&bytes).ok().map(|e| e.at))
        })
        .await
    }

    /// (published seq, lease epoch) as last stored.
    pub async fn sync_state(self: &std::sync::Arc<Self>) -> Result<(u64, u64), StoreError> {
        self.with(|c| {
            let published: i64 = c.query_row(
                "SELECT published_seq FROM sync_state WHERE id = 1",
                [],
                |r| r.get(0),
            )?;
            Ok((published as u64, super::load::lease_epoch(c)?))
        })
        .await
    }

    /// The notification dispatcher's cursor as last stored.
    pub async fn notified_seq(self: &std::sync::Arc<Self>) -> Result<u64, StoreError> {
        self.with(|c| {
            let seq: i64 = c.query_row(
                "SELECT notified_seq FROM notify_state WHERE id = 1",
                [],
                |r| r.get(0),
            )?;
            Ok(seq.max(0) as u64)
        })
        .await
    }

    /// A recipient's notification channels, oldest first.
    pub async fn channels(
        self: &std::sync::Arc<Self>,
        recipient: sync_protocol::RecipientId,
    ) -> Result<Vec<ChannelRow>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, public_id, kind, sealed, created_at FROM notify_channels
                 WHERE recipient_id = ?1 ORDER BY id",
            )?;
            let mut rows = stmt.query([recipient.as_bytes()])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let public: Vec<u8> = row.get(1)?;
                let id = uuid::Uuid::from_slice(&public)
                    .map_err(|_| StoreError::Corrupt("channel id".into()))?;
                out.push(ChannelRow {
                    key: row.get::<_, i64>(0)?.max(0) as u64,
                    id,
                    recipient,
                    kind: row.get(2)?,
                    sealed: row.get(3)?,
                    created_at: sync_protocol::Timestamp::from_unix_ms(row.get(4)?),
                });
            }
            Ok(out)
        })
        .await
    }

    /// A kiosk device credential by id (revoked ones too).
    pub async fn kiosk_device(
        self: &std::sync::Arc<Self>,
        id: uuid::Uuid,
    ) -> Result<Option<KioskDeviceRow>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {KIOSK_DEVICE_COLUMNS} FROM kiosk_devices WHERE id = ?1"
            ))?;
            let mut rows = stmt.query([id.as_bytes()])?;
            Ok(match rows.next()? {
                Some(row) => Some(kiosk_device_from_row(row)?),
                None => None,
            })
        })
        .await
    }

    /// Kiosk devices, newest first, at most `limit`.
    pub async fn kiosk_devices(
        self: &std::sync::Arc<Self>,
        limit: usize,
    ) -> Result<Vec<KioskDeviceRow>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {KIOSK_DEVICE_COLUMNS} FROM kiosk_devices ORDER BY created_at DESC, id LIMIT ?1"
            ))?;
            let mut rows = stmt.query([limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(kiosk_device_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }
}

/// A paired kiosk, as stored (the secret only as its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KioskDeviceRow {
    pub id: uuid::Uuid,
    pub recipient: RecipientId,
    pub secret_hash: [u8; 32],
    pub label: String,
    pub created_at: sync_protocol::Timestamp,
    pub expires_at: sync_protocol::Timestamp,
    pub revoked_at: Option<sync_protocol::Timestamp>,
}

const KIOSK_DEVICE_COLUMNS: &str =
    "id, recipient_id, secret_hash, label, created_at, expires_at, revoked_at";

fn kiosk_device_from_row(row: &rusqlite::Row<'_>) -> Result<KioskDeviceRow, StoreError> {
    let bytes16 = |i: usize| -> Result<[u8; 16], StoreError> {
        let v: Vec<u8> = row.get(i)?;
        v.try_into()
            .map_err(|_| StoreError::Corrupt("kiosk device id".into()))
    };
    let hash: Vec<u8> = row.get(2)?;
    let ts = sync_protocol::Timestamp::from_unix_ms;
    Ok(KioskDeviceRow {
        id: uuid::Uuid::from_bytes(bytes16(0)?),
        recipient: RecipientId::from_bytes(bytes16(1)?),
        secret_hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("kiosk device secret hash".into()))?,
        label: row.get(3)?,
        created_at: ts(row.get(4)?),
        expires_at: ts(row.get(5)?),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(ts),
    })
}

/// A notification channel as stored (what it sends to still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    /// The dispatcher's key for it (never 0: that is the on-call webhook).
    pub key: u64,
    pub id: uuid::Uuid,
    pub recipient: sync_protocol::RecipientId,
    pub kind: String,
    pub sealed: Vec<u8>,
    pub created_at: sync_protocol::Timestamp,
}
