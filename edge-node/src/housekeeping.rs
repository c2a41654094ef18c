//! The edge's background chores, every 5 s until shutdown: reload the JWKS
//! and the PII keys when their files change (keys rotate without a
//! restart; new PII keys reach the writer as a command and contacts are
//! re-sealed), forget idle rate-limit buckets, run retention at the first
//! tick and hourly, and take the scheduled backup when one is due (`[backup]
//! every_hours`; on the blocking pool, pruned to `keep`). Its writes go
//! through the background queue.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::api::Security;
use crate::clock::Clock;
use crate::config::EdgeConfig;
use crate::metrics::Metrics;
use crate::ports::{EdgeError, Writes};
use crate::store::backup;

/// The retention job runs at the first housekeeping tick, then hourly.
const RETENTION_EVERY_TICKS: u64 = 720;

/// What housekeeping works on.
pub struct Chores {
    pub config: Arc<EdgeConfig>,
    pub security: Arc<Security>,
    pub writes: Writes,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Runs until `stop` flips.
pub async fn run(chores: Chores, mut stop: watch::Receiver<bool>) {
    let jwks = chores.config.jwks_path();
    let pii_path =
        crate::auth::keys::keys_dir(&chores.config.data_dir).join(crate::auth::keys::PII_KEYS);
    let (mut seen, mut seen_pii) = (modified(&jwks), modified(&pii_path));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut ticks = 0u64;
    chores.note_backup(newest_backup(&chores.config));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        ticks += 1;
        let now = modified(&jwks);
        if now != seen {
            seen = now;
            chores.reload_jwks(&jwks);
        }
        let now_pii = modified(&pii_path);
        if now_pii != seen_pii {
            seen_pii = now_pii;
            chores.reload_pii().await;
        }
        if ticks.is_multiple_of(12) {
            chores.security.limits.housekeep();
            chores.security.failed_auth.housekeep();
        }
        if ticks % RETENTION_EVERY_TICKS == 1 {
            match chores.retain().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "retention: old operational data deleted"),
                Err(e) => tracing::warn!(error = %e, "retention did not run"),
            }
        }
        chores.backup_if_due().await;
    }
}

/// When the newest scheduled backup was taken, if there is one.
fn newest_backup(config: &EdgeConfig) -> Option<i64> {
    backup::scheduled(&config.backup_dir())
        .first()
        .map(|(_, at)| *at)
}

impl Chores {
    fn note_backup(&self, taken_at_ms: Option<i64>) {
        if let Some(at) = taken_at_ms {
            self.metrics
                .last_backup_ms
                .store(at, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Takes a scheduled backup if `every_hours` have passed since the
    /// newest, then prunes to `keep`.
    async fn backup_if_due(&self) {
        let b = &self.config.backup;
        if b.every_hours == 0 {
            return;
        }
        let now_ms = self.clock.now().unix_ms();
        let last = self
            .metrics
            .last_backup_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if last >= 0 && now_ms - last < i64::from(b.every_hours) * 3_600_000 {
            return;
        }
        let config = self.config.clone();
        let taken = tokio::task::spawn_blocking(move || {
            let dir = config.backup_dir();
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let to = dir.join(backup::scheduled_name(now_ms));
            let m = backup::take(&config.data_dir, &to, &config.edge_id, now_ms, &|_, _| {})
                .map_err(|e| e.to_string())?;
            let pruned = backup::prune(&dir, config.backup.keep);
            Ok::<_, String>((to, m, pruned))
        })
        .await;
        match taken {
            Ok(Ok((to, m, pruned))) => {
                tracing::info!(file = %to.display(), last_seq = m.last_seq, pruned, "scheduled backup taken");
                self.note_backup(Some(now_ms));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "scheduled backup failed; retried at the next tick")
            }
            Err(e) => tracing::warn!(error = %e, "scheduled backup task failed"),
        }
    }

    fn reload_jwks(&self, jwks: &Path) {
        match crate::auth::Keyring::from_file(jwks) {
            Ok(ring) => {
                tracing::info!(keys = ring.len(), "JWKS reloaded");
                self.security.verifier.replace_keys(ring);
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS changed but cannot be read; keeping the old keys")
            }
        }
    }

    /// Re-reads the PII keys (after `pahlawan keys rotate`), hands them to
    /// the writer and re-seals.
    async fn reload_pii(&self) {
        let keys = match crate::pii::PiiKeys::load(&self.config.data_dir) {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "PII keys changed but cannot be read; keeping the old keys");
                return;
            }
        };
        if let Err(e) = self.writes.swap_pii_keys(keys).await {
            tracing::warn!(error = %e, "PII keys changed but the writer did not take them; keeping the old keys");
            return;
        }
        match self.writes.reseal_all().await {
            Ok(n) => tracing::info!(resealed = n, "PII keys reloaded"),
            Err(e) => {
                tracing::warn!(error = %e, "PII keys reloaded; re-sealing failed, retried at next start")
            }
        }
    }

    /// Deletes operational data older than the retention window.
    pub async fn retain(&self) -> Result<usize, EdgeError> {
        retain(&self.writes, self.clock.now(), self.config.retention_days).await
    }
}

/// Deletes operational data older than `retention_days` before `now`, a
/// step at a time; returns how many rows.
pub async fn retain(
    writes: &Writes,
    now: sync_protocol::Timestamp,
    retention_days: u32,
) -> Result<usize, EdgeError> {
    let cutoff = now + sync_protocol::Duration::from_ms(-i64::from(retention_days) * 86_400_000);
    writes.retain(cutoff).await
}
