//! The hub's retention (issue 15): operational rows and stored events
//! older than `retention_days` leave, taking `now` as an argument so a test
//! drives it with a fake clock. A month partition of `event_log` or
//! `surplus` wholly older than the cutoff is dropped whole; in the month
//! that straddles the cutoff the older rows are deleted, so nothing outlives
//! its days. Before any surplus leaves, its figures are folded into
//! `impact_daily` (posted and expired by the day posted, delivered by the
//! day delivered), in the same transaction, so impact totals stay true.
//! Offers (`matching_history`) older than the cutoff are deleted. The audit
//! log, the registries and `impact_daily` are kept.

use time::OffsetDateTime;
use tokio_postgres::{Client, Transaction};

use super::DbError;
use super::partitions::{self, Month};

/// How often the hub makes next months' partitions and runs retention.
pub const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(3_600);

/// The hub's hourly housekeeping, until `stop` flips: partitions for this
/// month and the next ones (under the schema lock, as several hubs may
/// run), then retention, on a connection of its own. A failure is logged
/// and tried again at the next tick.
pub async fn housekeeping(
    database_url: String,
    retention_days: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = OffsetDateTime::now_utc();
        let done = async {
            let mut client = super::connect(&database_url).await?;
            super::locked(&mut client, async |c| {
                super::partitions::ensure_around(c, now).await
            })
            .await?;
            run(&mut client, now, retention_days).await
        }
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "hub housekeeping failed; trying again in an hour");
        }
    }
}

/// What one run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Partitions dropped whole, e.g. `event_log_p202608`.
    pub dropped: Vec<String>,
    /// Rows deleted from the straddling months (log rows and surplus).
    pub rows_deleted: u64,
    pub offers_deleted: u64,
}

/// The instant before which everything goes.
pub fn cutoff(now: OffsetDateTime, retention_days: u32) -> OffsetDateTime {
    now - time::Duration::days(i64::from(retention_days))
}

/// Runs retention as of `now`.
pub async fn run(
    client: &mut Client,
    now: OffsetDateTime,
    retention_days: u32,
) -> Result<Swept, DbError> {
    let cut = cutoff(now, retention_days);
    let mut swept = Swept::default();
    for table in partitions::PARTITIONED {
        for month in partitions::list(client, table).await? {
            if month.end() <= cut {
                let tx = sequential(client).await?;
                take_month(&tx, table, month, None).await?;
                tx.batch_execute(&format!("DROP TABLE {}", month.partition_of(table)))
                    .await?;
                tx.commit().await?;
                swept.dropped.push(month.partition_of(table));
            } else if month.start() < cut {
                let tx = sequential(client).await?;
                swept.rows_deleted += take_month(&tx, table, month, Some(cut)).await?;
                tx.commit().await?;
            }
        }
    }
    swept.offers_deleted = client
        .execute("DELETE FROM matching_history WHERE made_at < $1", &[&cut])
        .await?;
    if !swept.dropped.is_empty() || swept.rows_deleted > 0 {
        tracing::info!(?swept, "hub retention");
    }
    Ok(swept)
}

/// A transaction in which Citus runs multi-shard statements one connection
/// per worker, so that DDL (dropping a partition) may follow them.
pub(crate) async fn sequential(client: &mut Client) -> Result<Transaction<'_>, DbError> {
    let tx = client.transaction().await?;
    // A custom setting: plain PostgreSQL accepts and ignores it.
    tx.batch_execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        .await?;
    Ok(tx)
}

/// Folds the surplus of `month` received before `before` (all of it when
/// `None`) into `impact_daily`, and deletes those rows (log rows or
/// surplus) unless the whole partition is about to be dropped. Returns
/// the rows deleted.
pub(crate) async fn take_month(
    tx: &Transaction<'_>,
    table: &str,
    month: Month,
    before: Option<OffsetDateTime>,
) -> Result<u64, DbError> {
    let partition = month.partition_of(table);
    let bound = before.unwrap_or_else(|| month.end());
    if table == "surplus" {
        fold_surplus(tx, &partition, bound).await?;
    }
    if before.is_none() {
        return Ok(0);
    }
    Ok(tx
        .execute(
            &format!("DELETE FROM {partition} WHERE received_at < $1"),
            &[&bound],
        )
        .await?)
}

/// Adds the figures of `partition`'s surplus received before `bound` to
/// `impact_daily` (colocated with surplus: under Citus each shard folds its
/// own rows).
async fn fold_surplus(
    tx: &Transaction<'_>,
    partition: &str,
    bound: OffsetDateTime,
) -> Result<(), DbError> {
    tx.execute(
        &format!(
            "INSERT INTO impact_daily AS d (geo_region_id, day, edge_id, posted_n, posted_g, expired_n)
             SELECT geo_region_id, (posted_at AT TIME ZONE 'UTC')::date, edge_id, count(*),
                    sum(quantity_g), count(*) FILTER (WHERE status = 'expired')
             FROM {partition} WHERE received_at < $1
             GROUP BY 1, 2, 3
             ON CONFLICT (geo_region_id, day, edge_id) DO UPDATE
             SET posted_n = d.posted_n + excluded.posted_n, posted_g = d.posted_g + excluded.posted_g,
                 expired_n = d.expired_n + excluded.expired_n"
        ),
        &[&bound],
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO impact_daily AS d (geo_region_id, day, edge_id, delivered_n, delivered_g)
             SELECT geo_region_id, (updated_at AT TIME ZONE 'UTC')::date, edge_id, count(*),
                    COALESCE(sum(delivered_g), 0)
             FROM {partition} WHERE received_at < $1 AND status = 'delivered'
             GROUP BY 1, 2, 3
             ON CONFLICT (geo_region_id, day, edge_id) DO UPDATE
             SET delivered_n = d.delivered_n + excluded.delivered_n,
                 delivered_g = d.delivered_g + excluded.delivered_g"
        ),
        &[&bound],
    )
    .await?;
    Ok(())
}
